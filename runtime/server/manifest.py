"""The KServe InferenceService that runs alexnet-serve on Kubernetes (`alexnet-serve --print-manifest`).

A custom predictor: KServe downloads `storageUri` into /mnt/models, runs the container's
`alexnet-serve` there, routes to its REST port, and scales replicas between the bounds (the
autoscaler, not this process, is what scales out). The image is the repository's Dockerfile, built
as `docker build -t alexnet-deploy:latest .` (DEFAULT_IMAGE; another tag: built and pushed as that).
The container's `command` is the whole alexnet-serve line, so it does not depend on the image's
ENTRYPOINT. Written as YAML by hand, every string quoted as JSON (valid YAML), so no YAML library
is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri's contents
DEFAULT_IMAGE = "alexnet-deploy:latest"  # the Dockerfile's image, as its build line tags it


def build_command(image: str = DEFAULT_IMAGE) -> str:
    """How the image is made: the repository's Dockerfile, tagged `image`."""
    return f"docker build -t {image} ."


@dataclass(frozen=True)
class Deployment:
    name: str
    model_file: str  # the artifact's file name inside storageUri
    storage_uri: str
    image: str
    args: tuple[str, ...]  # alexnet-serve's batching options, passed through
    min_replicas: int = 1
    max_replicas: int = 4
    cpu: str = "2"
    memory: str = "2Gi"


def inference_service(d: Deployment) -> str:
    q = json.dumps
    command = ["alexnet-serve", f"{MODEL_DIR}/{d.model_file}", "--name", d.name, "--host", "0.0.0.0"]
    command += ["--http-port", "8080", "--no-grpc", *d.args]
    lines = [
        "apiVersion: serving.kserve.io/v1beta1",
        "kind: InferenceService",
        "metadata:",
        f"  name: {q(d.name)}",
        "spec:",
        "  predictor:",
        f"    minReplicas: {d.min_replicas}",
        f"    maxReplicas: {d.max_replicas}",
        "    containers:",
        '      - name: "kserve-container"',
        f"        # the image: the alexnet-deploy repository's Dockerfile, `{build_command(d.image)}`",
        f"        image: {q(d.image)}",
        f"        command: {q(command)}",
        "        env:",
        '          - name: "STORAGE_URI"',
        f"            value: {q(d.storage_uri)}",
        "        ports:",
        "          - containerPort: 8080",
        '            protocol: "TCP"',
        "        readinessProbe:",
        f"          httpGet: {{path: {q(f'/v2/models/{d.name}/ready')}, port: 8080}}",
        "        livenessProbe:",
        '          httpGet: {path: "/v2/health/live", port: 8080}',
        "        resources:",
        f"          requests: {{cpu: {q(d.cpu)}, memory: {q(d.memory)}}}",
        f"          limits: {{cpu: {q(d.cpu)}, memory: {q(d.memory)}}}",
    ]
    return "\n".join(lines) + "\n"
