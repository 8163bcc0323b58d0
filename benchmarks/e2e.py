"""End-to-end rows: image files -> read -> decode -> preprocess -> predict, as `alexnet-run` does it.

The other rows time the model alone on a ready tensor; a user of `alexnet-run` also pays for
reading, decoding and preprocessing every image. An "e2e" row (variant `fp32 e2e`, `int8 e2e`) runs
a set of JPEG files through the call the CLI makes, `Predictor.iter_predict` on paths with the row's
batch size (its worker threads decoding the next batch while the model runs this one), on the
Predictor `runtime.load` opens for the shipped artifact. Each timed block streams the files as
alexnet-run streams a folder: a step takes the next batch of predictions; the stream starts cold
with the block (the first batch decoded before the model can start) and is closed at its end (no
decoding runs on while another row is timed). A row reports images/s, the share of time outside the
model call, and the images/s of the model calls alone in the same steps.

Two photo sets (`PHOTO_SETS`): "e2e", 500x375 (the size of ImageNet's validation photos) and
"e2e 12mp", 4032x3024 (a phone camera's), written once by the parent (`write_images`,
deterministic: the same seed gives the same pixels and the same JPEG bytes with the same Pillow)
into the run's workdir; every worker reads the same files.

A format whose batch is part of the file (LiteRT) runs each batch size on the file exported at it,
as its model-only row does (`benchmarks.edge_runners`).
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.artifacts import Skip, import_optional
from benchmarks.runner_base import Runner
from benchmarks.variant import E2E_OPTION as OPTION
from benchmarks.variant import PHOTO_SETS, Variant
from runtime import formats

IMAGES_DIR = "e2e-images"
TOPK = 5  # alexnet-run's default
STREAM = 4096  # paths one stream cycles through (the files, repeated): more than a timed block takes


def is_e2e(variant: Variant) -> bool:
    return OPTION in variant.options


def photo_set(variant: Variant) -> str:
    """The PHOTO_SETS name a variant reads ("e2e" or "12mp")."""
    return next((o for o in variant.options if o in PHOTO_SETS and o != OPTION), OPTION)


def image_paths(workdir: str | Path, name: str = OPTION) -> list[Path]:
    (width, height), count = PHOTO_SETS[name]
    return [Path(workdir) / IMAGES_DIR / f"{width}x{height}-{i:02d}.jpg" for i in range(count)]


def write_images(workdir: str | Path, name: str = OPTION, seed: int = 0) -> list[Path]:
    """The JPEGs of photo set `name` under workdir (kept if already there): smooth gradients plus noise,
    so the decoder does the work a photo asks of it rather than of a flat or a pure-noise image."""
    from PIL import Image

    paths = image_paths(workdir, name)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SETS[name][0]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) * (500 / width)  # the same picture at any size
    for path in paths:
        phase = rng.uniform(0, 2 * np.pi, 3)
        freq = rng.uniform(0.005, 0.05, 3)
        if path.exists():
            continue
        pixels = np.empty((height, width, 3), np.float32)
        for c in range(3):
            pixels[..., c] = 127 + 100 * np.sin(freq[c] * (xs + ys * (c + 1)) + phase[c])
        pixels += rng.normal(0, 12, (height, width, 3)).astype(np.float32)
        np.clip(pixels, 0, 255, out=pixels)
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(path, "JPEG", quality=90)
    return paths


class EndToEndRunner(Runner):
    """One step = one batch of files through `Predictor.predict`; the model call is timed apart (see _open)."""

    runtime_backend: str = ""  # the name runtime.load takes
    export_format: str | None = None  # what `Artifacts.get` exports; None: the checkpoint itself

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        return [(cls.export_format, variant.precision)] if cls.export_format else []

    def _build(self) -> None:
        if self.device != "cpu":
            raise Skip("end-to-end rows run on the CPU, where alexnet-run decodes and preprocesses")
        self._check_available()
        self.predictor: Any = None
        self.stream: Any = None
        name = photo_set(self.variant)
        self.files = [str(p) for p in image_paths(self.artifacts.workdir, name)]
        if not all(Path(f).is_file() for f in self.files):
            raise Skip(f"no input images in {Path(self.artifacts.workdir) / IMAGES_DIR} (benchmarks.e2e.write_images)")
        (width, height), count = PHOTO_SETS[name]
        self.info["images"] = f"{count} JPEG {width}x{height}"
        self.reset_counters()
        if not self.fixed_batch():  # a fixed-batch format's file is opened per batch size, in prepare
            self._open(self._path(None))

    @classmethod
    def fixed_batch(cls) -> bool:
        """The format's batch is part of the file (LiteRT): each batch size runs its own file (`Artifacts.get`)."""
        return cls.export_format is not None and formats.get(cls.export_format).fixed_batch

    def _path(self, batch: int | None) -> Path:
        if self.export_format is None:
            return self.artifacts.source.checkpoint_path
        return self.artifacts.get(self.export_format, self.precision, batch)

    def _open(self, path: Path) -> None:
        """Open `path` as alexnet-run does, with its model call timed apart."""
        import runtime

        self.close()
        self._use_artifact(path)
        self.predictor = runtime.load(path, backend=self.runtime_backend, device=self.device, threads=self.threads)
        self.info["preprocess"] = self.predictor.metadata.preprocess.to_dict()
        # The model call Predictor.predict makes, wrapped on this one object so its seconds can be taken
        # out of the whole call: the rest is read + decode + preprocess (and the top-k, a few microseconds).
        model_call = self.predictor.predict_logits

        def timed_model_call(batch: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                self.scores = model_call(batch)  # kept for `logits`, so the step need not ask predict for them
                return self.scores
            finally:
                self._model_s += time.perf_counter() - t0
                self._model_images += len(batch)

        self.predictor.predict_logits = timed_model_call

    def _check_available(self) -> None:
        pass

    def prepare(self, batch: np.ndarray) -> None:
        # Only the batch size is taken: the input is the files, not the parent's random tensor.
        self.end_block()
        self.batch_size = len(batch)
        if self.fixed_batch():
            path = self._path(self.batch_size)
            if self.predictor is None or str(path) != self.artifact:
                self._open(path)
        self.info["workers"] = self.predictor.workers

    def batch_info(self) -> dict[str, Any]:
        return {"preprocess": self.info["preprocess"], "workers": self.info["workers"]}

    def start_block(self) -> None:
        """A cold stream of predictions, as alexnet-run starts on a folder (alexnet-run's call)."""
        self.end_block()
        paths = list(itertools.islice(itertools.cycle(self.files), STREAM))
        self.stream = self.predictor.iter_predict(paths, TOPK, batch_size=self.batch_size)

    def end_block(self) -> None:
        """Stop the stream; its decoding threads finish their images before this returns."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def step(self) -> None:
        """The next batch of predictions from the stream (a new stream when there is none, or it ran out)."""
        n = self.batch_size
        if self.stream is None:
            self.start_block()
        t0 = time.perf_counter()
        self.out = list(itertools.islice(self.stream, n))
        if len(self.out) < n:  # the stream ran out: the rest from a new one
            self.start_block()
            self.out += list(itertools.islice(self.stream, n - len(self.out)))
        self._total_s += time.perf_counter() - t0
        self._images += n
        self.last_files = [p.source for p in self.out]

    def logits(self) -> np.ndarray:
        failed = [p.error for p in self.out if not p.ok]
        if failed:
            raise RuntimeError(f"end-to-end prediction failed: {failed[0]}")
        return np.asarray(self.scores, np.float32)  # every file predicted: one row per file, in order

    def reset_counters(self) -> None:
        self._model_s = self._total_s = 0.0
        self._images = self._model_images = 0

    def counters(self) -> dict[str, Any]:
        """Seconds in the steps and in the model calls, and their images, since the last reset (the warm-up)."""
        return {
            "total_s": self._total_s,
            "model_s": self._model_s,
            "images": self._images,
            "model_images": self._model_images,
        }

    def close(self) -> None:
        self.end_block()
        if getattr(self, "predictor", None) is not None:
            self.predictor.close()
            self.predictor = None


def preprocess_share(counters: dict[str, Any]) -> float | None:
    """Time outside the model call / the whole call, in [0, 1]; None before any timed call."""
    total = counters.get("total_s") or 0.0
    if total <= 0:
        return None
    return min(max((total - counters.get("model_s", 0.0)) / total, 0.0), 1.0)


def model_images_per_s(counters: dict[str, Any]) -> float | None:
    """Images per second of the model calls alone, in the same steps; None before any."""
    seconds = counters.get("model_s") or 0.0
    return counters.get("model_images", 0) / seconds if seconds > 0 else None


def fetched_counters(worker: Any) -> dict[str, Any]:
    """What an e2e worker counted over its timed blocks; empty if it cannot tell."""
    try:
        return worker.counters()
    except Exception:  # a worker that died after its last block: the row keeps its timings
        return {}


class OnnxRuntimeEndToEnd(EndToEndRunner):
    backend, runtime_backend, export_format = "onnxruntime", "onnxruntime", "onnx"

    def _check_available(self) -> None:
        import_optional("onnxruntime")


class OpenVinoEndToEnd(EndToEndRunner):
    """The exported fp32 IR through the runtime's openvino backend (alexnet-run on a .xml), on the CPU."""

    backend, runtime_backend, export_format = "openvino", "openvino", "openvino"

    def _check_available(self) -> None:
        import_optional("openvino")


class ExecuTorchEndToEnd(EndToEndRunner):
    """The exported fp32 program through the runtime's executorch backend (alexnet-run on a .pte): a batch
    above the program's limit runs in parts, as alexnet-run runs it."""

    backend, runtime_backend, export_format = "executorch", "executorch", "executorch"

    def _check_available(self) -> None:
        import_optional("executorch")


class LiteRtEndToEnd(EndToEndRunner):
    """The exported fp32 .tflite through the runtime's litert backend (alexnet-run on a .tflite), each batch
    size on the file exported at it (`--batch-size N`, as the model-only row), its Predictor batch the same."""

    backend, runtime_backend, export_format = "litert", "litert", "litert"

    def _check_available(self) -> None:
        import_optional("ai_edge_litert")


class TorchScriptEndToEnd(EndToEndRunner):
    backend, runtime_backend, export_format = "torchscript", "torchscript", "torchscript"


class PyTorchEndToEnd(EndToEndRunner):
    """The checkpoint through the runtime's `pytorch` plugin backend (alexnet-run on a .pth)."""

    backend, runtime_backend, export_format = "pytorch", "pytorch", None


class CoreMLEndToEnd(EndToEndRunner):
    backend, runtime_backend, export_format = "coreml", "coreml", "coreml"

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        return super().exports(variant, device) if sys.platform == "darwin" and device == "cpu" else []

    def _check_available(self) -> None:
        if sys.platform != "darwin":
            raise Skip("Core ML predicts only on macOS")


# One per name in benchmarks.variant.E2E_BACKENDS (pytorch and every backend of the format table).
E2E_RUNNERS: dict[str, type[EndToEndRunner]] = {
    r.backend: r
    for r in (
        PyTorchEndToEnd,
        TorchScriptEndToEnd,
        OnnxRuntimeEndToEnd,
        OpenVinoEndToEnd,
        CoreMLEndToEnd,
        ExecuTorchEndToEnd,
        LiteRtEndToEnd,
    )
}


def e2e_table(doc: dict[str, Any], device: str) -> list[str]:
    """The report's "End to end" table: what an alexnet-run user gets, per photo size, backend and batch size."""
    rows = [r for r in doc["rows"] if r["device"] == device and r["status"] == "ok" and OPTION in r["variant"].split()]
    lines = [
        "| photos | backend | precision | batch | images/s | model alone, images/s | e2e / model | outside the model |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in sorted(rows, key=lambda r: (r["variant"].split()[1:], r["batch_size"], -r["throughput_ips"])):
        share, model_ips = r.get("preprocess_share"), r.get("model_ips")
        photos = (r.get("info") or {}).get("images", "")
        lines.append(
            f"| {photos} | {r['backend']} | {r['precision']} | {r['batch_size']} | {r['throughput_ips']:.1f} | "
            + (f"{model_ips:.1f} | {r['throughput_ips'] / model_ips:.0%} | " if model_ips else "- | - | ")
            + (f"{share:.0%} |" if share is not None else "- |")
        )
    return lines if rows else []
