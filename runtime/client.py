"""Predictions from an Open Inference Protocol server, in the runtime's own format (`alexnet-run --server`).

    with RemotePredictor("http://127.0.0.1:8080", "alexnet") as predictor:   # or grpc://host:8081
        for p in predictor.iter_predict(["cat.jpg"], topk=3):
            print(p.source, p.labels, p.probabilities)

Two kinds of server, told apart by the model's metadata:
- alexnet-serve (an `image` BYTES input): the encoded files are sent as they are; the server
  decodes, preprocesses with the artifact's spec, and answers labels and probabilities.
- Triton with `alexnet-export --format triton`'s repository (FP32 input only): the preprocessing
  spec and class names come from the model config's `alexnet_deploy` parameter; images are
  preprocessed here, the logits come back, and softmax/top-k are computed here as in `Predictor`.
Built on tritonclient (the [client] extra), imported only when a client is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from runtime.errors import DeployError, first_line
from runtime.fileio import SpecialFileError, open_regular
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.predictor import Prediction, softmax
from runtime.preprocess import ImageLoadError, preprocess_image
from runtime.server.protocol import IMAGE_INPUT, INDICES, LABELS, LOGITS, MAX_IMAGE_BYTES, PROBABILITIES, TOP_K

DEFAULT_REQUEST_IMAGES = 8  # images per request; the server batches requests together anyway
SCHEMES = {"http": 8000, "https": 8443, "grpc": 8001}


class ServerError(DeployError):
    """The server could not be reached, or refused a request (its status and message)."""


class RemotePredictor:
    def __init__(self, url: str, model_name: str, *, timeout_s: float = 60.0) -> None:
        self.url, self.model_name = url, model_name
        self._grpc, self._module, self.client = _connect(url, timeout_s)
        self.timeout_s = timeout_s
        inputs = self._call(self.client.get_model_metadata, model_name)["inputs"]
        self.sends_files = any(i["name"] == IMAGE_INPUT and i["datatype"] == "BYTES" for i in inputs)
        self.metadata = None if self.sends_files else self._config_metadata()
        self.backend_name, self.device = "server", url

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        if self._grpc and method.__name__.startswith("get_"):
            kwargs["as_json"] = True
        try:
            return method(*args, **kwargs)
        except InferenceServerException as exc:
            status = f" ({exc.status()})" if exc.status() else ""
            raise ServerError(f"{self.url}{status}: {first_line(Exception(exc.message()))}") from None
        except (OSError, ConnectionError) as exc:
            raise ServerError(f"cannot reach {self.url}: {first_line(exc)}") from None

    def _config_metadata(self) -> ArtifactMetadata:
        config = self._call(self.client.get_model_config, self.model_name)
        config = config.get("config", config)  # gRPC wraps it: {"config": {...}}
        text = config.get("parameters", {}).get(METADATA_KEY, {}).get("string_value")
        if not text:
            raise ServerError(
                f"{self.url}: model {self.model_name!r} takes preprocessed tensors but its config has no "
                f"{METADATA_KEY} parameter (export it with alexnet-export --format triton)"
            )
        return ArtifactMetadata.from_json(text, source=f"{self.url} model {self.model_name}")

    def iter_predict(
        self, images: list[str], topk: int = 5, *, logits: bool = False, batch_size: int | None = None
    ) -> Iterator[Prediction]:
        """One Prediction per path, in order; unreadable files and refused images get `error`."""
        size = batch_size or DEFAULT_REQUEST_IMAGES
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            if self.sends_files:
                yield from self._predict_files(chunk, topk, logits)
            else:
                yield from self._predict_tensors(chunk, topk, logits)

    def _predict_files(self, paths: list[str], topk: int, logits: bool) -> Iterator[Prediction]:
        files, errors = {}, {}
        for path in paths:
            try:
                files[path] = _read_file(path)
            except ImageLoadError as exc:
                errors[path] = str(exc)
        try:
            answers = dict(zip(files, self._infer_files(list(files.values()), topk, logits))) if files else {}
        except ServerError:
            if len(files) == 1:
                raise
            answers = {}  # one bad image fails its whole request: ask again one by one to name it
            for path, data in files.items():
                try:
                    answers[path] = self._infer_files([data], topk, logits)[0]
                except ServerError as exc:
                    errors[path] = f"{path}: {exc}"
        for path in paths:
            yield Prediction(source=path, error=errors[path]) if path in errors else _with_source(answers[path], path)

    def _infer_files(self, files: list[bytes], topk: int, logits: bool) -> list[Prediction]:
        m = self._module
        tensor = m.InferInput(IMAGE_INPUT, [len(files)], "BYTES")
        tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
        names = [LABELS, INDICES, PROBABILITIES] + ([LOGITS] if logits else [])
        result = self._call(
            self.client.infer,
            self.model_name,
            [tensor],
            outputs=[m.InferRequestedOutput(name) for name in names],
            parameters={TOP_K: topk},
        )
        labels, indices = result.as_numpy(LABELS), result.as_numpy(INDICES)
        probs, scores = result.as_numpy(PROBABILITIES), result.as_numpy(LOGITS) if logits else None
        return [
            Prediction(
                source="",
                labels=tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in labels[r]),
                indices=tuple(int(v) for v in indices[r]),
                probabilities=tuple(float(v) for v in probs[r]),
                logits=tuple(float(v) for v in scores[r]) if scores is not None else None,
            )
            for r in range(len(files))
        ]

    def _predict_tensors(self, paths: list[str], topk: int, logits: bool) -> Iterator[Prediction]:
        m, meta = self._module, self.metadata
        arrays, errors = {}, {}
        for path in paths:
            try:
                arrays[path] = preprocess_image(path, meta.preprocess)
            except ImageLoadError as exc:
                errors[path] = str(exc)
        rows = {}
        if arrays:
            tensor = m.InferInput(meta.input_name, [len(arrays), *meta.input_shape[1:]], "FP32")
            tensor.set_data_from_numpy(np.stack(list(arrays.values())))
            outputs = [m.InferRequestedOutput(meta.output_name)]
            result = self._call(self.client.infer, self.model_name, [tensor], outputs=outputs)
            scores = result.as_numpy(meta.output_name).astype(np.float32)
            rows = dict(zip(arrays, scores))
        for path in paths:
            yield (
                Prediction(source=path, error=errors[path])
                if path in errors
                else self._ranked(path, rows[path], topk, logits)
            )

    def _ranked(self, path: str, scores: np.ndarray, topk: int, logits: bool) -> Prediction:
        if not np.isfinite(scores).all():
            return Prediction(source=path, error=f"{path}: the model's output is not finite (NaN or infinity)")
        probs = softmax(scores[None])[0]
        top = [int(c) for c in np.argsort(-probs, kind="stable")[: min(topk, len(probs))]]
        return Prediction(
            source=path,
            labels=tuple(self.metadata.class_names[c] for c in top),
            indices=tuple(top),
            probabilities=tuple(float(probs[c]) for c in top),
            logits=tuple(float(v) for v in scores) if logits else None,
        )

    def describe(self) -> str:
        kind = "alexnet-serve (server-side preprocessing)" if self.sends_files else "preprocessed here"
        return f"model: {self.model_name} at {self.url} ({kind})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RemotePredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of http://, https:// or grpc:// HOST[:PORT]; the port defaults to Triton's."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname or parts.path not in ("", "/"):
        raise ServerError(f"--server {url!r}: expected http://HOST[:PORT], https://HOST[:PORT] or grpc://HOST[:PORT]")
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise ServerError(f"--server {url!r}: the port is not a number from 0 to 65535") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, host, port


def _connect(url: str, timeout_s: float) -> tuple[bool, Any, Any]:
    """(is gRPC, the tritonclient module, a client) for `url`."""
    scheme, host, port = parse_url(url)
    try:
        if scheme == "grpc":
            import tritonclient.grpc as module

            return True, module, module.InferenceServerClient(f"{host}:{port}")
        import tritonclient.http as module

        client = module.InferenceServerClient(
            f"{host}:{port}", ssl=scheme == "https", connection_timeout=timeout_s, network_timeout=timeout_s
        )
        return False, module, client
    except ImportError as exc:
        raise ServerError(
            f"--server needs tritonclient ({exc.name} is not installed): pip install 'alexnet-deploy[client]'"
        ) from None


def _read_file(path: str) -> bytes:
    """An image file's bytes for the server, bounded as the server bounds them."""
    try:
        size = os.stat(path).st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageLoadError(f"{path}: {size:,} bytes, more than the {MAX_IMAGE_BYTES:,} a server takes")
        with open_regular(path) as handle:
            return handle.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except SpecialFileError as exc:
        raise ImageLoadError(f"{exc}; not read") from exc
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read ({first_line(exc)})") from exc


def _with_source(prediction: Prediction, source: str) -> Prediction:
    return Prediction(source, prediction.labels, prediction.indices, prediction.probabilities, prediction.logits)
