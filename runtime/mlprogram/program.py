"""Read the ML Program inside a Core ML package and execute it, op by op, with numpy.

runtime.mlpackage finds the package's files (confined to it) and coremltools' MIL loader reads the
spec's program and its weight file into a MIL program; nothing else of coremltools runs. Loading: every op type is checked against the ops implemented
here (an unknown one is a one-line error naming it and the model), consts become arrays, and
the `constexpr_*` ops (compressed weights) are evaluated once, as Core ML does at load time.
Running: the function's ops in program order; each output is stored in its declared dtype
(runtime/mlprogram/ops.py says why), and a value is dropped after its last use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import DeployError, first_line, quiet_logger
from runtime.mlpackage import package_files, parse_spec
from runtime.mlprogram.layers import LAYERS
from runtime.mlprogram.ops import OPS, UnsupportedOpError, wide

IMPLEMENTED = {**OPS, **LAYERS}
CONSTANT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")  # evaluated at load


class ProgramLoadError(DeployError, ValueError):
    """The package cannot be read as an ML Program the evaluator runs."""


class ProgramRunError(DeployError, RuntimeError):
    """An op failed on the inputs given (a shape the program does not take, an unsupported setting)."""


def import_coremltools() -> Any:
    """coremltools, imported quietly (off macOS it logs that its Core ML bindings are missing)."""
    try:
        with warnings.catch_warnings(), quiet_logger("coremltools"):
            warnings.simplefilter("ignore")
            import coremltools
    except ImportError:
        raise ProgramLoadError("reading a Core ML package needs coremltools: pip install coremltools") from None
    return coremltools


def load_program(mlmodel: Any) -> Any:
    """The MIL program of an ML Program `ct.models.MLModel`, constants (weights) included."""
    spec = mlmodel.get_spec()
    return program_from_spec(spec, mlmodel.weights_dir)


def program_from_spec(spec: Any, weights_dir: str | os.PathLike | None) -> Any:
    """The MIL program of an ML Program spec whose weights are in `weights_dir`."""
    from coremltools.converters.mil.frontend.milproto.load import load

    with warnings.catch_warnings(), quiet_logger("coremltools"):
        warnings.simplefilter("ignore")
        return load(spec, spec.specificationVersion, os.fspath(weights_dir or ""))


def read_package(path: str | Path) -> tuple[Any, Any]:
    """(spec, MIL program) of the .mlpackage (or .mlmodel) at `path`. Its files are found and
    confined by runtime.mlpackage (a ModelLoadError for an item outside the package or not a
    regular file), never by coremltools' package class, which rewrites Manifest.json."""
    import_coremltools()
    files = package_files(path)
    spec = parse_spec(files.read_spec(), path)
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise ProgramLoadError(
            f"{path} is a Core ML {kind or 'empty'} model, not an ML Program; the reference evaluator runs "
            f"ML Programs (what alexnet-export --format coreml writes)"
        )
    try:
        return spec, program_from_spec(spec, files.weights)
    except Exception as exc:  # the MIL loader raises plain ValueError/KeyError/NotImplementedError
        raise ProgramLoadError(f"coremltools cannot read the program in {path}: {first_line(exc)}") from exc


def classifier_labels(program: Any) -> list[str]:
    """An ML Program classifier keeps its labels in the `classify` op's `classes` input ([] if none)."""
    for op in program.functions["main"].operations:
        if op.op_type == "classify":
            return [str(c) for c in np.asarray(op.inputs["classes"].val).reshape(-1)]
    return []


@dataclass(frozen=True)
class Step:
    """One op to run: its function, its inputs (parameter -> value slot, or slots for a list),
    its outputs (slot, numpy dtype to store it in; None for a non-tensor such as a dictionary).
    Values are kept by slot, not by name: coremltools' loader names the consts it makes for inline
    values from a global counter ("const_3"), which can repeat a name the program already uses."""

    op_type: str
    name: str
    fn: Callable[..., Any]
    inputs: dict[str, int | tuple[int, ...]]
    outputs: tuple[tuple[int, Any], ...]


def _numpy_dtype(var: Any) -> Any:
    from coremltools.converters.mil.mil import types

    if not (types.is_tensor(var.sym_type) or types.is_scalar(var.sym_type)) or types.is_str(var.dtype):
        return None
    return np.dtype(types.nptype_from_builtin(var.dtype))


class ReferenceProgram:
    """An ML Program's main function, ready to run: `run({input name: array}) -> {output name: value}`."""

    def __init__(self, program: Any, source: str) -> None:
        self.source = source
        function = program.functions.get("main")
        if function is None or len(program.functions) != 1:
            raise ProgramLoadError(f"{source}: the reference evaluator runs programs with one function, 'main'")
        unknown = sorted({op.op_type for op in function.operations if op.op_type not in IMPLEMENTED} - {"const"})
        if unknown:
            raise UnsupportedOpError(
                f"{source} uses the op {unknown[0]!r}, which the Core ML reference evaluator does not implement"
                + (f" (nor {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
            )
        self._slots: dict[int, int] = {}  # id(MIL var) -> slot, while the program is at hand
        self.inputs = {
            name: (self._slot(var), _numpy_dtype(var), _shape(var.shape)) for name, var in function.inputs.items()
        }
        self.constants: dict[int, Any] = {}
        self.steps: list[Step] = []
        for op in function.operations:
            self._add(op)
        self.outputs = {var.name: self._slots[id(var)] for var in function.outputs}
        # fp16 weights held widened to float32 (the same values): every op widens them anyway, and
        # a 4096x9216 fc6 weight widened on every run would cost more than the layer itself.
        self.constants = {slot: wide(v) if _is_fp16(v) else v for slot, v in self.constants.items()}
        self._last_use = self._last_uses()
        del self._slots

    def _slot(self, var: Any) -> int:
        return self._slots.setdefault(id(var), len(self._slots))

    def _add(self, op: Any) -> None:
        if any(op.blocks):
            raise UnsupportedOpError(
                f"{self.source} uses control flow ({op.op_type}), which the evaluator does not run"
            )
        if op.op_type == "const":
            self.constants[self._slot(op.outputs[0])] = op.outputs[0].val
            return
        inputs = {}
        for param, value in op.inputs.items():
            values = value if isinstance(value, (list, tuple)) else (value,)
            missing = [v.name for v in values if id(v) not in self._slots]
            if missing:
                raise ProgramLoadError(f"{self.source}: op {op.name!r} reads {missing[0]!r} before it is made")
            slots = tuple(self._slots[id(v)] for v in values)
            inputs[param] = slots if isinstance(value, (list, tuple)) else slots[0]
        outputs = tuple((self._slot(var), _numpy_dtype(var)) for var in op.outputs)
        step = Step(op.op_type, op.name, IMPLEMENTED[op.op_type], inputs, outputs)
        if op.op_type in CONSTANT_OPS:
            self._store(self.constants, step, self._call(step, self.constants))
        else:
            self.steps.append(step)

    def _last_uses(self) -> dict[int, int]:
        last: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for slots in step.inputs.values():
                for slot in (slots,) if isinstance(slots, int) else slots:
                    last[slot] = index
        for slot in self.outputs.values():
            last.pop(slot, None)  # kept to the end
        for slot in self.constants:
            last.pop(slot, None)
        return last

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        """Execute the program on `feeds` (every input, shaped as the program declares)."""
        values = dict(self.constants)
        for name, (slot, dtype, shape) in self.inputs.items():
            if name not in feeds:
                raise ProgramRunError(f"{self.source}: no value given for the input {name!r}")
            array = np.asarray(feeds[name])
            if array.ndim != len(shape) or any(d is not None and d != a for d, a in zip(shape, array.shape)):
                raise ProgramRunError(f"{self.source}: input {name!r} takes shape {shape}, got {array.shape}")
            values[slot] = array.astype(dtype, copy=False) if dtype is not None else array
        for index, step in enumerate(self.steps):
            self._store(values, step, self._call(step, values))
            for slots in step.inputs.values():
                for slot in (slots,) if isinstance(slots, int) else slots:
                    if self._last_use.get(slot) == index:
                        values.pop(slot, None)
        return {name: values[slot] for name, slot in self.outputs.items()}

    def _call(self, step: Step, values: dict[int, Any]) -> Any:
        kwargs = {
            param: values[slots] if isinstance(slots, int) else tuple(values[s] for s in slots)
            for param, slots in step.inputs.items()
        }
        try:
            return step.fn(**kwargs)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"{self.source}: op {step.name!r} ({step.op_type}): {exc}") from exc
        except (ValueError, TypeError, IndexError) as exc:  # numpy's shape errors
            raise ProgramRunError(
                f"{self.source}: op {step.name!r} ({step.op_type}) failed: {first_line(exc)}"
            ) from exc

    @staticmethod
    def _store(values: dict[int, Any], step: Step, result: Any) -> None:
        results = result if len(step.outputs) > 1 else (result,)
        with np.errstate(over="ignore"):  # beyond fp16's range is inf, as on the device
            for (slot, dtype), value in zip(step.outputs, results):
                values[slot] = value if dtype is None else np.asarray(value).astype(dtype, copy=False)


def _is_fp16(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic)) and value.dtype == np.float16


def _shape(shape: tuple[Any, ...]) -> tuple[int | None, ...]:
    """A MIL shape with its symbolic (flexible) dimensions as None."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) else None for d in shape)
