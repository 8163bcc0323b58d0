"""What a benchmark row runs besides its backend: a `Variant` (a precision and options), and
which variants each backend runs on each device (`variants`).

Rows, reports and the JSON name a variant by its `label` ("fp32", "fp16 channels_last",
"fp32 e2e"); code reads the fields and never parses the label back.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import formats
from runtime.metadata import BYTES_PER_WEIGHT

# The export precisions (the format table's) and bf16, which only torch eager runs here; widest first.
PRECISIONS = tuple(sorted((*formats.PRECISIONS, "bf16"), key=lambda p: -BYTES_PER_WEIGHT[p]))
# The torch dtype (a `torch` attribute name) of each precision torch runs; int8 runs only in the
# engines of the formats with a gated int8 export (onnxruntime, OpenVINO, ExecuTorch, LiteRT).
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Variant:
    """A precision (one of PRECISIONS) and the runner's options, e.g. ("channels_last",)."""

    precision: str
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")

    @property
    def label(self) -> str:
        """The name rows and reports show: the precision, then the options, space-separated."""
        return " ".join((self.precision, *self.options))


FP32, FP16, BF16, INT8 = (Variant(p) for p in PRECISIONS)
E2E_OPTION = "e2e"
# Image files -> decode -> preprocess -> predict through runtime.load, as alexnet-run does (benchmarks.e2e),
# on one of two photo sets: option -> ((width, height), files).
PHOTO_SETS = {E2E_OPTION: ((500, 375), 32), "12mp": ((4032, 3024), 12)}
E2E = Variant("fp32", (E2E_OPTION,))
# The backends that run a shipped file through runtime.load (pytorch: the checkpoint, via its plugin).
E2E_BACKENDS = ("pytorch", *(f.backend for f in formats.FORMATS.values() if f.backend))


def variants(backend: str, device: str) -> list[Variant]:
    """The configurations benchmarked per backend and device (eager fp32 is the baseline), with
    end-to-end rows on the CPU for the backends alexnet-run can run: fp32 and int8 (where the backend
    has it), on each photo set."""
    own = _variants(backend, device)
    if device != "cpu" or backend not in E2E_BACKENDS:
        return own
    precisions = [v.precision for v in own if v in (FP32, INT8)]  # what the backend runs without options
    sets = [(E2E_OPTION,) if name == E2E_OPTION else (E2E_OPTION, name) for name in PHOTO_SETS]
    return own + [Variant(p, options) for options in sets for p in precisions]


def _variants(backend: str, device: str) -> list[Variant]:
    if backend == "pytorch":
        return {
            "cpu": [FP32, Variant("fp32", ("channels_last",))],
            "mps": [FP32, FP16],
            "cuda": [FP32, FP16, BF16, Variant("fp16", ("channels_last",))],
        }[device]
    if backend == "torch.compile":
        return [FP32, FP16] if device == "cuda" else [FP32]
    if backend == "torchscript":
        return [FP32, Variant("fp32", ("optimized",))] + ([FP16] if device == "cuda" else [])
    if backend == "onnxruntime" and device == "cuda":
        return [FP32, FP16]  # the fp16 export casts inside the graph: input and logits stay float32
    # int8 where the format table has a gated int8 export (static QDQ ONNX, NNCF's IR, PT2E ExecuTorch and
    # LiteRT), on the CPU only: that is where integer kernels (VNNI, VPMADDUBSW, SDOT) make it a deployment choice.
    table = formats.for_backend(backend)
    if device == "cpu" and table is not None and table.gated_int8 and INT8.precision in table.precisions:
        return [FP32, INT8]
    return [FP32]
