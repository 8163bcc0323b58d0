"""`runtime.load`: open an artifact with the right backend and settle its metadata.

The metadata a prediction uses is the artifact's embedded alexnet-deploy metadata,
checked against what the graph itself declares (input shape, number of outputs).
A foreign model (no embedded metadata) runs only with explicit labels and, when its
graph does not fix the input size, an explicit image size.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.backends import DEVICES, Backend, BackendUnavailableError, check_model_path, detect_backend, get_backend
from runtime.fileio import SpecialFileError, open_regular
from runtime.integrity import verify_weights
from runtime.metadata import ArtifactMetadata, MetadataError, check_batch_size, check_class_names
from runtime.predictor import InputError, Predictor
from runtime.preprocess import PreprocessSpec

FOREIGN_HINT = (
    "pass --labels FILE (one class name per line) and, unless the model fixes its input size, "
    "--image-size N (--mean/--std default to ImageNet's)"
)


def load(
    path: str | os.PathLike,
    backend: str = "auto",
    device: str = "auto",
    *,
    labels: Sequence[str] | str | os.PathLike | None = None,
    preprocess: PreprocessSpec | None = None,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    batch_size: int | None = None,
    verify: bool = True,
    workers: int | None = None,
    decode: str | None = None,
) -> Predictor:
    """Open `path` and return a ready `Predictor` (the backend session is created once, here).

    backend: auto (from the file, by the format table runtime/formats.py: .onnx -> onnxruntime,
    .xml -> openvino, .mlpackage/.mlmodel -> coreml on macOS and coreml-reference (runtime.mlprogram,
    numpy) elsewhere, a TorchScript archive -> torchscript, a checkpoint -> pytorch) or a backend name.
    device: auto | cpu | cuda | mps. labels (a list or a file), preprocess, image_size,
    mean and std override the embedded metadata; a foreign model needs labels.
    threads: intra-op threads of the onnxruntime session (OpenVINO's inference threads). torch backends ignore it: torch's thread
    count is process-wide, so an application sets it itself (torch.set_num_threads; alexnet-run
    --threads does). providers: explicit onnxruntime providers.
    verify: check the weights against the SHA-256 the export recorded (runtime/integrity.py; an
    IntegrityError if they differ); False skips the extra read, for trusted read-only storage.
    workers: threads decoding files while the model runs (default: runtime.pipeline.default_workers).
    decode: "reduced" (the default: large JPEGs decoded at the size needed) or "exact" (every pixel,
    torchvision's preprocessing bit for bit); see PreprocessSpec.decode.
    """
    path = Path(path)
    check_model_path(path)  # exists, and no FIFO or device (reading one would block)
    if device not in DEVICES:
        raise BackendUnavailableError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    name = detect_backend(path) if backend == "auto" else backend
    engine = get_backend(name)(path, device=device, threads=threads, providers=providers)
    try:
        if verify:
            verify_weights(path, engine.format, engine.metadata)
        metadata = resolve_metadata(
            engine, path, labels=labels, preprocess=preprocess, image_size=image_size, mean=mean, std=std
        )
        if decode is not None:
            metadata = dataclasses.replace(metadata, preprocess=dataclasses.replace(metadata.preprocess, decode=decode))
        engine.configure(metadata)
        return Predictor(engine, metadata, batch_size=batch_size, workers=workers)
    except BaseException:
        engine.close()
        raise


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a text file (one per line, blank lines ignored) or a JSON list."""
    path = Path(path)
    try:
        with open_regular(path) as handle:  # a FIFO given as --labels must not hang
            text = handle.read().decode("utf-8")
    except SpecialFileError as exc:
        raise InputError(f"labels file {exc}; not read") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"labels file {path} is not valid JSON: {exc}") from exc
        if not isinstance(names, list):
            raise InputError(f"labels file {path} must hold a JSON list of class names")
        names = [str(n) for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"labels file {path} holds no class names")
    try:
        return list(check_class_names(names, "the labels"))
    except MetadataError as exc:
        raise InputError(f"labels file {path}: {exc}") from exc


def resolve_metadata(
    engine: Backend,
    path: Path,
    *,
    labels: Sequence[str] | str | os.PathLike | None = None,
    preprocess: PreprocessSpec | None = None,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ArtifactMetadata:
    """The embedded metadata with the user's overrides applied, checked against the graph."""
    embedded, io = engine.metadata, engine.io
    if len(io.input_shape) != 4 or io.input_shape[1] not in (None, 3):
        raise MetadataError(
            f"{path} takes inputs of shape {io.input_shape}; alexnet-deploy runs image classifiers "
            f"that take (N, 3, H, W)"
        )
    class_names = _class_names(embedded, labels, io.num_outputs, path)
    spec = _preprocess_spec(embedded, io.input_shape, path, preprocess, image_size, mean, std)
    batch = _batch_size(io.input_shape[0], embedded.batch_size if embedded else None, path)
    precision = embedded.precision if embedded else ("fp16" if io.input_dtype == np.float16 else "fp32")
    values = dict(
        class_names=class_names,
        preprocess=spec,
        input_shape=(batch, 3, spec.crop, spec.crop),
        input_name=io.input_name,
        output_name=io.output_name,
        precision=precision,
    )
    if embedded is not None:
        return dataclasses.replace(embedded, **values)
    return ArtifactMetadata(model_config={}, format=engine.format, **values)


def _class_names(
    embedded: ArtifactMetadata | None,
    labels: Sequence[str] | str | os.PathLike | None,
    num_outputs: int | None,
    path: Path,
) -> tuple[str, ...]:
    """The labels given (a list or a file) or else the embedded ones; as many as the graph's outputs."""
    if isinstance(labels, (str, os.PathLike)):
        labels = read_labels(labels)
    if embedded is None and labels is None:
        raise MetadataError(
            f"{path} carries no alexnet-deploy metadata (a model not exported by alexnet-deploy); "
            f"to run it anyway, {FOREIGN_HINT}"
        )
    class_names = tuple(labels) if labels is not None else embedded.class_names
    if num_outputs is not None and num_outputs != len(class_names):
        source = "the labels given" if labels is not None else "its metadata"
        raise MetadataError(
            f"{path} outputs {num_outputs} classes but {source} name {len(class_names)}; "
            f"pass --labels with {num_outputs} names"
        )
    return class_names


def _preprocess_spec(
    embedded: ArtifactMetadata | None,
    input_shape: tuple[int | None, ...],
    path: Path,
    preprocess: PreprocessSpec | None,
    image_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> PreprocessSpec:
    """The preprocessing with the overrides applied (a foreign model's from its fixed input size);
    its crop must be the size the graph takes, where the graph fixes one."""
    spec = preprocess or (embedded.preprocess if embedded else None)
    height, width = input_shape[2:4]
    if spec is None:
        size = image_size or (height if height == width else None)
        if size is None:
            raise MetadataError(f"{path} has no alexnet-deploy metadata and no fixed input size; {FOREIGN_HINT}")
        spec = PreprocessSpec.for_image_size(size)
    if image_size and image_size != spec.crop:
        spec = PreprocessSpec.for_image_size(image_size, mean=spec.mean, std=spec.std, interpolation=spec.interpolation)
    try:
        spec = dataclasses.replace(spec, mean=tuple(mean or spec.mean), std=tuple(std or spec.std))
    except ValueError as exc:
        raise InputError(f"bad preprocessing override: {exc}") from exc
    if (height is not None and height != spec.crop) or (width is not None and width != spec.crop):
        raise MetadataError(
            f"{path} takes {height}x{width} inputs, but preprocessing crops {spec.crop}x{spec.crop}; "
            f"drop --image-size or set it to {height}"
        )
    return spec


def _batch_size(graph: int | None, embedded: int | None, path: Path) -> int | None:
    """The graph's fixed batch wins; it must agree with the metadata when both say one."""
    graph = check_batch_size(graph, f"{path}: the graph's batch size")  # bounded: every call is padded to it
    if graph is not None and embedded is not None and graph != embedded:
        raise MetadataError(
            f"{path}: the graph takes batches of {graph} but its metadata says {embedded}; re-export it"
        )
    return graph if graph is not None else embedded
