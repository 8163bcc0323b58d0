"""alexnet-serve in a subprocess on 127.0.0.1: the load benchmark's server, and the loopback tests'.

kserve and tritonclient.grpc register the same protobuf names, so the server never runs in the
client's process: it is started as a command, waited for (bounded), and stopped with SIGTERM.
Standard library only (subprocess, urllib).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 90  # importing kserve and loading the model, on a slow 2-core machine
STOP_TIMEOUT_S = 60
LAUNCH = "from runtime.launch import alexnet_serve; alexnet_serve()"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log: Path
    scheme: str = "http"  # https: a server started with --tls-cert/--tls-key
    headers: dict = field(default_factory=dict)  # sent with every request (a token, say)
    context: ssl.SSLContext | None = None  # how to trust an https server

    @property
    def http(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        request = urllib.request.Request(self.http + path, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: bytes, headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
        headers = {**self.headers, **(headers or {})}
        request = urllib.request.Request(self.http + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metric(self, name: str, labels: str = 'model_name="alexnet"') -> float:
        """One sample's value from /metrics, e.g. metric("alexnet_batch_size_count"); 0 when absent."""
        _, text = self.get("/metrics")
        pattern = re.compile(rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$", re.M)
        found = pattern.search(text.decode())
        return float(found.group(1)) if found else 0.0

    def wait_for(self, condition, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"alexnet-serve did not stop within {STOP_TIMEOUT_S} s\n{self.log_tail()}") from None


def start_server(model: Path, log: Path, *args: str, **client: object) -> Server:
    """Start alexnet-serve MODEL ARGS; `client`: Server's scheme, headers and context for talking to it."""
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-c", LAUNCH, str(model), "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    handle = log.open("wb")
    process = subprocess.Popen([*command, *args], stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    server = Server(process, http_port, grpc_port, log, **client)  # type: ignore[arg-type]
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(f"alexnet-serve exited with {process.returncode}\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            if server.get("/v2/health/ready", timeout=2)[0] == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"alexnet-serve was not ready within {START_TIMEOUT_S} s\n{server.log_tail()}")
        time.sleep(0.2)


@contextlib.contextmanager
def running(model: Path, log: Path, *args: str, **client: object) -> Iterator[Server]:
    server = start_server(model, log, *args, **client)
    try:
        yield server
    finally:
        server.stop()
