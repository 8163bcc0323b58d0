"""The KServe model: `runtime.load(MODEL)` behind the Open Inference Protocol, with dynamic batching.

This is what KServe runs as a custom predictor (a `kserve.Model`): the same class serves on a
laptop (`alexnet-serve`) and on Kubernetes, where replicas and autoscaling are KServe's job.
Imports kserve, so only the server process imports this module (kserve and tritonclient.grpc
register the same protobuf names and cannot share a process).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput, ServerNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter, Gauge, Histogram

from runtime.decode import EncodedImage, decoded_bytes
from runtime.predictor import Predictor
from runtime.preprocess import ImageLoadError, preprocess_image
from runtime.server import protocol
from runtime.server.batcher import DynamicBatcher, QueueFull
from runtime.server.decode_budget import DEFAULT_DECODE_BUDGET, DecodeBudget

# Prometheus metrics beside kserve's own request_{preprocess,predict,postprocess}_seconds histograms.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REQUESTS = Counter("alexnet_requests", "Inference requests by outcome", ["model_name", "outcome"])
REQUEST_SECONDS = Histogram("alexnet_request_seconds", "Inference request latency in the model", ["model_name"])
BATCH_SIZE = Histogram("alexnet_batch_size", "Images per model run", ["model_name"], buckets=BATCH_BUCKETS)
# phase "prepare": a closed batch waiting for its images' decoding; "run": the model
BATCH_SECONDS = Histogram("alexnet_batch_seconds", "Seconds per batch", ["model_name", "phase"])
QUEUED = Gauge("alexnet_queued_images", "Images waiting for a batch", ["model_name"])
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(object): "BYTES"}


class Overloaded(ServerNotReady):
    """The queue is full: HTTP 503 and gRPC UNAVAILABLE. kserve's gRPC interceptor aborts with the
    exception's `reason`, which its ServerNotReady lacks (kserve 0.21: the status became UNKNOWN)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.error_msg = self.reason = detail


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 256  # images waiting; also the most one request may carry
    decode_budget_bytes: int = DEFAULT_DECODE_BUDGET  # all concurrent decodes together


class AlexNetModel(kserve.Model):
    def __init__(self, name: str, predictor: Predictor, settings: BatchSettings) -> None:
        super().__init__(name)
        self.predictor = predictor
        self.settings = settings
        self.decode_budget = DecodeBudget(settings.decode_budget_bytes)
        self.batcher = DynamicBatcher(
            predictor.predict_logits,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_delay_ms / 1000.0,
            max_queue=settings.max_queue,
            on_batch=self._observe_batch,
            prepare=self._prepare,
            prepare_threads=os.cpu_count() or 1,
        )
        QUEUED.labels(model_name=name).set_function(lambda: self.batcher.queued)  # read at each scrape
        self.ready = True  # loaded by runtime.load before the server starts

    def _observe_batch(self, images: int, prepare_s: float, run_s: float) -> None:
        BATCH_SIZE.labels(model_name=self.name).observe(images)
        BATCH_SECONDS.labels(model_name=self.name, phase="prepare").observe(prepare_s)
        BATCH_SECONDS.labels(model_name=self.name, phase="run").observe(run_s)

    def load(self) -> bool:
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        return protocol.input_types(self.predictor.metadata)

    def get_output_types(self) -> list[dict[str, Any]]:
        return protocol.output_types(self.predictor.metadata)

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> InferResponse:
        start = time.monotonic()
        outcome = "error"
        try:
            response = await self._answer(payload)
            outcome = "ok"
            return response
        except (protocol.RequestError, ImageLoadError) as exc:
            outcome = "invalid"
            raise InvalidInput(str(exc)) from None
        except QueueFull as exc:
            outcome = "unavailable"
            raise Overloaded(str(exc)) from None
        finally:
            REQUESTS.labels(model_name=self.name, outcome=outcome).inc()
            REQUEST_SECONDS.labels(model_name=self.name).observe(time.monotonic() - start)

    async def _answer(self, payload: InferRequest) -> InferResponse:
        metadata = self.predictor.metadata
        request = protocol.parse_request(payload.inputs, payload.parameters, metadata, self.settings.max_queue)
        asked = {output.name for output in payload.request_outputs or []}
        if protocol.LOGITS in asked:
            request = protocol.ParsedRequest(request.images, request.top_k, True)
        logits = await self.batcher.submit(request.images, request.count)  # decoded once admitted
        arrays = protocol.output_arrays(logits, request, metadata)
        outputs = []
        for name, array in arrays.items():
            output = InferOutput(name=name, shape=list(array.shape), datatype=DATATYPES[array.dtype])
            output.set_data_from_numpy(array, binary_data=payload.use_binary_outputs)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )

    def _prepare(self, images: list[bytes] | np.ndarray) -> np.ndarray:
        """A request's input -> (n, 3, H, W) float32: encoded files are decoded and preprocessed with
        the artifact's spec (errors name the image); preprocessed tensors pass as they are."""
        if isinstance(images, np.ndarray):
            return images
        metadata = self.predictor.metadata
        arrays = []
        for i, data in enumerate(images):
            try:
                file, form = protocol.image_file(data)  # raw, or base64 (decoded here, off the event loop)
            except protocol.RequestError as exc:
                raise protocol.RequestError(f"image {i}: {exc}") from None
            source = EncodedImage(file, f"<{len(file)} bytes from base64>") if form == protocol.BASE64 else file
            try:
                with self.decode_budget.reserve(decoded_bytes(source)):  # waits while others decode
                    arrays.append(preprocess_image(source, metadata.preprocess))
            except ImageLoadError as exc:
                hint = "" if form == protocol.RAW else f"; {protocol.accepted_forms(metadata)}"
                raise ImageLoadError(f"image {i}: {exc}{hint}") from None
        return np.stack(arrays)
