"""Failed requests answered with the protocol's status and logged in one line.

kserve's handlers log every failure at ERROR with its traceback (24 lines for a malformed body):
any client could flood the log. Here a client's mistake (400, 404, 503 ...) is one WARNING line,
a failure of the server one ERROR line (its traceback only when the logger is at DEBUG), for REST
and gRPC alike. Model control is off: the server runs the one artifact it was started with.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from grpc import StatusCode
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor

from runtime.errors import first_line

logger = logging.getLogger("alexnet.serve")
MESSAGE_LIMIT = 400  # characters of an error (answer and log line): room for what an image input may be

# (exception, HTTP status, gRPC status, the client's fault): first match wins
FAILURES: tuple[tuple[type[BaseException], int, StatusCode, bool], ...] = (
    (InvalidInput, 400, StatusCode.INVALID_ARGUMENT, True),
    (UnsupportedProtocol, 400, StatusCode.INVALID_ARGUMENT, True),
    (ModelNotFound, 404, StatusCode.NOT_FOUND, True),
    (ModelNotReady, 503, StatusCode.UNAVAILABLE, True),
    (ServerNotReady, 503, StatusCode.UNAVAILABLE, True),
    (ServerNotLive, 503, StatusCode.UNAVAILABLE, True),
    (NotImplementedError, 501, StatusCode.UNIMPLEMENTED, True),
    (InferenceError, 500, StatusCode.INTERNAL, False),
)


def classify(exc: BaseException) -> tuple[int, StatusCode, bool]:
    for kind, http, grpc_status, client in FAILURES:
        if isinstance(exc, kind):
            return http, grpc_status, client
    return 500, StatusCode.INTERNAL, False


def message(exc: BaseException) -> str:
    return first_line(exc, MESSAGE_LIMIT) if str(exc) else type(exc).__name__


def log_failure(exc: BaseException, where: str, client: bool) -> None:
    if client:
        logger.warning("%s: %s", where, message(exc))
    else:
        logger.error("%s: %s: %s", where, type(exc).__name__, message(exc), exc_info=logger.isEnabledFor(logging.DEBUG))


async def rest_failure(request: Request, exc: Exception) -> JSONResponse:
    status, _, client = classify(exc)
    log_failure(exc, f"{request.method} {request.url.path} -> {status}", client)
    text = message(exc) if client or isinstance(exc, InferenceError) else f"{type(exc).__name__}: {message(exc)}"
    return JSONResponse({"error": text}, status_code=status)


def install_rest_handlers(app: FastAPI) -> None:
    """Replace kserve's handlers (call after kserve has added its own)."""
    for kind, *_ in FAILURES:
        app.add_exception_handler(kind, rest_failure)
    app.add_exception_handler(Exception, rest_failure)


class UncaughtErrors:
    """ASGI middleware: an exception no handler took becomes one 500 line here, not Starlette's
    re-raise (which makes uvicorn log the traceback a second time)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(event: dict) -> None:
            nonlocal started
            started = started or event.get("type") == "http.response.start"
            await send(event)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            await (await rest_failure(Request(scope), exc))(scope, receive, send)


class GrpcFailures(ExceptionToStatusInterceptor):
    """kserve's exception-to-status interceptor, with one log line per failure."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> None:
        _, status, client = classify(ex)
        log_failure(ex, f"gRPC {method_name.rsplit('/', 1)[-1]} -> {status.name}", client)
        await context.abort(status, message(ex) if client else "internal server error")


class NoModelControl:
    """The model repository extension: load/unload are refused (501 / UNIMPLEMENTED)."""

    async def load(self, model_name: str) -> None:
        raise NotImplementedError("model control is off: alexnet-serve serves the artifact it was started with")

    async def unload(self, model_name: str) -> None:
        raise NotImplementedError("model control is off: alexnet-serve serves the artifact it was started with")
