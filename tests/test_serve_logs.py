"""What alexnet-serve writes to its terminal: one start-up line saying what is served where, no
deprecation warnings, and a line per request exactly when --access-log is given.

Servers run in subprocesses (benchmarks/serve_process.py), their stdout and stderr in one log;
kserve is never imported here.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from tiny_onnx import TINY_ONNX

from benchmarks.serve_process import running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="needs the [serve] extra"),
]
ACCESS_LINE = re.compile(r'uvicorn\.access: \S+ - "(?:GET|POST) (\S+) HTTP')
TENSOR = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.5] * 192}]}


def make_requests(server, name: str = "alexnet") -> None:
    assert server.get("/v2/health/ready")[0] == 200
    assert server.get(f"/v2/models/{name}")[0] == 200  # kserve's own route (FastAPI's ORJSONResponse)
    body = json.dumps(TENSOR).encode()
    assert server.post(f"/v2/models/{name}/infer", body, {"Content-Type": "application/json"})[0] == 200


def test_one_start_up_line_and_no_access_lines_or_deprecation_warnings_by_default(tmp_path):
    log = tmp_path / "server.log"
    with running(TINY_ONNX, log, "--name", "tiny") as server:
        make_requests(server, "tiny")
        ports = server.http_port, server.grpc_port
    text = log.read_text()
    (start,) = [line for line in text.splitlines() if "alexnet.serve: serving " in line]
    assert f"serving {TINY_ONNX} as model 'tiny' (onnx, fp32, 3 classes, onnxruntime" in start
    assert start.endswith(f"REST http://127.0.0.1:{ports[0]}, gRPC 127.0.0.1:{ports[1]}")
    assert "DeprecationWarning" not in text and "Warning:" not in text  # FastAPI's, through kserve's routes
    assert not ACCESS_LINE.search(text) and "kserve.trace" not in text, text


def test_access_log_writes_a_line_per_request(tmp_path):
    log = tmp_path / "server.log"
    with running(TINY_ONNX, log, "--access-log", "--no-grpc") as server:
        make_requests(server)
    text = log.read_text()
    paths = ACCESS_LINE.findall(text)
    assert "/v2/models/alexnet/infer" in paths and "/v2/models/alexnet" in paths, text
    assert "gRPC off (--no-grpc)" in text and "DeprecationWarning" not in text
