"""Predictor: images in, top-k labels out, over any backend (no torch here).

    predictor = runtime.load("demo-out/run/best.onnx")
    for p in predictor.predict(["cat.jpg", "dog.png"], topk=3):
        print(p.source, p.labels, p.probabilities)

Everything a prediction needs (class names, preprocessing, input shape, batch size)
comes from `predictor.metadata`, which `runtime.load` reads from the artifact.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from runtime.backends import Backend
from runtime.decode import EncodedImage
from runtime.errors import DeployError
from runtime.metadata import ArtifactMetadata, MetadataError
from runtime.pipeline import default_workers, ordered_map
from runtime.preprocess import ImageLoadError, preprocess_image

DEFAULT_BATCH_SIZE = 32  # images preprocessed and run together when the artifact takes any batch


class InputError(DeployError, ValueError):
    """An input array (or argument) has the wrong shape, dtype or value."""


@dataclass(frozen=True)
class Prediction:
    """One image's result: the top-k classes, best first, or the reason it failed."""

    source: str  # the path, a PIL image's filename, or "<image i>" / "<array i>"
    labels: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    probabilities: tuple[float, ...] = ()  # softmax of the logits, over all classes
    logits: tuple[float, ...] | None = None  # every class's raw score, when asked for
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON schema of `alexnet-run --json` (one object per image)."""
        if self.error is not None:
            return {"path": self.source, "error": self.error}
        data: dict[str, Any] = {
            "path": self.source,
            "labels": list(self.labels),
            "indices": list(self.indices),
            "probabilities": list(self.probabilities),
        }
        if self.logits is not None:
            data["logits"] = list(self.logits)
        return data


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, C) -> (N, C) probabilities, computed in float64 so tiny ones do not underflow to 0."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class Predictor:
    def __init__(
        self, backend: Backend, metadata: ArtifactMetadata, *, batch_size: int | None = None, workers: int | None = None
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        _check_workers(workers)
        self.backend = backend
        self.metadata = metadata
        self.max_batch = metadata.batch_size  # a fixed-batch artifact takes exactly this many
        # ... a dynamic one with a limit (an ExecuTorch program) at most this many per call.
        self.call_limit = self.max_batch or metadata.max_batch
        self.batch_size = batch_size or self.call_limit or DEFAULT_BATCH_SIZE
        # threads decoding and preprocessing files while the model runs (runtime/pipeline.py); 0: none
        self.workers = default_workers() if workers is None else workers

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def notice(self, path: object) -> str | None:
        """The backend's line for the user before it runs `path` (None: nothing to say)."""
        return self.backend.notice.format(path=path) if self.backend.notice else None

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of one preprocessed image."""
        return tuple(self.metadata.input_shape[1:])  # type: ignore[return-value]

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 (N, 3, H, W) -> (N, classes) float32 logits.

        Any N works: a fixed-batch artifact gets the batch split into its size, the last
        part zero-padded (the padding rows are dropped from the result); an artifact with a
        per-call limit gets it split into parts of at most that many.
        """
        if not isinstance(batch, np.ndarray):
            raise InputError(f"predict_logits takes a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise InputError(
                f"predict_logits takes float32 input, got {batch.dtype}; convert with batch.astype(np.float32)"
            )
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise InputError(
                f"predict_logits takes (N, {', '.join(map(str, self.input_shape))}) arrays, got {batch.shape}; "
                f"preprocess images with runtime.preprocess.preprocess_batch(images, predictor.metadata.preprocess)"
            )
        if len(batch) == 0:
            return np.zeros((0, self.metadata.num_classes), np.float32)
        if self.max_batch is None:
            limit = self.call_limit or len(batch)
            return np.concatenate([self._run(batch[i : i + limit]) for i in range(0, len(batch), limit)])
        parts = []
        for start in range(0, len(batch), self.max_batch):
            part = batch[start : start + self.max_batch]
            pad = self.max_batch - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), np.float32)])
            parts.append(self._run(part)[: self.max_batch - pad])
        return np.concatenate(parts)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        logits = self.backend.run(np.ascontiguousarray(batch))
        if logits.ndim != 2 or logits.shape != (len(batch), self.metadata.num_classes):
            raise MetadataError(
                f"the model returned scores of shape {logits.shape} for {len(batch)} images, but has "
                f"{self.metadata.num_classes} class names; pass --labels with one name per output"
            )
        return logits

    def predict(
        self,
        images: Any,
        topk: int = 5,
        *,
        logits: bool = False,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> list[Prediction]:
        """Paths, PIL images or arrays (one or a sequence) -> one `Prediction` per image, in order.

        Arrays are uint8 images (H, W), (H, W, 3) or (H, W, 4), preprocessed here, or
        preprocessed float32 (3, H, W) (a 4-D float32 array is a batch of those). An
        image that cannot be read gets a Prediction with `error` set; the rest are predicted.
        Files are decoded on `workers` threads (default: the predictor's), the next batch while
        the model runs this one.
        """
        return list(self.iter_predict(images, topk, logits=logits, batch_size=batch_size, workers=workers))

    def iter_predict(
        self,
        images: Any,
        topk: int = 5,
        *,
        logits: bool = False,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> Iterator[Prediction]:
        """`predict`, yielding results batch by batch (for progress bars and long lists).

        At most about two batches of images are decoded or waiting at any time; stopping the
        iteration (or Ctrl-C) waits only for the images being decoded.
        """
        items = _as_items(images)
        if not isinstance(topk, int) or topk < 1:
            raise InputError(f"topk must be a positive integer, got {topk!r}")
        topk = min(topk, self.metadata.num_classes)
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        _check_workers(workers)
        workers = self.workers if workers is None else workers
        # Reject malformed arrays and odd objects before any work, so a bad call fails fast and whole.
        for i, item in enumerate(items):
            if not isinstance(item, (str, os.PathLike, Image.Image, EncodedImage, np.ndarray)):
                raise InputError(
                    f"input {i}: predict takes paths, PIL images, EncodedImage or arrays, got {type(item).__name__}"
                )
            if isinstance(item, np.ndarray):
                items[i] = self._check_array(item, i)
        chunk = batch_size or self.batch_size
        if self.max_batch:
            chunk = -(-chunk // self.max_batch) * self.max_batch  # whole model batches, no padding waste
        # one batch ahead of the one the model runs, and one image per worker beyond it
        prepared = ordered_map(self._prepare, items, workers=workers, ahead=chunk + workers)
        try:
            for start in range(0, len(items), chunk):
                part = list(itertools.islice(prepared, chunk))  # (3, H, W) arrays, or error messages
                yield from self._predict_chunk(items, start, part, topk, logits)
        finally:
            prepared.close()

    def _prepare(self, item: Any) -> np.ndarray | str:
        """One input -> its preprocessed (3, H, W) array, or the message of why it cannot be read."""
        if isinstance(item, np.ndarray):
            return item  # checked (and preprocessed) by _check_array
        try:
            return preprocess_image(item, self.metadata.preprocess)
        except ImageLoadError as exc:
            return str(exc)

    def _predict_chunk(
        self, items: Sequence[Any], start: int, part: list[np.ndarray | str], topk: int, with_logits: bool
    ) -> Iterator[Prediction]:
        ready = [array for array in part if not isinstance(array, str)]
        if ready:
            scores = self.predict_logits(np.stack(ready))  # (n, classes)
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows become errors below
                probs = softmax(scores)
            order = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
        names, row = self.metadata.class_names, -1
        for i, result in enumerate(part, start):
            source = _source_name(items[i], i)
            if isinstance(result, str):
                yield Prediction(source=source, error=result)
                continue
            row += 1
            if not np.isfinite(scores[row]).all():
                # NaN/inf logits have no ranking, and NaN is not JSON: an error for this image, not numbers.
                yield Prediction(
                    source=source, error=f"{source}: the model's output is not finite (NaN or infinity) for this image"
                )
                continue
            top = [int(c) for c in order[row]]
            yield Prediction(
                source=source,
                labels=tuple(names[c] for c in top),
                indices=tuple(top),
                probabilities=tuple(float(probs[row, c]) for c in top),
                logits=tuple(float(v) for v in scores[row]) if with_logits else None,
            )

    def _check_array(self, array: np.ndarray, index: int) -> np.ndarray:
        """An input array -> preprocessed (3, H, W) float32, or InputError naming what fits."""
        if array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            return preprocess_image(Image.fromarray(array), self.metadata.preprocess)
        if array.dtype == np.float32 and array.shape == self.input_shape:
            return array
        raise InputError(
            f"input {index}: an array of dtype {array.dtype} and shape {array.shape} is neither a uint8 image "
            f"(H, W), (H, W, 3), (H, W, 4) nor a preprocessed float32 {self.input_shape}"
        )

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"Predictor(backend={self.backend_name!r}, device={self.device!r}, classes={m.num_classes}, "
            f"input_shape={tuple(m.input_shape)}, precision={m.precision!r})"
        )


def _check_workers(workers: Any) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise InputError(f"workers must be a whole number, 0 or more, got {workers!r}")


def _as_items(images: Any) -> list[Any]:
    if isinstance(images, (str, os.PathLike, Image.Image, EncodedImage)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Iterable):
        return list(images)
    raise InputError(f"predict takes paths, PIL images or arrays, got {type(images).__name__}")


def _source_name(item: Any, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, Image.Image):
        return getattr(item, "filename", "") or f"<image {index}>"
    if isinstance(item, EncodedImage):
        return item.name
    return f"<array {index}>"
