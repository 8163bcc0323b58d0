"""An OpenVINO IR on disk: model.xml (the graph, alexnet-deploy metadata in its rt_info) and
model.bin beside it (the weights). Checked here before OpenVINO reads either, without openvino.

OpenVINO itself would take a corrupt .xml for some other framework's model and log through
TensorFlow's logger; a .bin that is a link out of the model's folder, or a FIFO, would be read
as it is. So: the .xml is a bounded regular file whose root element is <net>; the .bin has the
.xml's stem, is a regular file, and resolves inside the .xml's folder. A truncated .bin is
refused by OpenVINO itself (each constant's offset and size are checked against the file).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from runtime.backends import ModelLoadError, check_model_path
from runtime.errors import first_line
from runtime.fileio import open_regular
from runtime.formats import FORMATS

MAX_XML_BYTES = 64 << 20  # AlexNet's graph is ~30 KB; a bound on what one untrusted file may make us parse
WEIGHTS_SUFFIX = FORMATS["openvino"].companions[0]


def openvino_reason(exc: BaseException) -> str:
    """OpenVINO's message without its C++ trace lines ("Exception from src/...", "Check '...' failed at")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return first_line(ValueError(useful[0]) if useful else exc, limit=300)


def weights_path(xml: str | Path) -> Path:
    """The .bin of `xml`, refused unless it is a regular file inside the .xml's folder."""
    xml = Path(xml)
    weights = xml.with_suffix(WEIGHTS_SUFFIX)
    if not weights.exists() and not weights.is_symlink():
        raise ModelLoadError(f"{xml}: its weights file {weights.name} is missing (an OpenVINO IR is a .xml and a .bin)")
    try:
        folder, resolved = xml.resolve().parent, weights.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop, before Python 3.13
        raise ModelLoadError(f"{xml}: its weights file {weights.name} cannot be resolved ({exc})") from exc
    if folder not in resolved.parents:
        raise ModelLoadError(f"{xml}: its weights file {weights.name} points outside the model's folder; not read")
    check_model_path(weights)
    if weights.is_dir():
        raise ModelLoadError(f"{xml}: its weights file {weights.name} is a directory, not a regular file")
    return weights


def check_ir(xml: str | Path) -> tuple[Path, Path]:
    """(xml, bin) once both are safe to hand to OpenVINO; one-line ModelLoadError otherwise."""
    xml = Path(xml)
    check_model_path(xml)
    try:
        with open_regular(xml) as handle:
            text = handle.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {xml}: {exc.strerror or first_line(exc)}") from exc
    if len(text) > MAX_XML_BYTES:
        raise ModelLoadError(f"{xml} is larger than {MAX_XML_BYTES >> 20} MiB; not an AlexNet OpenVINO IR")
    try:
        root = ElementTree.fromstring(text)  # expat: no external entities, bounded entity expansion
    except ElementTree.ParseError as exc:
        raise ModelLoadError(f"{xml} is not an OpenVINO IR: corrupt XML ({exc})") from exc
    if root.tag != "net":
        raise ModelLoadError(f"{xml} is not an OpenVINO IR (its root element is <{root.tag[:40]}>, not <net>)")
    return xml, weights_path(xml)
