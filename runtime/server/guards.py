"""Limits that keep slow or greedy clients from holding the server: time and connection bounds for
REST (a uvicorn protocol class) and gRPC (channel arguments), and the request-body limit.

uvicorn closes an idle keep-alive connection, but a connection that never finishes its headers
(slowloris: a partial request, then one header line every few seconds) or its body is kept open
for ever, and every one holds a file descriptor: a few hundred of them starve the health probes.
So each connection here has
  - a header deadline: the request line and headers must arrive within `header_timeout_s` of the
    connection (or of the request's first byte on a kept-alive connection),
  - a body deadline: the body must arrive within `body_timeout_s` of the headers,
  - an idle timeout between requests (uvicorn's keep-alive timeout),
and past `max_connections` open connections a new one takes the place of the connection that has
waited longest without a request in progress (that one gets 408), or, if every connection is
busy being answered, gets 503 and is closed at once.
gRPC gets the same through grpc-core: a handshake deadline, an idle and a maximum connection age,
keep-alive pings, and a cap on concurrent calls.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_CONNECTIONS = 1000
FD_RESERVE = 64  # descriptors kept for the model, logs, gRPC and the process itself


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0  # nginx's client_header_timeout is 60 s between reads; this is the whole header
    body_timeout_s: float = 60.0  # a 64 MB body at ~1 MB/s
    idle_timeout_s: float = 65.0  # above the 60 s idle timeout of common load balancers, so they close first
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connection_age_s: float = 3600.0  # gRPC: a long-lived channel reconnects (and is rebalanced) hourly

    def usable_connections(self) -> int:
        """`max_connections`, lowered to what the process's file-descriptor limit can hold."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - FD_RESERVE))


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a connection cap."""

    limits: ConnectionLimits = ConnectionLimits()
    cap: int = DEFAULT_MAX_CONNECTIONS

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = self.loop.time()  # set while no request is in progress
        if len(self.connections) > self.cap and not self._evict_the_longest_waiting():
            message = f"too many connections (over {self.cap}); try again later"
            transport.write(_refusal(503, "Service Unavailable", message))
            transport.close()
            return
        self._arm(self.limits.header_timeout_s)

    def _evict_the_longest_waiting(self) -> bool:
        """Make room by closing the connection that has waited longest without a request in
        progress (headers not yet complete, or idle): a slow client's, not one being answered, so
        a full server still takes new callers (health probes among them). False: none to close."""
        waiting = [
            c
            for c in self.connections
            if c is not self and getattr(c, "_waiting_since", None) is not None and not c.transport.is_closing()
        ]
        if not waiting:
            return False
        min(waiting, key=lambda c: c._waiting_since)._too_slow()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a kept-alive connection's next request: its headers' deadline starts now
            self._arm(self.limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._waiting_since = None
        self._disarm()
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s)

    def on_message_complete(self) -> None:
        self._disarm()  # from here the idle timeout (uvicorn's keep-alive) applies, once answered
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:  # not a pipelined request's turn
            self._waiting_since = self.loop.time()  # idle until its next request

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_refusal(408, "Request Timeout", "the request did not arrive in time"))
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The protocol class uvicorn builds per connection (Config.http), carrying these limits."""
    return type("GuardedHttp", (GuardedHttpProtocol,), {"limits": limits, "cap": limits.usable_connections()})


def grpc_limit_options(limits: ConnectionLimits) -> list[tuple[str, int]]:
    """grpc-core channel arguments for the same bounds (grpc.aio.server's `options`)."""
    ms = lambda seconds: int(seconds * 1000)  # noqa: E731
    return [
        ("grpc.server_handshake_timeout_ms", ms(limits.header_timeout_s)),
        ("grpc.max_connection_idle_ms", ms(limits.idle_timeout_s)),
        ("grpc.max_connection_age_ms", ms(limits.max_connection_age_s)),
        ("grpc.max_connection_age_grace_ms", ms(limits.body_timeout_s)),
        ("grpc.keepalive_time_ms", ms(limits.idle_timeout_s)),  # a dead peer is found and dropped
        ("grpc.keepalive_timeout_ms", ms(limits.header_timeout_s)),
    ]


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before the app reads it whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await self._refuse(send, declared.decode("latin-1"))
        received = 0

        async def bounded_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # a chunked body that claimed no length
                raise _TooLarge
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except _TooLarge:
            await self._refuse(send, f"more than {received}")

    async def _refuse(self, send: Any, size: str) -> None:
        message = f"request body of {size} bytes is over the {self.limit:,}-byte limit (--max-request-bytes)"
        await JSONResponse({"error": message}, status_code=413)({"type": "http"}, None, send)


class _TooLarge(Exception):
    pass
