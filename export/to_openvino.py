"""Checkpoint -> OpenVINO IR (model.xml + model.bin) through the project's own ONNX export.

The fp32 model is the ONNX export (export/to_onnx.py) converted by openvino.convert_model, saved
with compress_to_fp16=False: OpenVINO's default halves fp32 weights to fp16, which would make an
"fp32" IR differ from PyTorch by ~1e-3. The int8 IR (export/to_openvino_int8.py) is written by
`write_ir` too.

An IR is two files, so it cannot appear with one rename: both are saved into a hidden folder
beside the output (`.m.xml.alexnet-<pid>-<hex>.tmp/`, which runtime.outputs removes once its
process is gone), stamped with the .bin's SHA-256, then the .bin is renamed into place, then the
.xml. A reader opens the .xml; should the export die between the two renames, the old .xml beside
the new .bin is refused by its recorded hash. Any earlier failure leaves the old pair untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from export.common import ExportError, example_input, first_line
from runtime import outputs
from runtime.errors import DeployError
from runtime.formats import FORMATS
from runtime.integrity import openvino_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.openvino_ir import openvino_reason
from runtime.output_paths import OutputError, plan_write

XML_SUFFIX = FORMATS["openvino"].suffix
BIN_SUFFIX = FORMATS["openvino"].companions[0]
SCRATCH_NAME = "model"  # model.xml/.bin (and the fp32 export's model.onnx) inside the temp folder


def export_openvino(
    model: nn.Module, metadata: ArtifactMetadata, output: Path, *, opset: int = 18, batch_size: int | None = None
) -> Path:
    """`model` (fp32, eval) as an fp32 IR at `output` (.xml, its .bin beside it); batch dynamic unless
    `batch_size`. Returns `output`; ExportError (one line) on any failure, with nothing left behind."""
    if metadata.precision != "fp32":
        raise ExportError(f"the OpenVINO exporter writes fp32 here, not {metadata.precision} (int8: to_openvino_int8)")
    check_ir_output(output)
    size = metadata.input_shape[2]
    metadata = dataclasses.replace(metadata, format="openvino", input_shape=(batch_size, *metadata.input_shape[1:]))

    def build(folder: Path) -> Any:
        return convert_pytorch(model, metadata, folder, opset=opset, example=example_input(batch_size, size))

    return write_ir(output, metadata, build)


def convert_pytorch(model: nn.Module, metadata: ArtifactMetadata, folder: Path, *, opset: int, example) -> Any:
    """The ov.Model of `model`: its ONNX export (input `example`, (N, 3, H, W); batch dynamic when
    metadata's is None) written into `folder`, converted, removed."""
    from export.to_onnx import export_onnx

    onnx_path = folder / f"{SCRATCH_NAME}.onnx"
    dynamic = metadata.input_shape[0] is None
    # No weights hash: this ONNX is an intermediate, its digest would not be the IR's.
    export_onnx(model, example, metadata, onnx_path, opset=opset, dynamic_batch=dynamic, weights_hash=False)
    try:
        return convert_onnx(onnx_path)
    finally:
        onnx_path.unlink(missing_ok=True)


def convert_onnx(onnx_path: Path) -> Any:
    import openvino as ov

    return ov_call("OpenVINO could not convert the ONNX export", ov.convert_model, str(onnx_path))


def check_ir_output(output: Path) -> tuple[Path, Path]:
    """(the .xml, the .bin) that a write of `output` replaces (a symlink's target), refused in one line
    when either is a directory, a device or a pipe (an IR is renamed into place), or when symlinks
    would put them in different folders (OpenVINO reads the .bin beside the .xml)."""
    if output.suffix != XML_SUFFIX:
        raise ExportError(
            f"cannot write {output}: an OpenVINO IR is a {XML_SUFFIX} (got {output.suffix or 'no suffix'})"
        )
    targets = []
    for path in (output, output.with_suffix(BIN_SUFFIX)):
        try:
            target, direct = plan_write(path, None)
        except OutputError as exc:
            raise ExportError(str(exc)) from exc
        if direct:
            raise ExportError(f"cannot write {path}: it is a device or pipe; an OpenVINO IR is two files renamed in")
        targets.append(target)
    xml, weights = targets
    if xml.parent != weights.parent:
        raise ExportError(f"cannot write {output}: symlinks put it and {weights.name} in different folders")
    return xml, weights


def write_ir(output: Path, metadata: ArtifactMetadata, build: Callable[[Path], Any]) -> Path:
    """Write the ov.Model `build(folder)` returns (folder: scratch space on the output's file system)
    as `output` and its .bin, carrying `metadata` stamped with the .bin's SHA-256; see the module doc."""
    xml_target, bin_target = check_ir_output(output)
    outputs.remove_stale_temps(xml_target)  # folders of killed exports of this same output
    folder = xml_target.parent / f".{xml_target.name}.{outputs.TEMP_TAG}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        folder.mkdir()  # O_EXCL-like: never reuse (nor, below, remove) a folder this call did not make
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or first_line(exc)}") from exc
    try:
        xml = save_stamped(build(folder), metadata, folder / f"{SCRATCH_NAME}{XML_SUFFIX}")
        weights = xml.with_suffix(BIN_SUFFIX)
        for path in (weights, xml):
            outputs.fsync_path(path)
        os.replace(weights, bin_target)  # the .bin first: the .xml is what makes the new IR visible
        os.replace(xml, xml_target)
        outputs.fsync_path(xml_target.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or first_line(exc)}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return output


def save_stamped(model: Any, metadata: ArtifactMetadata, xml: Path) -> Path:
    """Save `model` at `xml` (+ .bin) with `metadata` in its rt_info, the .bin's SHA-256 in it: saved,
    hashed, saved again with the hash, and checked that the second save wrote the same weights."""
    import openvino as ov

    def save(meta: ArtifactMetadata) -> None:
        model.set_rt_info(meta.to_json(), [METADATA_KEY])
        # compress_to_fp16=False: fp32 constants stay fp32, an int8 model's weights stay int8.
        ov_call(f"OpenVINO could not save {xml.name}", ov.save_model, model, str(xml), compress_to_fp16=False)

    save(metadata)
    digest = openvino_sha256(xml)
    save(dataclasses.replace(metadata, weights_sha256=digest))
    if openvino_sha256(xml) != digest:
        raise ExportError("OpenVINO wrote different weights on a second save of the same model; not saved")
    return xml


def ov_call(what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)`, its failure an ExportError "<what>: <reason>" in one line."""
    try:
        return function(*args, **kwargs)
    except DeployError:
        raise
    except Exception as exc:  # OpenVINO raises RuntimeError (and others) with multi-line C++ traces
        raise ExportError(f"{what}: {openvino_reason(exc)}") from exc


def remove_ir(xml: Path) -> None:
    """Remove an IR's two files (an attempt in a scratch folder); what is missing is fine."""
    for path in (xml, xml.with_suffix(BIN_SUFFIX)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
