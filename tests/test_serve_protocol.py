"""The request checks of alexnet-serve (runtime/server/protocol.py): tensors, parameters, and what an
image element may be (raw image bytes, or base64 of them).

No kserve, no tritonclient, no torch: these also run in the edge install.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image
from tiny_onnx import tiny_metadata

from runtime.server import protocol

pytestmark = pytest.mark.runtime


@dataclass
class FakeTensor:
    name: str
    datatype: str
    shape: list
    data: object = None

    def as_numpy(self):
        return np.asarray(self.data, dtype=object if self.datatype == "BYTES" else np.float32).reshape(self.shape)


META = tiny_metadata()  # 3 classes, (3, 8, 8) input


def parse(tensor, parameters=None, max_images=8):
    return protocol.parse_request([tensor], parameters, META, max_images)


def test_parse_accepts_both_forms_and_clamps_top_k():
    files = parse(FakeTensor("image", "BYTES", [2], [b"a", b"b"]), {"top_k": 9})
    assert files.images == [b"a", b"b"] and files.top_k == 3 and not files.logits
    tensors = parse(FakeTensor("input", "FP32", [1, 3, 8, 8], np.zeros(192)), {"logits": True})
    assert tensors.images.shape == (1, 3, 8, 8) and tensors.images.dtype == np.float32 and tensors.logits


@pytest.mark.parametrize(
    "tensor, parameters, message",
    [
        (FakeTensor("image", "FP32", [1], [1.0]), None, "must be BYTES"),
        (FakeTensor("image", "BYTES", [1, 2], [b"a", b"b"]), None, "shape [n] or [n, 1]"),
        (FakeTensor("input", "FP32", [1, 3, 8, 8], np.zeros(5)), None, "does not match its shape"),
        (FakeTensor("input", "FP32", [9, 3, 8, 8], None), None, "more than the 8 one request may"),
        (FakeTensor("input", "FP32", [], None), None, "empty batch"),
        (FakeTensor("image", "BYTES", [1], [b"a"]), {"top_k": True}, "positive integer"),
        (FakeTensor("image", "BYTES", [1], [b"a"]), {"logits": "yes"}, "true or false"),
        # base64 text is bounded before it is decoded: 4/3 of the largest image file, no more
        (FakeTensor("image", "BYTES", [1], [b"x" * (protocol.MAX_BASE64_CHARS + 1)]), None, "bytes, more than"),
        (FakeTensor("image", "BYTES", [1], [b"\xff\xd8\xff" + bytes(protocol.MAX_IMAGE_BYTES)]), None, "more than"),
        # JSON BYTES data that is not text: once a TypeError (HTTP 500) and a petabyte allocation (MemoryError)
        (FakeTensor("image", "BYTES", [1], [{"a": 1}]), None, "image 0: expected the bytes"),
        (FakeTensor("image", "BYTES", [1], [10**15]), None, "got int"),
    ],
)
def test_parse_refuses_with_one_line(tensor, parameters, message):
    with pytest.raises(protocol.RequestError) as caught:
        parse(tensor, parameters)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_parse_wants_exactly_one_input():
    with pytest.raises(protocol.RequestError, match="expected one input"):
        protocol.parse_request([], None, META, 8)


def test_outputs_rank_like_the_runtime():
    logits = np.array([[0.0, 2.0, 1.0], [5.0, -1.0, 0.0]], np.float32)
    request = protocol.ParsedRequest([b"", b""], top_k=2, logits=True)
    out = protocol.output_arrays(logits, request, META)
    assert out["indices"].tolist() == [[1, 2], [0, 2]]
    assert out["labels"].tolist() == [[b"square", b"star"], [b"circle", b"star"]]
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum()
    np.testing.assert_allclose(out["probabilities"][0], probs[[1, 2]], rtol=1e-6)
    assert out["logits"].dtype == np.float32 and out["probabilities"].dtype == np.float32
    with pytest.raises(protocol.RequestError, match="not finite"):
        protocol.output_arrays(np.array([[np.nan, 0, 0]], np.float32), request, META)


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 5), (200, 30, 10)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_an_image_file_is_taken_raw_and_its_base64_decoded(fmt):
    raw = image_bytes(fmt)
    assert protocol.looks_like_image(raw)
    assert protocol.image_file(raw) == (raw, protocol.RAW)
    text = base64.b64encode(raw)
    assert not protocol.looks_like_image(text)  # no base64 image starts as an image file does
    assert protocol.image_file(text) == (raw, protocol.BASE64)


def test_what_is_neither_is_left_to_the_decoder_and_base64_is_strict():
    tga = image_bytes("TGA")  # no signature: raw, for Pillow to tell
    assert protocol.image_file(tga) == (tga, protocol.UNKNOWN)
    wrapped = base64.encodebytes(image_bytes("PNG"))  # lines of 76 characters: not strictly base64
    assert b"\n" in wrapped and protocol.image_file(wrapped)[1] == protocol.UNKNOWN
    assert protocol.image_file(b"img.jpg") == (b"img.jpg", protocol.UNKNOWN)
    assert protocol.image_file(b"aGVsbG8") == (b"aGVsbG8", protocol.UNKNOWN)  # padding missing
    # a raw file is bounded by the image limit, base64 text by 4/3 of it (parse_request), so what it decodes to
    big = b"\x89PNG\r\n\x1a\n" + bytes(protocol.MAX_IMAGE_BYTES)
    with pytest.raises(protocol.RequestError, match="more than the"):
        protocol.image_file(big)
    with pytest.raises(protocol.RequestError, match="more than the"):
        protocol.image_file(b"A" * protocol.MAX_BASE64_CHARS)  # decodes to one byte over the limit
    text = base64.b64encode(bytes(protocol.MAX_IMAGE_BYTES))  # the largest file, as base64: accepted
    assert len(text) == protocol.MAX_BASE64_CHARS
    (element,) = parse(FakeTensor("image", "BYTES", [1], [text])).images
    assert len(protocol.image_file(element)[0]) == protocol.MAX_IMAGE_BYTES


def test_json_text_elements_become_bytes_and_the_accepted_forms_are_named():
    raw = image_bytes("PNG")
    parsed = parse(FakeTensor("image", "BYTES", [1], [base64.b64encode(raw).decode()]))
    assert protocol.image_file(parsed.images[0]) == (raw, protocol.BASE64)
    forms = protocol.accepted_forms(META)
    assert "Inference-Header-Content-Length" in forms and "base64" in forms and "'image'" in forms
    assert "FP32 tensor [n, 3, 8, 8] as input 'input'" in forms and "\n" not in forms
