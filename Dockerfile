# alexnet-serve in a container: the torch-free runtime (numpy, Pillow, onnxruntime) and the `serve`
# extra (KServe's model server), installed from this source tree. Serves ONNX artifacts.
#
#   docker build -t alexnet-deploy:latest .
#   docker run --rm -p 8080:8080 -p 8081:8081 -v "$PWD/runs/demo:/models:ro" \
#       alexnet-deploy:latest /models/best.onnx --host 0.0.0.0
#
# `alexnet-serve --print-manifest` writes the KServe InferenceService that runs this image.
# The HEALTHCHECK asks the default REST port (8080) over plain HTTP without a token: with
# --auth-token-file add --open-api health, and with --tls-cert the check fails (use the
# orchestrator's probes instead).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# What the wheel is built from (setup.cfg: its packages, and README.md, its long description).
WORKDIR /tmp/alexnet-deploy
COPY setup.cfg pyproject.toml README.md ./
COPY alexnet ./alexnet
COPY export ./export
COPY runtime ./runtime
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir '.[serve]' \
    && cd / && rm -rf /tmp/alexnet-deploy

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin alexnet
# numeric, so that Kubernetes' runAsNonRoot can check it
USER 10001:10001
WORKDIR /home/alexnet

# REST, gRPC (alexnet-serve's --http-port and --grpc-port defaults)
EXPOSE 8080 8081

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=4)"]

ENTRYPOINT ["alexnet-serve"]
CMD ["--help"]
