"""A reference evaluator for Core ML ML Programs: the exported .mlpackage run with numpy, off macOS.

Core ML predicts only on macOS; this runs the same program on Linux (or anywhere numpy does), so
an exported package is checked by its numbers, not only its structure: a wrong normalization
folded into conv1, a broken pooling rewrite or a damaged compressed weight changes the logits.

    from runtime.mlprogram import ReferenceProgram, read_package
    spec, program = read_package("best.mlpackage")
    outputs = ReferenceProgram(program, "best.mlpackage").run({"input": batch})

Numerics, op by op (runtime/mlprogram/ops.py, layers.py):
- fp32 programs compute in float32, as Core ML's fp32 path does; the result differs from PyTorch's
  only by summation order (within 1e-4 on logits, the fp32 ONNX tolerance).
- fp16 programs: weights are stored fp16 and every op's output is rounded to fp16 where the
  program declares an fp16 value (conv, relu, pooling, matmul, linear, the LRN's mul/pow/div...);
  inside an op the arithmetic is float32 (a dot product accumulates in float32). Each rounding is
  a relative error of at most 2**-11; the device may also accumulate in fp16, which this does not
  model, so fp16 packages are held to the fp16 ONNX tolerance (1e-2 of the largest |logit|, top-1
  agreement >= 99%), not to equality.
- int8 packages: the `constexpr_affine_dequantize` / `constexpr_blockwise_shift_scale` weights are
  dequantized once, (q - zero_point) * scale, to the program's fp16, then run as fp16.
- Image inputs: the program receives the 8-bit RGB pixels as float32 (N, 3, H, W), as Core ML
  does, and its own first ops apply the ImageType's scale and bias.

An op not implemented here is a one-line `UnsupportedOpError` naming the op and the model; a
foreign package using only these ops runs. What still needs a Mac: Core ML's own kernels (the
Neural Engine's and GPU's numerics) and its speed.
"""

from runtime.mlprogram.ops import UnsupportedOpError
from runtime.mlprogram.program import (
    IMPLEMENTED,
    ProgramLoadError,
    ProgramRunError,
    ReferenceProgram,
    classifier_labels,
    import_coremltools,
    load_program,
    read_package,
)

__all__ = [
    "IMPLEMENTED",
    "ProgramLoadError",
    "ProgramRunError",
    "ReferenceProgram",
    "UnsupportedOpError",
    "classifier_labels",
    "import_coremltools",
    "load_program",
    "read_package",
]
