"""Checkpoint -> a Triton Inference Server model repository (one model in it, the others kept).

    <repo>/<name>/config.pbtxt    written from tritonclient's ModelConfig message (so it parses)
    <repo>/<name>/1/model.onnx    the ONNX exporter's artifact, unchanged (int8: calibrated and gated)
    <repo>/<name>/labels.txt      one class name a line: Triton's classification extension

The config carries the artifact metadata (the exact JSON string of the ONNX file's
metadata_props) as the parameter `alexnet_deploy`, so a client that sees only Triton's
/v2/models/<name>/config can preprocess images and name classes the way `runtime.load` does.
tritonclient is imported only where needed (and never with kserve: both register the same
protobuf symbols, which one process cannot hold twice).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from export.common import ExportError, first_line, write_directory
from export.source import Source
from export.validate import ValidationResult, validate_artifact
from runtime import outputs
from runtime.errors import DeployError
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.server.protocol import MODEL_NAME, MODEL_NAME_RULE

DEFAULT_NAME = "alexnet"
VERSION = "1"  # Triton serves the highest numbered version folder; one export writes one version
MODEL_FILE = f"{VERSION}/model.onnx"  # the onnxruntime backend's default_model_filename
CONFIG_FILE, LABELS_FILE = "config.pbtxt", "labels.txt"
PLATFORM = "onnxruntime_onnx"
REPOSITORY_SUFFIX = "-triton"  # the default repository: runs/best.pth -> runs/best-triton/
DEFAULT_MAX_BATCH = 32  # the largest batch Triton's dynamic batcher forms for a dynamic-batch model
QUEUE_DELAY_US = 100  # how long a request may wait for others to batch with (Triton's documented example)
INSTALL_HINT = "pip install 'alexnet-deploy[export]'"


def check_name(name: str) -> str:
    if not MODEL_NAME.fullmatch(name):
        raise ExportError(f"Triton model name {name!r} must be {MODEL_NAME_RULE}")
    return name


def resolve_repository(checkpoint: str | os.PathLike, output: str | os.PathLike | None, tag: str | None = None) -> Path:
    """-o is the repository root; by default a folder beside the checkpoint, named like the other
    formats' artifacts (runs/best.pth -> runs/best-triton/, tagged: runs/best-int8-triton/)."""
    if output is not None:
        return Path(output)
    stem = Path(checkpoint).stem + (f"-{tag}" if tag else "")
    return Path(checkpoint).parent / (stem + REPOSITORY_SUFFIX)


def check_repository_output(repo: Path, name: str) -> None:
    """Before the (slow) export: tritonclient is there, the repository root can be made or written
    into, and an existing <repo>/<name> is a Triton model (replacing any other folder would lose it)."""
    _model_config_pb2()
    check_name(name)
    model_dir = repo / name
    if os.path.lexists(repo) and not repo.is_dir():
        raise ExportError(f"cannot write the Triton repository {repo}: it is not a directory")
    try:
        outputs.check_output_path(model_dir if repo.is_dir() else repo, directory_ok=True)
    except outputs.OutputError as exc:
        raise ExportError(str(exc)) from exc
    if os.path.lexists(model_dir) and not _replaceable(model_dir):
        raise ExportError(
            f"{model_dir} exists and is not a Triton model (no {CONFIG_FILE}); remove it or choose another --triton-name"
        )


def _replaceable(model_dir: Path) -> bool:
    """An earlier export's model (it has a config), or an empty folder."""
    return model_dir.is_dir() and ((model_dir / CONFIG_FILE).is_file() or not any(model_dir.iterdir()))


def write_repository(
    source: Source,
    repo: Path,
    *,
    name: str = DEFAULT_NAME,
    precision: str = "fp32",
    batch_size: int | None = None,
    **onnx_options: Any,
) -> Path:
    """Write <repo>/<name> (a place export.plan_output checked) and return its path. The whole
    model folder is built beside its place and renamed in when complete (replacing an older one);
    a missing repository root is made the same way."""
    from export import write_artifact

    def build(folder: str) -> None:
        root = Path(folder)
        (root / VERSION).mkdir(parents=True)
        model = root / MODEL_FILE
        write_artifact(source, "onnx", model, precision=precision, batch_size=batch_size, **onnx_options)
        text = embedded_metadata(model)
        metadata = ArtifactMetadata.from_json(text, model)
        _write_labels(root / LABELS_FILE, metadata.class_names)
        _write_text(root / CONFIG_FILE, config_text(name, metadata, text))

    def build_repository(folder: str) -> None:
        os.mkdir(folder)
        build(os.path.join(folder, name))

    if repo.is_dir():
        write_directory(repo / name, build)
    else:  # the root too appears only once the model inside it is complete
        write_directory(repo, build_repository)
    return repo / name


def config_text(name: str, metadata: ArtifactMetadata, metadata_json: str) -> str:
    """config.pbtxt from the metadata (validation checks it against the ONNX graph, the other source).

    A dynamic-batch model gets max_batch_size and dims without the batch dimension, and Triton's
    dynamic batcher. A fixed-batch model (--batch N) is described as it is: max_batch_size 0 and
    full dims [N, 3, H, W], no batcher (Triton would otherwise send it batches of any size up to
    max_batch_size, which the model refuses); its clients send exactly N images.
    """
    pb2 = _model_config_pb2()
    from google.protobuf import text_format

    batch, *image = metadata.input_shape
    config = pb2.ModelConfig(name=name, platform=PLATFORM, max_batch_size=DEFAULT_MAX_BATCH if batch is None else 0)
    lead = [] if batch is None else [batch]
    config.input.add(name=metadata.input_name, data_type=pb2.TYPE_FP32, dims=lead + image)
    config.output.add(
        name=metadata.output_name,
        data_type=pb2.TYPE_FP32,
        dims=lead + [metadata.num_classes],
        label_filename=LABELS_FILE,
    )
    if batch is None:
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    config.instance_group.add(count=1, kind=pb2.ModelInstanceGroup.KIND_CPU)
    config.parameters[METADATA_KEY].string_value = metadata_json
    # as_utf8=False: non-ASCII class names become octal escapes, so the file is plain ASCII.
    return text_format.MessageToString(config, as_utf8=False)


def embedded_metadata(model_path: Path) -> str:
    """The JSON string stored under METADATA_KEY in an ONNX file's metadata_props."""
    import onnx

    proto = onnx.load(str(model_path), load_external_data=False)
    found = [p.value for p in proto.metadata_props if p.key == METADATA_KEY]
    if len(found) != 1:
        raise ExportError(f"{model_path} has {len(found)} {METADATA_KEY} metadata entries, not one")
    return found[0]


def _write_labels(path: Path, names: tuple[str, ...]) -> None:
    # Triton reads the label file line by line ('\n'); a name holding a line break would shift every later class.
    broken = next((n for n in names if "\n" in n or "\r" in n), None)
    if broken is not None:
        raise ExportError(f"class name {broken!r} holds a line break; Triton's {LABELS_FILE} takes one name a line")
    _write_text(path, "".join(f"{n}\n" for n in names))


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:  # no "\r\n" on Windows either
        handle.write(text)


def _model_config_pb2() -> Any:
    """tritonclient's model_config_pb2 (the schema Triton itself parses config.pbtxt with)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise ExportError(
            f"--format triton needs tritonclient ({first_line(exc)}); install it with {INSTALL_HINT}"
        ) from exc
    return model_config_pb2


def read_config(model_dir: Path) -> Any:
    """<model_dir>/config.pbtxt parsed as Triton parses it; ExportError (one line) if it cannot be."""
    pb2 = _model_config_pb2()
    from google.protobuf import text_format

    path = Path(model_dir) / CONFIG_FILE
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise ExportError(f"{path} cannot be read as a Triton model config: {first_line(exc)}") from exc


def repository_problems(model_dir: str | os.PathLike) -> list[str]:
    """What in <model_dir> Triton or a client would trip on: config vs the ONNX graph, the metadata
    parameter vs the ONNX metadata, labels.txt vs the class names. Empty when all agree."""
    import onnx
    from google.protobuf.message import DecodeError

    model_dir = Path(model_dir)
    try:
        config = read_config(model_dir)
        proto = onnx.load(str(model_dir / MODEL_FILE), load_external_data=False)
        text = embedded_metadata(model_dir / MODEL_FILE)
        metadata = ArtifactMetadata.from_json(text, model_dir / MODEL_FILE)
    except DeployError as exc:  # config unreadable, metadata missing or malformed
        return [first_line(exc)]
    except (OSError, DecodeError) as exc:  # no model file, or a damaged one
        return [f"{model_dir / MODEL_FILE} cannot be loaded: {first_line(exc)}"]
    problems = []
    if config.name != model_dir.name:
        problems.append(f"config name {config.name!r} is not the folder's name {model_dir.name!r} (Triton refuses it)")
    if config.platform != PLATFORM:
        problems.append(f"platform is {config.platform!r}, not {PLATFORM!r}")
    batched = config.max_batch_size > 0
    graph_inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    problems += _tensor_problems("input", config.input, graph_inputs, batched)
    problems += _tensor_problems("output", config.output, proto.graph.output, batched)
    if config.HasField("dynamic_batching") and not batched:
        problems.append("dynamic_batching needs max_batch_size > 0")
    if any(o.label_filename != LABELS_FILE for o in config.output):
        problems.append(f"the output's label_filename is not {LABELS_FILE!r}")
    if METADATA_KEY not in config.parameters or config.parameters[METADATA_KEY].string_value != text:
        problems.append(f"parameter {METADATA_KEY!r} is not the ONNX model's {METADATA_KEY} metadata")
    problems += _label_problems(model_dir / LABELS_FILE, metadata.class_names)
    return problems


def _tensor_problems(kind: str, configured: Any, graph: Any, batched: bool) -> list[str]:
    """Each configured input/output against the ONNX graph's: name, FP32, dims after the batch
    dimension, which must be free when Triton batches (max_batch_size > 0)."""
    import onnx
    from tritonclient.grpc import model_config_pb2 as pb2

    names = [t.name for t in configured]
    if names != [t.name for t in graph]:
        return [f"config {kind}s {names} are not the ONNX model's {[t.name for t in graph]}"]
    problems = []
    for tensor, value in zip(configured, graph):
        shape = value.type.tensor_type.shape.dim
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape]
        if tensor.data_type != pb2.TYPE_FP32 or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"{kind} {tensor.name!r} is not FP32 in both the config and the ONNX model")
        if batched and dims[:1] != [-1]:
            problems.append(f"{kind} {tensor.name!r} has a fixed batch dimension {dims[:1]}; max_batch_size must be 0")
        expected = dims[1:] if batched else dims
        if list(tensor.dims) != expected:
            problems.append(f"{kind} {tensor.name!r} dims {list(tensor.dims)} are not the ONNX model's {expected}")
    return problems


def _label_problems(path: Path, names: tuple[str, ...]) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path} cannot be read: {first_line(exc)}"]
    lines = text.split("\n")  # as Triton splits it: only "\n" ends a line
    lines = lines[:-1] if lines[-1:] == [""] else lines
    if tuple(lines) != names:
        return [f"{LABELS_FILE} holds {len(lines)} lines that are not the model's {len(names)} class names in order"]
    return []


def validate_repository(
    model_dir: str | os.PathLike,
    checkpoint_path: str | os.PathLike | Source,
    *,
    atol: float | None = None,
    data: str | os.PathLike | None = None,
    numerical: bool = True,
) -> ValidationResult:
    """The repository's checks, then (numerical) 1/model.onnx against PyTorch as --format onnx does."""
    model_dir = Path(model_dir)
    problems = repository_problems(model_dir)
    if problems:
        return ValidationResult("triton", False, note="; ".join(problems))
    note = f"{CONFIG_FILE} and {LABELS_FILE} match {MODEL_FILE}"
    if not numerical:
        return ValidationResult("triton", True, note=note)
    result = validate_artifact(model_dir / MODEL_FILE, checkpoint_path, atol=atol, data=data)
    return dataclasses.replace(result, fmt="triton", note="; ".join(filter(None, (result.note, note))))
