"""The server's framework-free parts: the dynamic batcher, the manifest, the client's URL rules, the
decode budget (the request checks: test_serve_protocol.py).

No kserve, no tritonclient, no torch: these also run in the edge install.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from runtime.client import ServerError, _connect
from runtime.server.batcher import DynamicBatcher, QueueFull
from runtime.server.manifest import Deployment, inference_service

pytestmark = pytest.mark.runtime


def rows(n: int, start: int = 0) -> np.ndarray:
    """n distinct "images": image i is filled with the value start + i."""
    return np.arange(start, start + n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 3, 2, 2), np.float32)


def identity_model(batches: list[int]):
    def run(images: np.ndarray) -> np.ndarray:
        batches.append(len(images))
        return images[:, 0, 0, :1]  # (n, 1): each image's own value, so answers can be checked per request

    return run


def gather(batcher: DynamicBatcher, requests: list[np.ndarray]) -> list:
    async def main():
        try:
            return await asyncio.gather(*(batcher.submit(r, len(r)) for r in requests), return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    sizes: list[int] = []
    batcher = DynamicBatcher(identity_model(sizes), max_batch_size=4, max_delay_s=30, max_queue=64)
    requests = [rows(1, 0), rows(2, 10), rows(1, 20), rows(3, 30), rows(1, 40)]
    answers = gather(batcher, requests)
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer[:, 0], request[:, 0, 0, 0])
    # In order, never split, at most 4 per batch: [1 + 2 + 1], [3 + 1]; none waited 30 s for a fifth image.
    assert sizes == [4, 4]


def test_a_request_larger_than_the_batch_runs_alone():
    sizes: list[int] = []
    batcher = DynamicBatcher(identity_model(sizes), max_batch_size=2, max_delay_s=0, max_queue=64)
    answers = gather(batcher, [rows(5), rows(1, 7)])
    assert sizes == [5, 1] and answers[0].shape == (5, 1) and float(answers[1][0, 0]) == 7


def test_a_lone_request_runs_when_its_delay_is_over():
    sizes: list[int] = []
    batcher = DynamicBatcher(identity_model(sizes), max_batch_size=8, max_delay_s=0.01, max_queue=8)
    assert gather(batcher, [rows(1, 3)])[0].tolist() == [[3.0]] and sizes == [1]


def test_a_full_queue_refuses_at_once_and_the_rest_are_answered():
    sizes: list[int] = []
    batcher = DynamicBatcher(identity_model(sizes), max_batch_size=8, max_delay_s=0.05, max_queue=4)
    answers = gather(batcher, [rows(3), rows(2), rows(1, 5)])
    assert isinstance(answers[1], QueueFull) and "3 images are waiting" in str(answers[1])
    assert answers[0].shape == (3, 1) and answers[2].tolist() == [[5.0]] and sizes == [4]


def test_a_model_error_reaches_every_request_of_its_batch_and_the_next_batch_runs():
    calls = []

    def flaky(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return images[:, 0, 0, :1]

    async def main():
        batcher = DynamicBatcher(flaky, max_batch_size=2, max_delay_s=0.01, max_queue=8)
        first = await asyncio.gather(batcher.submit(rows(1), 1), batcher.submit(rows(1), 1), return_exceptions=True)
        second = await batcher.submit(rows(1, 9), 1)
        await batcher.close()
        return first, second

    first, second = asyncio.run(main())
    assert [str(e) for e in first] == ["boom", "boom"] and second.tolist() == [[9.0]]


def test_batcher_settings_are_checked():
    with pytest.raises(ValueError):
        DynamicBatcher(lambda x: x, max_batch_size=0, max_delay_s=0, max_queue=1)


def test_manifest_is_an_inference_service_running_alexnet_serve():
    text = inference_service(
        Deployment("alexnet", "best.onnx", "s3://bucket/alexnet/", "me/alexnet:1", ("--max-batch-size", "16"))
    )
    assert text.startswith("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n")
    # `command`, not `args`: the image's ENTRYPOINT is alexnet-serve, and args would follow it (run it twice)
    command = json.loads(next(line for line in text.splitlines() if "command:" in line).split("command: ", 1)[1])
    assert command[:2] == ["alexnet-serve", "/mnt/models/best.onnx"] and "--max-batch-size" in command
    assert '"/v2/models/alexnet/ready"' in text and '"s3://bucket/alexnet/"' in text
    assert "`docker build -t me/alexnet:1 .`" in text  # where the image comes from: the repository's Dockerfile
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load(text)["spec"]["predictor"]
    container = spec["containers"][0]
    assert container["command"] == command and "args" not in container and container["image"] == "me/alexnet:1"
    assert spec["maxReplicas"] >= spec["minReplicas"] >= 1


@pytest.mark.parametrize("url", ["ftp://host:1", "http://", "http://host/path", "grpc://host:99999", "host:8000"])
def test_client_refuses_urls_it_cannot_use(url):
    with pytest.raises(ServerError, match="--server"):
        _connect(url, 1.0)


class FakeTriton:
    """What RemotePredictor uses of tritonclient, answering as Triton serving tests/data/tiny.onnx would
    from the repository alexnet-export --format triton writes (FP32 input, config with the metadata)."""

    class InferInput:
        def __init__(self, name, shape, datatype):
            self.name, self.shape, self.datatype, self.data = name, shape, datatype, None

        def set_data_from_numpy(self, array):
            assert list(array.shape) == self.shape and array.dtype == np.float32
            self.data = array

    class InferRequestedOutput:
        def __init__(self, name):
            self.name = name

    def __init__(self):
        from tiny_onnx import TINY_ONNX

        import runtime

        self.model = runtime.load(TINY_ONNX)
        self.requests = 0

    def get_model_metadata(self, name):
        return {"name": name, "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 8, 8]}]}

    def get_model_config(self, name):
        return {"name": name, "parameters": {"alexnet_deploy": {"string_value": self.model.metadata.to_json()}}}

    def infer(self, name, inputs, outputs=None):
        self.requests += 1
        logits = self.model.predict_logits(inputs[0].data)
        assert [o.name for o in outputs] == ["logits"]
        return type("Result", (), {"as_numpy": lambda self, key: logits})()

    def close(self):
        self.model.close()


def test_client_preprocesses_for_a_tensor_server_as_the_runtime_does(tmp_path, monkeypatch):
    pytest.importorskip("tritonclient.utils", reason="the client's errors come from tritonclient (the [client] extra)")
    from PIL import Image

    import runtime.client as client_module

    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray((np.random.default_rng(i).random((12 + i, 10, 3)) * 255).astype(np.uint8)).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths.append(str(tmp_path / "bad.png"))
    fake = FakeTriton()
    monkeypatch.setattr(client_module, "_connect", lambda url, timeout: (False, FakeTriton, fake))
    remote = list(client_module.RemotePredictor("http://triton:8000", "alexnet").iter_predict(paths, 2, batch_size=4))
    local = fake.model.predict(paths, 2)
    assert [p.error is None for p in remote] == [True] * 5 + [False] and "not an image" in remote[-1].error
    for got, want in zip(remote[:5], local[:5]):
        assert got.labels == want.labels and got.indices == want.indices
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
    assert fake.requests == 2  # batches of 4: paths 0-3, then 4 (the unreadable one is never sent)


def test_the_decode_budget_bounds_concurrent_decodes_and_lets_every_one_through():
    import threading
    import time

    from runtime.decode import MAX_DECODED_BYTES
    from runtime.server.decode_budget import DecodeBudget

    budget = DecodeBudget(2 * MAX_DECODED_BYTES)
    done = []

    def decode(nbytes: int) -> None:
        with budget.reserve(nbytes):
            assert budget.in_use <= budget.limit
            time.sleep(0.01)
        done.append(nbytes)

    sizes = [MAX_DECODED_BYTES, MAX_DECODED_BYTES // 2, MAX_DECODED_BYTES, 10, 10 * MAX_DECODED_BYTES] * 4
    threads = [threading.Thread(target=decode, args=(n,)) for n in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(done) == len(sizes) and budget.in_use == 0
    assert MAX_DECODED_BYTES < budget.peak <= budget.limit  # decodes overlapped, never past the budget
    with pytest.raises(ValueError, match="at least one image"):
        DecodeBudget(MAX_DECODED_BYTES - 1)
