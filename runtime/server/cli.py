"""alexnet-serve: an artifact on the Open Inference Protocol (REST + gRPC), with dynamic batching."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
import fastapi.exceptions

from runtime import formats
from runtime.cliutil import handle_errors
from runtime.decode import MAX_DECODED_BYTES
from runtime.options import (
    backend_option,
    command,
    device_option,
    exact_decode_option,
    max_batch_delay_option,
    threads_option,
    verify_option,
)
from runtime.predictor import Predictor
from runtime.server.manifest import DEFAULT_IMAGE, Deployment, build_command, inference_service
from runtime.server.protocol import MODEL_NAME, MODEL_NAME_RULE


@contextlib.contextmanager
def _argv_for_kserve() -> Iterator[None]:
    """kserve parses sys.argv when first imported; ours are not its flags (`--help` among them)."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


with _argv_for_kserve():
    from runtime.server.app import DEFAULT_MAX_REQUEST_BYTES, Listen, serve
    from runtime.server.auth import OPENABLE, AuthPolicy
    from runtime.server.decode_budget import DEFAULT_DECODE_BUDGET
    from runtime.server.guards import ConnectionLimits
    from runtime.server.model import AlexNetModel, BatchSettings
    from runtime.server.security import TOKEN_ENV, TlsFiles, exposure_warnings, read_token

LIMITS = ConnectionLimits()
MIN_DECODE_MIB = MAX_DECODED_BYTES >> 20  # the budget holds at least the largest image allowed
SECONDS = click.FloatRange(0.1, 3600)
FILE = click.Path(dir_okay=False)

PORT = click.IntRange(1, 65535)
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")  # an RFC 9110 token
logger = logging.getLogger("alexnet.serve")


def check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not MODEL_NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r}: a model name is {MODEL_NAME_RULE}", ctx, param)
    return value


@command()
@click.argument("model", metavar="MODEL")
@click.option("--name", default="alexnet", show_default=True, callback=check_name, help="Model name in the URLs.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@click.option("--http-port", type=PORT, default=8080, show_default=True)
@click.option("--grpc-port", type=PORT, default=8081, show_default=True)
@click.option("--no-grpc", is_flag=True, help="REST only.")
@click.option("--max-batch-size", type=click.IntRange(1, 1024), default=32, show_default=True, help="Images per run.")
@max_batch_delay_option()
@click.option(
    "--max-queue",
    type=click.IntRange(1, 100_000),
    default=256,
    show_default=True,
    help="Images that may wait for a batch; past it requests get 'unavailable' (HTTP 503, gRPC UNAVAILABLE).",
)
@click.option(
    "--decode-memory",
    type=click.IntRange(MIN_DECODE_MIB, 1 << 20),
    default=DEFAULT_DECODE_BUDGET >> 20,
    show_default=True,
    metavar="MIB",
    help="MiB all concurrent image decodes may take together (whatever the core count); others wait.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(1024, 1 << 30),
    default=DEFAULT_MAX_REQUEST_BYTES,
    show_default=True,
    help="Largest request body (HTTP 413 / gRPC RESOURCE_EXHAUSTED past it).",
)
@backend_option()
@device_option()
@threads_option("Of the onnxruntime session.")
@exact_decode_option()
@verify_option()
@click.option(
    "--header-timeout",
    type=SECONDS,
    default=LIMITS.header_timeout_s,
    show_default=True,
    help="Seconds for a request's line and headers to arrive (gRPC: the connection handshake).",
)
@click.option(
    "--body-timeout",
    type=SECONDS,
    default=LIMITS.body_timeout_s,
    show_default=True,
    help="Seconds for a request body to arrive after its headers.",
)
@click.option(
    "--idle-timeout",
    type=SECONDS,
    default=LIMITS.idle_timeout_s,
    show_default=True,
    help="Seconds a connection may wait between requests.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 100_000),
    default=LIMITS.max_connections,
    show_default=True,
    help="Open connections; past it a new one gets 503 (lowered to the fd limit).",
)
@click.option(
    "--auth-token-file",
    type=FILE,
    default=None,
    help=f"A file whose first line is the token callers must send (else ${TOKEN_ENV}).",
)
@click.option(
    "--auth-header",
    default=None,
    metavar="NAME",
    help="Take the token from this header (default: 'Authorization: Bearer TOKEN').",
)
@click.option(
    "--open-api",
    type=click.Choice(OPENABLE),
    multiple=True,
    help="An API group callable without the token (repeat), e.g. health for probes.",
)
@click.option("--tls-cert", type=FILE, default=None, help="PEM certificate (chain): REST and gRPC over TLS.")
@click.option("--tls-key", type=FILE, default=None, help="PEM private key of --tls-cert.")
@click.option(
    "--tls-client-ca", type=FILE, default=None, help="Require client certificates signed by this CA (mutual TLS)."
)
@click.option("--grace-period", type=click.IntRange(0, 3600), default=30, show_default=True, help="Seconds to drain.")
@click.option("--access-log", is_flag=True, help="Log every request (off: a line per request costs CPU under load).")
@click.option("--print-manifest", is_flag=True, help="Print a KServe InferenceService for MODEL and exit.")
@click.option(
    "--image",
    default=DEFAULT_IMAGE,
    show_default=True,
    help=f"With --print-manifest: the container image, built from the repository's Dockerfile ({build_command()}).",
)
@click.option("--storage-uri", default=None, help="With --print-manifest: where MODEL is (s3://, gs://, pvc://).")
@handle_errors
def main(model: str, name: str, host: str, http_port: int, grpc_port: int, no_grpc: bool, **options: object) -> None:
    """Serve MODEL (.onnx, .pt, .mlpackage, any artifact alexnet-run runs) on the Open Inference
    Protocol (KServe v2: the REST/gRPC API of KServe, Triton and MLServer) until SIGTERM.

    Requests carry encoded images (BYTES input "image": raw, or base64 in JSON) or preprocessed FP32 tensors ("input");
    answers are the top-k labels, indices and probabilities (parameter top_k) and, when asked,
    logits. Concurrent requests are batched (--max-batch-size, --max-batch-delay-ms). Metrics:
    GET /metrics (Prometheus); probes: /v2/health/live, /v2/models/NAME/ready; the artifact's
    metadata: /v2/models/NAME/config. SIGTERM drains in-flight requests, then exits 0.

    \b
    Examples:
      alexnet-serve demo-out/run/best.onnx
      alexnet-run --server http://127.0.0.1:8080 --model-name alexnet photo.jpg
      alexnet-serve model.onnx --host 0.0.0.0 --max-batch-size 16 --max-batch-delay-ms 2
      alexnet-serve --print-manifest model.onnx --storage-uri s3://bucket/alexnet/ --image me/alexnet:1 > isvc.yaml
    """
    batching = BatchSettings(
        options["max_batch_size"], options["max_batch_delay_ms"], options["max_queue"], options["decode_memory"] << 20
    )
    if options["print_manifest"]:
        click.echo(inference_service(_deployment(model, name, batching, options)), nl=False)
        return
    listen = _listen(host, http_port, None if no_grpc else grpc_port, options)  # bad secrets fail before loading
    _configure_logging(listen.access_log)
    for warning in exposure_warnings(host, listen.auth is not None, listen.tls is not None):
        logger.warning(warning)
    import runtime

    predictor = runtime.load(
        Path(model),
        str(options["backend"]),
        str(options["device"]),
        threads=options["threads"],
        verify=bool(options["verify"]),
        decode=str(options["decode"]),
    )
    logger.info("%s", startup_line(model, name, predictor, listen))
    try:
        serve(AlexNetModel(name, predictor, batching), listen)
    finally:
        predictor.close()


def _listen(host: str, http_port: int, grpc_port: int | None, options: dict) -> Listen:
    limits = ConnectionLimits(
        header_timeout_s=float(options["header_timeout"]),
        body_timeout_s=float(options["body_timeout"]),
        idle_timeout_s=float(options["idle_timeout"]),
        max_connections=int(options["max_connections"]),
    )
    return Listen(
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        max_request_bytes=int(options["max_request_bytes"]),
        grace_period_s=int(options["grace_period"]),
        access_log=bool(options["access_log"]),
        limits=limits,
        auth=_auth(options),
        tls=_tls(options),
    )


def _auth(options: dict) -> AuthPolicy | None:
    token = read_token(options["auth_token_file"])
    header = options["auth_header"]
    if token is None:
        if header or options["open_api"]:
            raise click.UsageError(f"--auth-header and --open-api need a token (--auth-token-file or ${TOKEN_ENV})")
        return None
    if header is not None and not HEADER_NAME.fullmatch(header):
        raise click.BadParameter(f"{header!r} is not an HTTP header name", param_hint="--auth-header")
    return AuthPolicy.from_secret(token, header, tuple(options["open_api"]))


def _tls(options: dict) -> TlsFiles | None:
    cert, key, client_ca = options["tls_cert"], options["tls_key"], options["tls_client_ca"]
    if not cert and not key:
        if client_ca:
            raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (cert and key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = TlsFiles(Path(cert), Path(key), Path(client_ca) if client_ca else None)
    tls.check()
    return tls


def startup_line(model: str, name: str, predictor: Predictor, listen: Listen) -> str:
    """The one line that says what is served where: the artifact (path, served name, format,
    precision) and the REST and gRPC addresses."""
    m = predictor.metadata
    known = formats.for_suffix(Path(model).suffix)
    fmt = m.format or (known.name if known else "unknown format")
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    grpc = f"gRPC {host}:{listen.grpc_port}" if listen.grpc_port else "gRPC off (--no-grpc)"
    return (
        f"serving {model} as model {name!r} ({fmt}, {m.precision}, {m.num_classes} classes, "
        f"{predictor.backend_name} on {predictor.device}): REST {listen.scheme}://{host}:{listen.http_port}, {grpc}"
    )


def _configure_logging(access_log: bool) -> None:
    """The entry point owns logging (kserve leaves it alone once the root logger has a handler):
    one format, and a line per request exactly when --access-log is given. Those lines come from
    uvicorn's `uvicorn.access` logger (uvicorn 0.55 writes them whenever that logger has a handler,
    its root's included, whatever its access_log setting says) and kserve's `kserve.trace` (timings
    per request): their levels decide."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kserve 0.21 makes FastAPI's ORJSONResponse the default response class of its app
    # (kserve/model_server.py), a class FastAPI deprecates (0.165 here): the first answer of each
    # kserve route (the readiness probe, at start) would print a FastAPIDeprecationWarning the user
    # can do nothing about. Ours answer without it (runtime/server/rest.py); kserve's own routes are
    # not ours to change, so exactly that warning is silenced, here at the entry point.
    category = getattr(fastapi.exceptions, "FastAPIDeprecationWarning", Warning)  # older FastAPI: no such class
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated", category=category)
    level = logging.INFO if access_log else logging.WARNING
    for logger_name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(logger_name).setLevel(level)


def _deployment(model: str, name: str, batching: BatchSettings, options: dict) -> Deployment:
    if not options["storage_uri"]:
        raise click.UsageError("--print-manifest needs --storage-uri (where KServe downloads MODEL from)")
    args = ["--max-batch-size", str(batching.max_batch_size), "--max-batch-delay-ms", str(batching.max_delay_ms)]
    args += ["--max-queue", str(batching.max_queue)]
    return Deployment(
        name=name,
        model_file=os.path.basename(model.rstrip("/")),
        storage_uri=str(options["storage_uri"]),
        image=str(options["image"]),
        args=tuple(args),
    )
