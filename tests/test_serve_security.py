"""alexnet-serve on a network: who may call it (token), over what (TLS), and how long a slow client may hold it.

The units (API groups, the token policy, token files, TLS files, limits) run in every suite; the
servers (subprocesses, benchmarks/serve_process.py) are `slow`. kserve is never imported here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import numpy as np
import pytest
from tiny_onnx import TINY_ONNX

from benchmarks.serve_process import running
from runtime.errors import DeployError
from runtime.server import guards
from runtime.server.auth import AuthPolicy, grpc_group, rest_group
from runtime.server.security import TOKEN_ENV, TlsFiles, exposure_warnings, read_token

TOKEN = "s3cret-token-0123456789"
needs_server = pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="needs the [serve] extra")


@pytest.mark.parametrize(
    "path, group",
    [
        ("/", "health"),
        ("/v2/health/ready", "health"),
        ("/v2/models/alexnet/ready", "health"),
        ("/v2", "metadata"),
        ("/v2/models/alexnet", "metadata"),
        ("/v2/models/alexnet/config", "metadata"),
        ("/metrics", "metrics"),
        ("/v2/repository/models/alexnet/unload", "model-control"),
        ("/v2/models/alexnet/infer", "inference"),
        ("/v2/models/alexnet/infer/", "inference"),
        ("/v1/models/alexnet:predict", "inference"),
        ("/some/new/route", "inference"),  # unknown: restricted
    ],
)
def test_rest_paths_belong_to_api_groups(path, group):
    assert rest_group(path) == group


def test_grpc_methods_belong_to_api_groups():
    assert grpc_group("/inference.GRPCInferenceService/ModelInfer") == "inference"
    assert grpc_group("/inference.GRPCInferenceService/ServerReady") == "health"
    assert grpc_group("/inference.GRPCInferenceService/RepositoryModelUnload") == "model-control"
    assert grpc_group("/inference.GRPCInferenceService/SomethingNew") == "inference"


def test_the_policy_wants_the_exact_token_unless_the_group_is_open():
    bearer = AuthPolicy.from_secret(TOKEN, open_groups=("health",))
    assert bearer.allows("inference", f"Bearer {TOKEN}") and bearer.allows("inference", f"bearer {TOKEN}")
    for value in (None, TOKEN, f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", f"Bearer {TOKEN[:-1]}"):
        assert not bearer.allows("inference", value), value
    assert bearer.allows("health", None) and not bearer.allows("metadata", None)
    custom = AuthPolicy.from_secret(TOKEN, "X-Api-Key")
    assert custom.header == "x-api-key" and custom.allows("metrics", TOKEN) and not custom.allows("metrics", "nope")
    assert TOKEN not in repr(custom)  # only its digest is kept


def test_tokens_come_from_a_file_or_the_environment(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\nsecond line ignored\n")
    assert read_token(str(token_file), {}) == TOKEN
    assert read_token(None, {TOKEN_ENV: TOKEN}) == TOKEN
    assert read_token(None, {}) is None
    token_file.write_text("short\n")
    with pytest.raises(DeployError, match="16 or more printable"):
        read_token(str(token_file), {})
    with pytest.raises(DeployError, match="cannot read the token file"):
        read_token(str(tmp_path / "missing"), {})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DeployError, match="not a regular file"):
        read_token(str(fifo), {})  # refused at once: reading a FIFO would wait for a writer


def test_a_non_loopback_listener_is_warned_about_what_it_lacks():
    assert exposure_warnings("127.0.0.1", False, False) == [] and exposure_warnings("::1", False, False) == []
    assert exposure_warnings("localhost", False, False) == []
    lines = exposure_warnings("0.0.0.0", False, False)
    assert len(lines) == 2 and "without authentication" in lines[0] and "without TLS" in lines[1]
    assert exposure_warnings("0.0.0.0", True, True) == []
    assert len(exposure_warnings("server.example", True, False)) == 1


def test_tls_files_that_make_no_server_are_one_line_errors(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(DeployError, match="TLS: cannot use --tls-cert") as caught:
        TlsFiles(tmp_path / "cert.pem", tmp_path / "cert.pem").check()
    assert "\n" not in str(caught.value)


def test_connection_cap_is_lowered_to_the_descriptor_limit(monkeypatch):
    monkeypatch.setattr(guards.resource, "getrlimit", lambda _: (256, 4096))
    assert guards.ConnectionLimits(max_connections=1000).usable_connections() == 256 - guards.FD_RESERVE
    assert guards.ConnectionLimits(max_connections=10).usable_connections() == 10
    options = dict(guards.grpc_limit_options(guards.ConnectionLimits(header_timeout_s=2.5)))
    assert options["grpc.server_handshake_timeout_ms"] == 2500


# --- servers -------------------------------------------------------------------------------------


def partial_request(port: int, body: bool = False) -> socket.socket:
    """A connection that starts a request and never finishes it (headers, or with body=True the body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if body:
        sock.sendall(b"POST /v2/models/alexnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    else:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")
    return sock


def answer_of(sock: socket.socket) -> bytes:
    """What the server sent before closing (b"" if it closed without a word); fails if it stays open."""
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    return data


@pytest.mark.slow
@needs_server
def test_slow_clients_are_cut_off_and_the_health_probe_answers(tmp_path):
    args = ("--no-grpc", "--header-timeout", "1", "--body-timeout", "1.5")
    with running(TINY_ONNX, tmp_path / "server.log", *args) as server:
        slow = [partial_request(server.http_port) for _ in range(30)]
        slow_body = partial_request(server.http_port, body=True)
        started = time.monotonic()
        for _ in range(3):  # a header line every 0.3 s does not extend the deadline
            time.sleep(0.3)
            for sock in slow:
                sock.sendall(b"X-Slow: 1\r\n")
        assert server.get("/v2/health/ready", timeout=5)[0] == 200  # probes answer meanwhile
        answers = [answer_of(sock) for sock in slow]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
        assert answer_of(slow_body).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 6


@pytest.mark.slow
@needs_server
def test_past_the_cap_the_longest_waiting_connection_makes_room_or_the_newcomer_gets_503(tmp_path):
    with running(TINY_ONNX, tmp_path / "server.log", "--no-grpc", "--max-connections", "8") as server:
        idle = [partial_request(server.http_port) for _ in range(8)]  # 300 of these once starved the probes
        time.sleep(0.3)  # the server has accepted them
        assert server.get("/v2/health/ready")[0] == 200  # the oldest idle one made room
        assert answer_of(idle[0]).startswith(b"HTTP/1.1 408")
        busy = [partial_request(server.http_port, body=True) for _ in range(8)]  # each evicts an idle one
        time.sleep(0.3)
        assert all(answer_of(sock).startswith(b"HTTP/1.1 408") for sock in idle[1:])
        newcomer = socket.create_connection(("127.0.0.1", server.http_port))
        assert answer_of(newcomer).startswith(b"HTTP/1.1 503")  # every slot is a request in progress
        for sock in busy:
            sock.close()
        server.wait_for(lambda: server.get("/v2/health/ready")[0] == 200, "a free connection slot")


@pytest.mark.slow
@needs_server
def test_bad_data_is_400_in_one_log_line_and_probes_log_nothing(tmp_path):
    log = tmp_path / "server.log"
    with running(TINY_ONNX, log, "--no-grpc") as server:
        before = log.read_text().count("\n")
        for _ in range(5):
            assert server.get("/v2/health/ready")[0] == 200
        assert log.read_text().count("\n") == before  # no access lines, no timings (--access-log is off)
        for data in ([{"a": 1}], [10**15]):
            body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": data}]}
            code, answer = server.post("/v2/models/alexnet/infer", json.dumps(body).encode())
            assert code == 400 and "expected the bytes of an encoded image" in json.loads(answer)["error"]
        code, _ = server.post("/v2/models/alexnet/infer", b'{"inputs": [', {"Content-Type": "application/json"})
        assert code == 400
        new = log.read_text().splitlines()[before:]
    assert "Traceback" not in "\n".join(new)
    assert len([line for line in new if " WARNING alexnet.serve: POST " in line]) == 3, new


@pytest.mark.slow
@needs_server
def test_a_token_guards_rest_and_grpc_but_not_open_health(tmp_path):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    (tmp_path / "token").write_text(TOKEN + "\n")
    args = ("--auth-token-file", str(tmp_path / "token"), "--open-api", "health")
    with running(TINY_ONNX, tmp_path / "server.log", *args) as server:  # readiness is polled without a token
        body = json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0] * 192}]}
        )
        code, answer = server.post("/v2/models/alexnet/infer", body.encode())
        assert code == 401 and "Authorization: Bearer" in json.loads(answer)["error"]
        assert server.get("/v2/models/alexnet/config")[0] == 401 and server.get("/metrics")[0] == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        assert server.post("/v2/models/alexnet/infer", body.encode(), wrong)[0] == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert server.post("/v2/models/alexnet/infer", body.encode(), good)[0] == 200
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        tensor = grpcclient.InferInput("input", [1, 3, 8, 8], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
        with pytest.raises(InferenceServerException) as caught:
            client.infer("alexnet", [tensor])
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
        assert client.infer("alexnet", [tensor], headers={"authorization": f"Bearer {TOKEN}"}).as_numpy(
            "indices"
        ).shape == (1, 3)
        assert client.is_server_ready()  # health is open


def make_certificates(folder) -> dict:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA (openssl)."""

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.pem")  # fmt: skip
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.mark.slow
@needs_server
@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("curl") is None, reason="needs openssl and curl")
def test_tls_with_tritonclient_and_curl_and_client_certificates(tmp_path):
    httpclient = pytest.importorskip("tritonclient.http")
    grpcclient = pytest.importorskip("tritonclient.grpc")
    pem = make_certificates(tmp_path)
    context = ssl.create_default_context(cafile=str(pem["ca.pem"]))
    tls = ("--tls-cert", str(pem["server.pem"]), "--tls-key", str(pem["server.key"]))
    with running(TINY_ONNX, tmp_path / "tls.log", *tls, scheme="https", context=context) as server:
        curl = ["curl", "-sS", "--cacert", str(pem["ca.pem"]), f"{server.http}/v2/health/ready"]
        assert json.loads(subprocess.run(curl, capture_output=True, check=True, timeout=30).stdout) == {"ready": True}
        http = httpclient.InferenceServerClient(
            f"127.0.0.1:{server.http_port}", ssl=True, ssl_context_factory=lambda: context
        )
        assert http.is_model_ready("alexnet")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}", ssl=True,
                                                root_certificates=str(pem["ca.pem"]))  # fmt: skip
        assert grpc.is_server_ready()
    client_context = ssl.create_default_context(cafile=str(pem["ca.pem"]))
    client_context.load_cert_chain(str(pem["client.pem"]), str(pem["client.key"]))
    mutual = (*tls, "--tls-client-ca", str(pem["ca.pem"]), "--no-grpc")
    with running(TINY_ONNX, tmp_path / "mtls.log", *mutual, scheme="https", context=client_context) as server:
        anonymous = subprocess.run(curl[:-1] + [f"{server.http}/v2/health/ready"], capture_output=True, timeout=30)
        assert anonymous.returncode != 0  # no client certificate: the handshake fails
        assert server.get("/v2/health/ready")[0] == 200


def peak_rss_mb(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


@pytest.mark.slow
@needs_server
def test_float_tiffs_are_refused_before_decoding_and_memory_stays_bounded(tmp_path):
    from benchmarks.serve_hostile import float_tiff

    tiff = float_tiff(9400)  # ~0.6 MB deflate; 353 MB of float32 pixels, 700 MB+ to convert
    body = b"".join(
        [json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(tiff) + 4}}]}).encode(),
         len(tiff).to_bytes(4, "little"), tiff]
    )  # fmt: skip
    header = str(len(body) - len(tiff) - 4)
    with running(TINY_ONNX, tmp_path / "server.log", "--no-grpc") as server:
        before = peak_rss_mb(server.process.pid)
        for _ in range(2):
            code, answer = server.post("/v2/models/alexnet/infer", body, {"Inference-Header-Content-Length": header})
            assert code == 400 and "MiB allowed" in json.loads(answer)["error"], answer
        assert peak_rss_mb(server.process.pid) - before < 100  # was +5 GB: the pixels were never decoded
