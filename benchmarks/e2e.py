"""End-to-end rows: image files -> read -> decode -> preprocess -> predict, as `alexnet-run` does it.

The other rows time the model alone on a ready tensor; a user of `alexnet-run` also pays for
reading, decoding and preprocessing every image. An "e2e" row (variant `fp32 e2e`) pushes a fixed
set of JPEG files through the public call the CLI makes (`Predictor.predict` on paths, with the
row's batch size) of the Predictor `runtime.load` opens for the shipped artifact, and reports
images/s and the preprocessing share: the time outside the model call / the whole call.

A format whose batch is part of the file (LiteRT) runs each batch size on the file exported at it,
as its model-only row does (`benchmarks.edge_runners`).

The files are written once by the parent (`write_images`, deterministic: the same seed gives the
same pixels and the same JPEG bytes with the same Pillow) into the run's workdir; every worker
reads the same files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.artifacts import Skip, import_optional
from benchmarks.runner_base import Runner
from benchmarks.variant import E2E_OPTION as OPTION
from benchmarks.variant import Variant
from runtime import formats

IMAGES_DIR = "e2e-images"
IMAGE_COUNT = 32
IMAGE_SIZE = (500, 375)  # (width, height): a typical photo of the size ImageNet's validation images have
TOPK = 5  # alexnet-run's default


def is_e2e(variant: Variant) -> bool:
    return OPTION in variant.options


def image_paths(workdir: str | Path, count: int = IMAGE_COUNT) -> list[Path]:
    return [Path(workdir) / IMAGES_DIR / f"image-{i:02d}.jpg" for i in range(count)]


def write_images(workdir: str | Path, count: int = IMAGE_COUNT, seed: int = 0) -> list[Path]:
    """`count` JPEGs of IMAGE_SIZE under workdir (kept if already there): smooth gradients plus noise,
    so the decoder does the work a photo asks of it rather than of a flat or a pure-noise image."""
    from PIL import Image

    paths = image_paths(workdir, count)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for path in paths:
        phase = rng.uniform(0, 2 * np.pi, 3)
        freq = rng.uniform(0.005, 0.05, 3)
        channels = [127 + 100 * np.sin(freq[c] * (xs + ys * (c + 1)) + phase[c]) for c in range(3)]
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        if not path.exists():
            image.save(path, "JPEG", quality=90)
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
        self.files = [str(p) for p in image_paths(self.artifacts.workdir)]
        if not all(Path(f).is_file() for f in self.files):
            raise Skip(f"no input images in {Path(self.artifacts.workdir) / IMAGES_DIR} (benchmarks.e2e.write_images)")
        self.info["images"] = f"{len(self.files)} JPEG {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}"
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

        self.predictor.predict_logits = timed_model_call

    def _check_available(self) -> None:
        pass

    def prepare(self, batch: np.ndarray) -> None:
        # Only the batch size is taken: the input is the files, not the parent's random tensor.
        self.batch_size, self.offset = len(batch), 0
        if self.fixed_batch():
            path = self._path(self.batch_size)
            if self.predictor is None or str(path) != self.artifact:
                self._open(path)

    def batch_info(self) -> dict[str, Any]:
        return {"preprocess": self.info["preprocess"]}  # a file opened in prepare: not in the build's info

    def step(self) -> None:
        # The next batch_size files, wrapping around, so consecutive steps decode different files.
        n = self.batch_size
        self.last_files = [self.files[(self.offset + i) % len(self.files)] for i in range(n)]
        self.offset = (self.offset + n) % len(self.files)
        t0 = time.perf_counter()
        self.out = self.predictor.predict(self.last_files, TOPK, batch_size=n)  # alexnet-run's call
        self._total_s += time.perf_counter() - t0

    def logits(self) -> np.ndarray:
        failed = [p.error for p in self.out if not p.ok]
        if failed:
            raise RuntimeError(f"end-to-end prediction failed: {failed[0]}")
        return np.asarray(self.scores, np.float32)  # every file predicted: one row per file, in order

    def reset_counters(self) -> None:
        self._model_s = self._total_s = 0.0

    def counters(self) -> dict[str, Any]:
        """Seconds in the whole calls and in the model calls since the last reset (the warm-up)."""
        return {"total_s": self._total_s, "model_s": self._model_s}

    def close(self) -> None:
        if getattr(self, "predictor", None) is not None:
            self.predictor.close()
            self.predictor = None


def preprocess_share(counters: dict[str, Any]) -> float | None:
    """Time outside the model call / the whole call, in [0, 1]; None before any timed call."""
    total = counters.get("total_s") or 0.0
    if total <= 0:
        return None
    return min(max((total - counters.get("model_s", 0.0)) / total, 0.0), 1.0)


def fetched_share(worker: Any) -> float | None:
    """The preprocessing share a worker counted over its timed blocks; None if it cannot tell."""
    try:
        return preprocess_share(worker.counters())
    except Exception:  # a worker that died after its last block: the row keeps its timings
        return None


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
    """The report's "End to end" table: what an alexnet-run user gets, per backend and batch size."""
    rows = [r for r in doc["rows"] if r["device"] == device and r["status"] == "ok" and OPTION in r["variant"].split()]
    lines = ["| backend | batch | images/s | ms per batch (p50) | preprocessing share |", "|---|--:|--:|--:|--:|"]
    for r in sorted(rows, key=lambda r: (r["batch_size"], -r["throughput_ips"])):
        share = r.get("preprocess_share")
        lines.append(
            f"| {r['backend']} | {r['batch_size']} | {r['throughput_ips']:.1f} | {r['latency_ms']['p50']:.2f} | "
            + (f"{share:.0%} |" if share is not None else "- |")
        )
    return lines if rows else []
