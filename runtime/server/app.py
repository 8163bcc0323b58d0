"""Run the KServe model server around one AlexNetModel: REST and gRPC, bound where asked, drained on SIGTERM.

kserve's own ModelServer.start binds 0.0.0.0 and [::] (every interface) and, on SIGTERM, unloads
the model while requests are still in flight; this starts the same REST app and gRPC service
itself, so that `--host` is honoured and shutdown is graceful: on SIGTERM or SIGINT readiness goes
false, both listeners stop accepting, requests already in (those waiting for a batch included)
finish within the grace period, then the process exits 0.

Extras on the REST app: its own infer route (runtime/server/rest.py says why), a request-body limit (413 past it; gRPC refuses larger messages with
RESOURCE_EXHAUSTED) and Triton's `GET /v2/models/NAME/config`, which carries the artifact's
metadata (classes, preprocessing, precision) as the `alexnet_deploy` parameter, as the Triton
repository `alexnet-export --format triton` writes does.

For a network (both listeners): header, body and idle timeouts and a connection cap
(runtime/server/guards.py), a token on restricted API groups (runtime/server/auth.py), TLS with
optional client certificates (runtime/server/security.py), one log line per failed request and
no model control (runtime/server/failures.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass, field
from typing import Any

from grpc import aio
from kserve import ModelServer
from kserve.errors import ModelNotFound
from kserve.model_server import FASTAPI_APP_IMPORT_STRING, app
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer

from runtime.errors import DeployError
from runtime.metadata import METADATA_KEY
from runtime.server.auth import AuthPolicy, GrpcAuth, RestAuth
from runtime.server.failures import GrpcFailures, NoModelControl, UncaughtErrors, install_rest_handlers
from runtime.server.guards import BodyLimit, ConnectionLimits, grpc_limit_options, guarded_protocol
from runtime.server.model import AlexNetModel
from runtime.server.rest import infer_route
from runtime.server.security import TlsFiles

logger = logging.getLogger("alexnet.serve")
DEFAULT_MAX_REQUEST_BYTES = 64 << 20  # a batch of 64 preprocessed 224 px images is 38 MB


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int | None = 8081  # None: REST only
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grace_period_s: int = 30
    access_log: bool = False  # a log line per request (uvicorn's, kserve's timings) costs CPU under load
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    auth: AuthPolicy | None = None  # None: every API is open (fine on loopback)
    tls: TlsFiles | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


class _Rest(RESTServer):
    """kserve's REST server with this server's failure handling (kserve adds its own handlers when
    it starts, so they are replaced here, after it)."""

    def _add_exception_handlers(self, fastapi_app: Any) -> None:
        super()._add_exception_handlers(fastapi_app)
        install_rest_handlers(fastapi_app)


def triton_config(model: AlexNetModel) -> dict[str, Any]:
    """The model's configuration in Triton's JSON form (what `tritonclient.http` get_model_config reads)."""
    m = model.predictor.metadata
    return {
        "name": model.name,
        "platform": f"alexnet-deploy/{model.predictor.backend_name}",
        "max_batch_size": model.settings.max_batch_size,
        "input": [{"name": m.input_name, "data_type": "TYPE_FP32", "dims": list(m.input_shape[1:])}],
        "output": [{"name": m.output_name, "data_type": "TYPE_FP32", "dims": [m.num_classes]}],
        "dynamic_batching": {"max_queue_delay_microseconds": int(model.settings.max_delay_ms * 1000)},
        "parameters": {METADATA_KEY: {"string_value": m.to_json()}},
    }


def _grpc_server(server: ModelServer, listen: Listen) -> aio.Server:
    """kserve's gRPC inference service on host:port (kserve's GRPCServer listens on every interface).
    Created inside the running event loop: grpc.aio binds a server to the loop it is made in."""
    limit = listen.max_request_bytes
    # so_reuseport off: a port another server holds is an error here, not two servers sharing it
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    options += [("grpc.so_reuseport", 0), *grpc_limit_options(listen.limits)]
    interceptors = [GrpcFailures()] if listen.auth is None else [GrpcAuth(listen.auth), GrpcFailures()]
    grpc_server = aio.server(
        interceptors=interceptors, options=options, maximum_concurrent_rpcs=listen.limits.usable_connections()
    )
    servicer = InferenceServicer(server.dataplane, NoModelControl())
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, grpc_server)
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    address = f"{host}:{listen.grpc_port}"
    try:
        if listen.tls is None:
            bound = grpc_server.add_insecure_port(address)
        else:
            bound = grpc_server.add_secure_port(address, listen.tls.grpc_credentials())
    except RuntimeError:  # grpcio raises where older releases returned 0
        bound = 0
    if bound == 0:
        raise DeployError(f"cannot listen for gRPC on {address} (in use?); choose --grpc-port or --no-grpc")
    return grpc_server


def serve(model: AlexNetModel, listen: Listen) -> None:
    """Serve `model` until SIGTERM/SIGINT; return once every in-flight request is answered."""
    server = ModelServer(
        http_port=listen.http_port,
        grpc_port=listen.grpc_port or 0,
        enable_grpc=False,
        workers=1,
        enable_latency_logging=listen.access_log,
    )
    server.register_model(model)
    rest = _Rest(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        NoModelControl(),
        listen.http_port,
        grace_period=listen.grace_period_s,
        timeout_keep_alive=int(listen.limits.idle_timeout_s),
    )
    _configure_rest(rest.config, listen)
    app.add_middleware(UncaughtErrors)  # innermost of these three: it sees what the handlers did not take
    app.add_middleware(BodyLimit, limit=listen.max_request_bytes)
    if listen.auth is not None:
        app.add_middleware(RestAuth, policy=listen.auth)  # outermost: a refused caller costs nothing more
    app.add_api_route("/v2/models/{model_name}/config", _config_route(model), methods=["GET"])
    app.add_api_route("/v2/models/{model_name}/infer", infer_route(server.dataplane), methods=["POST"])
    asyncio.run(_run(model, server, rest, listen))


def _configure_rest(config: Any, listen: Listen) -> None:
    """uvicorn's settings: interface, access log, the guarded protocol, TLS (read when it starts)."""
    config.host = listen.host
    config.access_log = listen.access_log
    config.http = guarded_protocol(listen.limits)
    if listen.tls is not None:
        config.ssl_certfile, config.ssl_keyfile = str(listen.tls.cert), str(listen.tls.key)
        if listen.tls.client_ca is not None:
            config.ssl_ca_certs, config.ssl_cert_reqs = str(listen.tls.client_ca), ssl.CERT_REQUIRED


def _config_route(model: AlexNetModel) -> Any:
    async def model_config(model_name: str) -> dict[str, Any]:
        if model_name != model.name:
            raise ModelNotFound(model_name)
        return triton_config(model)

    return model_config


async def _rest(rest: RESTServer) -> None:
    try:
        await rest.start()
    except SystemExit:  # uvicorn exits the process when it cannot bind; _run says why, in one line
        pass


async def _run(model: AlexNetModel, server: ModelServer, rest: RESTServer, listen: Listen) -> None:
    loop = asyncio.get_running_loop()
    grpc = _grpc_server(server, listen) if listen.grpc_port is not None else None
    stopping = asyncio.Event()
    uvicorn_exit = rest._server.handle_exit  # uvicorn installs it for SIGINT/SIGTERM while serving

    def handle_exit(sig: int, frame: Any) -> None:
        uvicorn_exit(sig, frame)  # REST: stop accepting, drain open requests
        loop.call_soon_threadsafe(stopping.set)

    rest._server.handle_exit = handle_exit
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal once drained: no-op then
        signal.signal(sig, lambda *_: None)
    if grpc is not None:
        await grpc.start()
    rest_task = asyncio.create_task(_rest(rest))
    stop_task = asyncio.create_task(stopping.wait())
    await asyncio.wait([rest_task, stop_task], return_when=asyncio.FIRST_COMPLETED)
    model.ready = False  # readiness probes fail from here on
    if rest_task.done() and not rest._server.started:  # uvicorn could not bind (it has logged the error)
        if grpc is not None:
            await grpc.stop(grace=0)
        raise DeployError(
            f"cannot listen for HTTP on {listen.host}:{listen.http_port} (in use, or not this machine's address); "
            "choose --http-port or --host"
        )
    if grpc is not None:
        await grpc.stop(grace=listen.grace_period_s)  # in-flight calls finish, new ones are refused
    await rest_task
    stop_task.cancel()
    await model.batcher.close()
    logger.info("alexnet-serve stopped: every in-flight request was answered")
