"""Who may call the server: a shared secret in a header, checked on REST and gRPC alike.

As Triton's restricted APIs (`--http-restricted-api`, `--grpc-restricted-protocol`), every call
belongs to an API group; a restricted group answers only requests that carry the secret:
  health         /, /v2/health/*, /v2/models/NAME/ready   (gRPC ServerLive, ServerReady, ModelReady)
  metadata       /v2, /v2/models/NAME, .../config, /v1/models, the API docs   (ServerMetadata, ModelMetadata)
  metrics        /metrics
  inference      .../infer, v1 :predict, and any path not listed here   (ModelInfer, any other method)
  model-control  /v2/repository/...   (RepositoryModelLoad, RepositoryModelUnload)
With a secret configured every group is restricted except those named open (health for an
orchestrator's probes, say). The secret is `Authorization: Bearer SECRET`, or `NAME: SECRET` with
a header name of your own; it is compared in constant time (of its SHA-256 digests: the length of
the secret does not leak either). Missing or wrong: HTTP 401 / gRPC UNAUTHENTICATED.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi.responses import JSONResponse

API_GROUPS = ("health", "metadata", "metrics", "inference", "model-control")
OPENABLE = ("health", "metadata", "metrics")  # inference and model control are never open once a secret is set
MAX_SECRET_BYTES = 4096

_REST_GROUPS = (
    ("health", re.compile(r"/|/v2/health/(live|ready)|/v2/models/[^/]+(/versions/[^/]+)?/ready|/v1/models/[^/:]+")),
    (
        "metadata",
        re.compile(r"/v2|/v2/models/[^/]+(/versions/[^/]+)?(/config)?|/v1/models|/docs.*|/redoc|/openapi.json"),
    ),
    ("metrics", re.compile(r"/metrics")),
    ("model-control", re.compile(r"/v2/repository/.*")),
)
_GRPC_GROUPS = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "RepositoryModelLoad": "model-control",
    "RepositoryModelUnload": "model-control",
}


def rest_group(path: str) -> str:
    """The API group of a REST path; an unknown path is inference (restricted: fail closed)."""
    path = path.rstrip("/") or "/"
    return next((group for group, pattern in _REST_GROUPS if pattern.fullmatch(path)), "inference")


def grpc_group(method: str) -> str:
    """The API group of a gRPC method ('/inference.GRPCInferenceService/ModelInfer')."""
    return _GRPC_GROUPS.get(method.rsplit("/", 1)[-1], "inference")


@dataclass(frozen=True)
class AuthPolicy:
    secret_digest: bytes  # SHA-256 of the secret: the secret itself is not kept
    header: str = "authorization"  # lower case; "authorization" carries "Bearer SECRET"
    open_groups: frozenset[str] = frozenset()

    @classmethod
    def from_secret(cls, secret: str, header: str | None = None, open_groups: tuple[str, ...] = ()) -> AuthPolicy:
        return cls(_digest(secret), (header or "authorization").lower(), frozenset(open_groups))

    def allows(self, group: str, value: str | None) -> bool:
        """Whether a call to `group` whose auth header is `value` (None: absent) may go on."""
        if group in self.open_groups:
            return True
        if value is None:
            return False
        if self.header == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                return False
        return hmac.compare_digest(_digest(value.strip()), self.secret_digest)

    @property
    def challenge(self) -> str:
        where = (
            "an 'Authorization: Bearer TOKEN' header" if self.header == "authorization" else f"a {self.header!r} header"
        )
        return f"unauthenticated: this server needs {where} with its token"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class RestAuth:
    """ASGI middleware: a restricted REST call without the secret gets 401 before the app sees it."""

    def __init__(self, app: Any, policy: AuthPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = self.policy.header.encode("latin-1")
        values = [v for k, v in scope.get("headers", []) if k.lower() == header]
        value = values[0].decode("latin-1") if len(values) == 1 else None  # two copies: refused
        if self.policy.allows(rest_group(scope.get("path", "")), value):
            return await self.app(scope, receive, send)
        headers = {"www-authenticate": "Bearer"} if self.policy.header == "authorization" else None
        await JSONResponse({"error": self.policy.challenge}, status_code=401, headers=headers)(scope, receive, send)


class GrpcAuth(grpc.aio.ServerInterceptor):
    """gRPC interceptor: a restricted call without the secret ends with UNAUTHENTICATED."""

    def __init__(self, policy: AuthPolicy) -> None:
        self.policy = policy

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        metadata = [v for k, v in details.invocation_metadata or () if k == self.policy.header]
        value = metadata[0] if len(metadata) == 1 and isinstance(metadata[0], str) else None
        handler = await continuation(details)
        if handler is None or self.policy.allows(grpc_group(details.method), value):
            return handler
        return _refusing(handler, self.policy.challenge)


def _refusing(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that aborts with UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    serializers = {"request_deserializer": handler.request_deserializer}
    serializers["response_serializer"] = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    return grpc.stream_stream_rpc_method_handler(refuse, **serializers)
