"""alexnet-serve on loopback, driven by tritonclient (HTTP and gRPC) and alexnet-run --server.

Every server runs in a subprocess (benchmarks/serve_process.py); every wait is bounded in time and count.
The model is tests/data/tiny.onnx (3 classes, 8 px): the protocol, not the network, is tested.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_onnx import TINY_ONNX

from benchmarks.serve_process import LAUNCH, free_port, running

if importlib.util.find_spec("kserve") is None:  # never imported here: it clashes with tritonclient.grpc
    pytest.skip("alexnet-serve needs the [serve] extra (kserve)", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http", reason="the client needs the [client] extra (tritonclient)")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="the client needs the [client] extra (tritonclient)")
from tritonclient.utils import InferenceServerException  # noqa: E402

from runtime.cli import main as run_main  # noqa: E402
from runtime.metadata import METADATA_KEY, ArtifactMetadata  # noqa: E402
from runtime.preprocess import preprocess_batch  # noqa: E402

pytestmark = pytest.mark.slow


def png_bytes(seed: int, size: tuple[int, int] = (24, 20)) -> bytes:
    pixels = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-images")
    for i in range(6):
        (folder / f"{i}.png").write_bytes(png_bytes(i, (20 + 3 * i, 30 - 2 * i)))
    Image.open(io.BytesIO(png_bytes(9))).convert("RGB").save(folder / "9.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(TINY_ONNX, tmp_path_factory.mktemp("serve") / "server.log", "--max-batch-delay-ms", "2") as s:
        yield s


def run_json(*args: str) -> list[dict]:
    result = CliRunner().invoke(run_main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_same_predictions(remote: list[dict], local: list[dict]) -> None:
    assert [r["path"] for r in remote] == [r["path"] for r in local]
    for got, want in zip(remote, local):
        assert got["labels"] == want["labels"] and got["indices"] == want["indices"]
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=0, atol=1e-5)
        if "logits" in want:
            np.testing.assert_allclose(got["logits"], want["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_predictions_equal_alexnet_run(server, images, scheme):
    local = run_json("-m", str(TINY_ONNX), "--topk", "2", "--logits", str(images))
    url = server.http if scheme == "http" else server.grpc
    remote = run_json("--server", url, "--model-name", "alexnet", "--topk", "2", "--logits", str(images))
    assert len(local) == 7
    assert_same_predictions(remote, local)


def test_preprocessed_tensor_input_and_metadata(server, images):
    import runtime

    predictor = runtime.load(TINY_ONNX)
    batch = preprocess_batch(sorted(images.glob("*.png")), predictor.metadata.preprocess)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("alexnet", [tensor], outputs=[httpclient.InferRequestedOutput("logits")])
    np.testing.assert_allclose(result.as_numpy("logits"), predictor.predict_logits(batch), atol=1e-5)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("alexnet")
    inputs = {i["name"]: i["datatype"] for i in client.get_model_metadata("alexnet")["inputs"]}
    assert inputs == {"image": "BYTES", "input": "FP32"}
    config = client.get_model_config("alexnet")
    assert ArtifactMetadata.from_json(config["parameters"][METADATA_KEY]["string_value"]) == predictor.metadata


def http_infer(server, tensor, **kwargs):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    return client.infer(kwargs.pop("model", "alexnet"), [tensor], **kwargs)


def bytes_input(*files: bytes, name: str = "image"):
    tensor = httpclient.InferInput(name, [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    return tensor


def float_input(shape, datatype="FP32", name="input"):
    tensor = httpclient.InferInput(name, list(shape), datatype)
    tensor.set_data_from_numpy(np.zeros(shape, np.float32 if datatype == "FP32" else np.int32))
    return tensor


def strip_png() -> bytes:
    """1 x 1.5M pixels: small when decoded, 8 x 12M once its shorter side is 8 (the runtime's pixel limit)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1_500_000)).save(buffer, "PNG")
    return buffer.getvalue()


BAD_TENSOR_REQUESTS = {
    "unknown model": (lambda: float_input((1, 3, 8, 8)), {"model": "nope"}, "404", "nope"),
    "wrong tensor name": (lambda: float_input((1, 3, 8, 8), name="pixels"), {}, "400", "unknown input 'pixels'"),
    "wrong shape": (lambda: float_input((1, 3, 8, 9)), {}, "400", "must have shape [n, 3, 8, 8]"),
    "wrong datatype": (lambda: float_input((1, 3, 8, 8), "INT32"), {}, "400", "must be FP32"),
    "empty batch": (lambda: float_input((0, 3, 8, 8)), {}, "400", "empty batch"),
    "undecodable image": (lambda: bytes_input(b"not an image"), {}, "400", "not an image file"),
    "oversized image": (lambda: bytes_input(strip_png()), {}, "400", "refused"),
    "bad top_k": (lambda: bytes_input(png_bytes(1)), {"parameters": {"top_k": 0}}, "400", "top_k"),
}


@pytest.mark.parametrize("case", sorted(BAD_TENSOR_REQUESTS))
def test_bad_request_gets_its_error_and_the_server_keeps_serving(server, case):
    make, kwargs, status, message = BAD_TENSOR_REQUESTS[case]
    with pytest.raises(InferenceServerException) as caught:
        http_infer(server, make(), **kwargs)
    assert caught.value.status() == status and message in caught.value.message()
    assert "\n" not in caught.value.message()
    good = http_infer(server, bytes_input(png_bytes(2)))
    assert good.as_numpy("labels").shape == (1, 3)


def test_json_takes_base64_images_and_an_image_that_is_neither_names_the_accepted_forms(server):
    png = png_bytes(4)
    expected = http_infer(server, bytes_input(png)).as_numpy("probabilities")  # raw, binary extension
    element = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(png).decode()]}
    headers = {"Content-Type": "application/json"}
    code, answer = server.post("/v2/models/alexnet/infer", json.dumps({"inputs": [element]}).encode(), headers)
    outputs = {o["name"]: o["data"] for o in json.loads(answer)["outputs"]}
    assert code == 200
    np.testing.assert_allclose(outputs["probabilities"], expected.reshape(-1), rtol=0, atol=1e-6)
    element["data"] = ["img.jpg"]  # a file name, not the file: neither an image nor base64
    code, answer = server.post("/v2/models/alexnet/infer", json.dumps({"inputs": [element]}).encode(), headers)
    error = json.loads(answer)["error"]
    assert code == 400 and "\n" not in error and "not an image file" in error
    for form in ("binary data extension (Inference-Header-Content-Length)", "base64 image bytes in the JSON BYTES"):
        assert form in error
    assert "FP32 tensor [n, 3, 8, 8] as input 'input'" in error


RAW_BAD_BODIES = {
    "malformed JSON": (b'{"inputs": [', {"Content-Type": "application/json"}, 400, "not JSON"),
    "no inputs": (b'{"id": "1"}', {"Content-Type": "application/json"}, 400, "malformed request"),
    "binary header past the body": (b"{}", {"Inference-Header-Content-Length": "99"}, 400, "within the body"),
}


@pytest.mark.parametrize("case", sorted(RAW_BAD_BODIES))
def test_malformed_bodies_get_one_line_errors(server, case):
    body, headers, status, message = RAW_BAD_BODIES[case]
    code, answer = server.post("/v2/models/alexnet/infer", body, headers)
    error = json.loads(answer)["error"]
    assert code == status and message in error and "\n" not in error


def test_payload_over_the_limit_is_refused(tmp_path):
    with running(TINY_ONNX, tmp_path / "server.log", "--max-request-bytes", "4096", "--no-grpc") as small:
        code, answer = small.post("/v2/models/alexnet/infer", b"x" * 5000, {"Content-Type": "application/json"})
        assert code == 413 and "4,096-byte limit" in json.loads(answer)["error"]
        good = http_infer(small, bytes_input(png_bytes(3)))
        assert good.as_numpy("indices").shape == (1, 3)


def test_grpc_errors_have_the_protocol_status(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    tensor = grpcclient.InferInput("input", [1, 3, 8, 9], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 8, 9), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("alexnet", [tensor])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "must have shape" in caught.value.message()


def test_concurrent_requests_batch_and_overload_is_unavailable(tmp_path):
    # A batch closes at 4 images, or after 10 s: four concurrent one-image requests make exactly one batch.
    args = ("--max-batch-size", "4", "--max-batch-delay-ms", "10000", "--max-queue", "4")
    with running(TINY_ONNX, tmp_path / "server.log", *args) as s:
        answers = run_threads(s, [bytes_input(png_bytes(i)) for i in range(4)])
        assert all(not isinstance(a, Exception) for a in answers), answers
        assert s.metric("alexnet_batch_size_count") == 1 and s.metric("alexnet_batch_size_sum") == 4
        # Three images wait for a fourth; two more would make five, over --max-queue 4: unavailable, at once.
        waiting = start_thread(s, bytes_input(*[png_bytes(i) for i in range(3)]))
        s.wait_for(lambda: s.metric("alexnet_queued_images") == 3, "three queued images")
        with pytest.raises(InferenceServerException) as caught:
            http_infer(s, bytes_input(png_bytes(5), png_bytes(6)))
        assert caught.value.status() == "503" and "overloaded" in caught.value.message()
        grpc_tensor = grpcclient.InferInput("image", [2], "BYTES")
        grpc_tensor.set_data_from_numpy(np.array([png_bytes(5), png_bytes(6)], dtype=np.object_))
        with pytest.raises(InferenceServerException) as caught:
            grpcclient.InferenceServerClient(f"127.0.0.1:{s.grpc_port}").infer("alexnet", [grpc_tensor])
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        last = http_infer(s, bytes_input(png_bytes(7)))  # the fourth image: the waiting batch runs
        waiting.join(30)
        assert not waiting.is_alive() and not isinstance(waiting.answer, Exception), waiting.answer
        assert last.as_numpy("labels").shape == (1, 3) and waiting.answer.as_numpy("labels").shape == (3, 3)
        assert s.metric("alexnet_requests_total", 'outcome="unavailable"') == 2


class _Request(threading.Thread):
    def __init__(self, server, tensor):
        super().__init__(daemon=True)
        self.server, self.tensor, self.answer = server, tensor, None

    def run(self):
        try:
            self.answer = http_infer(self.server, self.tensor)
        except Exception as exc:  # reported by the test
            self.answer = exc


def start_thread(server, tensor) -> _Request:
    thread = _Request(server, tensor)
    thread.start()
    return thread


def run_threads(server, tensors) -> list:
    threads = [start_thread(server, t) for t in tensors]
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a request did not finish within 60 s"
    return [t.answer for t in threads]


def test_sigterm_finishes_in_flight_requests(tmp_path):
    with running(TINY_ONNX, tmp_path / "server.log", "--max-batch-delay-ms", "3000") as s:
        in_flight = start_thread(s, bytes_input(png_bytes(1)))
        s.wait_for(lambda: s.metric("alexnet_queued_images") == 1, "the request to wait for its batch")
        assert s.stop() == 0  # SIGTERM; returns once the process has exited
        in_flight.join(30)
        assert not isinstance(in_flight.answer, Exception), in_flight.answer
        assert in_flight.answer.as_numpy("labels").shape == (1, 3)
        with pytest.raises(OSError):
            s.get("/v2/health/ready", timeout=2)  # nothing listens any more


def serve_command(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, timeout=timeout)


def test_a_port_in_use_is_a_one_line_error(server):
    done = serve_command(str(TINY_ONNX), "--http-port", str(server.http_port), "--grpc-port", str(free_port()))
    last = (done.stdout + done.stderr).strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith(f"Error: cannot listen for HTTP on 127.0.0.1:{server.http_port}")
    done = serve_command(str(TINY_ONNX), "--http-port", str(free_port()), "--grpc-port", str(server.grpc_port))
    last = (done.stdout + done.stderr).strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("Error: cannot listen for gRPC")


def test_print_manifest_and_its_usage_error():
    done = serve_command("--print-manifest", "best.onnx", "--storage-uri", "s3://b/m/", "--max-batch-size", "8")
    assert done.returncode == 0 and done.stdout.startswith("apiVersion: serving.kserve.io/v1beta1"), done.stderr
    assert '"--max-batch-size", "8"' in done.stdout and '"/mnt/models/best.onnx"' in done.stdout
    done = serve_command("--print-manifest", "best.onnx")
    assert done.returncode == 2 and "--storage-uri" in done.stderr
    done = serve_command(str(TINY_ONNX), "--name", "../x")
    assert done.returncode == 2 and "model name" in done.stderr


def test_client_usage_and_connection_errors(images):
    result = CliRunner().invoke(run_main, ["--server", "http://127.0.0.1:1", "-m", str(TINY_ONNX), str(images)])
    assert result.exit_code == 2 and "--model" in result.output
    result = CliRunner().invoke(run_main, ["--server", f"http://127.0.0.1:{free_port()}", str(images)])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "cannot reach" in errors[0]
    result = CliRunner().invoke(run_main, ["--server", "ftp://host", str(images)])
    assert result.exit_code == 2 and "http://HOST" in result.output
