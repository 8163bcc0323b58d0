"""`POST /v2/models/NAME/infer`, in place of kserve's (0.21) REST route, for two reasons:

- kserve turns a binary-extension BYTES input (Triton's and tritonclient's way of sending raw
  bytes) into UTF-8 text first, so an encoded image (a PNG starts with 0x89) fails with a 500;
  here the raw bytes are kept, as the binary tensor data extension defines them.
- A malformed body gets the protocol's error object, one line with HTTP 400, not FastAPI's 422.
Everything after decoding (the model call, response encoding, metrics) is kserve's dataplane.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

HEADER_LENGTH = "inference-header-content-length"  # the binary extension: JSON, then raw tensors
MAX_DIMS = 8
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY  # what FastAPI's ORJSONResponse used


def infer_route(dataplane: DataPlane) -> Any:
    async def infer(raw_request: Request, model_name: str) -> Response:
        if not await dataplane.model_ready(model_name, True):  # an unknown name raises ModelNotFound (404)
            raise ModelNotReady(model_name)
        try:
            body = await raw_request.body()
        except ClientDisconnect:  # gone, or cut off by the body deadline (runtime/server/guards.py)
            return Response(status_code=408)
        headers = dict(raw_request.headers)
        length = headers.get(HEADER_LENGTH)
        request = _binary_request(body, length, model_name) if length is not None else _json_request(body, model_name)
        response, response_headers = await dataplane.infer(model_name=model_name, request=request, headers=headers)
        response, encoded_headers = dataplane.encode(
            model_name=model_name, response=response, headers=headers, req_attributes={}
        )
        response_headers.update(encoded_headers)
        for key in ("content-length", "content-type"):
            response_headers.pop(key, None)
        if isinstance(response, bytes):
            return Response(response, headers=response_headers, media_type="application/octet-stream")
        return Response(
            orjson.dumps(response, option=JSON_OPTIONS), headers=response_headers, media_type="application/json"
        )

    return infer


def _json_request(body: bytes, model_name: str) -> InferRequest:
    try:
        parsed = InferenceRequest.model_validate(_json(body))
    except ValidationError as exc:
        raise InvalidInput(f"malformed request: {_first_error(exc)}") from None
    return InferRequest.from_inference_request(parsed, model_name)


def _binary_request(body: bytes, length: str, model_name: str) -> InferRequest:
    if not length.isdigit() or int(length) > len(body):
        raise InvalidInput(f"malformed request: {HEADER_LENGTH} {length!r} is not a length within the body")
    header = _json(body[: int(length)])
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput("malformed request: the JSON header has no 'inputs' list")
    offset, inputs = int(length), []
    for i, item in enumerate(header["inputs"]):
        tensor, offset = _binary_input(item, i, body, offset)
        inputs.append(tensor)
    outputs = header.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs)):
        raise InvalidInput("malformed request: 'outputs' must be a list of objects")
    return InferRequest(
        model_name=model_name,
        request_id=str(header.get("id")) if header.get("id") is not None else None,
        parameters=header.get("parameters") if isinstance(header.get("parameters"), dict) else None,
        infer_inputs=inputs,
        request_outputs=[RequestedOutput(str(o.get("name")), o.get("parameters")) for o in outputs]
        if outputs
        else None,
    )


def _binary_input(item: Any, index: int, body: bytes, offset: int) -> tuple[InferInput, int]:
    """Input `index` of the JSON header, its raw bytes taken from body[offset:]; (input, next offset)."""
    if not isinstance(item, dict):
        raise InvalidInput(f"malformed request: input {index} is not an object")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    dims_ok = isinstance(shape, list) and len(shape) <= MAX_DIMS
    if not (isinstance(name, str) and isinstance(datatype, str) and dims_ok and all(_dim(d) for d in shape)):
        raise InvalidInput(f"malformed request: input {index} needs a name, a datatype and a shape (non-negative)")
    parameters = item.get("parameters") if isinstance(item.get("parameters"), dict) else {}
    tensor = InferInput(name=name, shape=shape, datatype=datatype, parameters=parameters or None)
    if "data" in item:
        tensor.data = item["data"]
        return tensor, offset
    size = parameters.get("binary_data_size")
    if not _dim(size) or offset + size > len(body):
        raise InvalidInput(f"malformed request: input {name!r} has no data, or a binary_data_size past the body")
    tensor._raw_data = body[offset : offset + size]  # raw, as the extension sends it: no text decoding
    return tensor, offset + size


def _dim(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed request: not JSON ({exc})") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{first.get('msg', 'invalid body')}" + (f" at {where}" if where else "")
