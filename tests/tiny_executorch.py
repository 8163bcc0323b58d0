"""A tiny classifier as an ExecuTorch program (.pte), for the executorch backend's tests.

Built at test time (it needs torch and executorch; lowering takes a few seconds):

    input (N <= 15, 3, 8, 8) -> Conv2d(3 -> 4, 3x3, pad 1) -> ReLU -> Flatten -> Linear(256 -> 3) -> logits

lowered to XNNPACK with a dynamic batch, and the alexnet-deploy metadata as the constant method
``alexnet_deploy_metadata``. Its weights_sha256 is stamped the way the exporter does it: the
program is lowered with 64 zeros in the hash's place, the written file's segments are hashed
(runtime.integrity.pte_sha256) and the hash overwrites the zeros, outside the segments.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from runtime.integrity import pte_sha256
from runtime.metadata import ArtifactMetadata
from runtime.preprocess import PreprocessSpec

CLASS_NAMES = ("circle", "square", "star")
SIZE = 8
MAX_BATCH = 15  # the batch bound torch.export is given, and what ExecuTorch's memory plan holds
PLACEHOLDER = "0" * 64


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * SIZE * SIZE, len(CLASS_NAMES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def tiny_module(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().eval()


def tiny_metadata(**changes) -> ArtifactMetadata:
    return dataclasses.replace(
        ArtifactMetadata(
            class_names=CLASS_NAMES,
            preprocess=PreprocessSpec(resize=SIZE, crop=SIZE),
            model_config={},
            input_shape=(None, 3, SIZE, SIZE),
            format="executorch",
            max_batch=MAX_BATCH,
        ),
        **changes,
    )


def lower(module: torch.nn.Module, metadata_json: str | None) -> bytes:
    """The program's bytes: dynamic batch 1..MAX_BATCH, XNNPACK, the metadata method when given."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example = (torch.randn(2, 3, SIZE, SIZE),)
    program = torch.export.export(module, example, dynamic_shapes=({0: batch},))
    methods = {"alexnet_deploy_metadata": metadata_json} if metadata_json is not None else {}
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=methods)
    return bytes(lowered.to_executorch().buffer)


def write_tiny_pte(path: str | Path, module: torch.nn.Module, metadata: ArtifactMetadata | None) -> Path:
    """Write the lowered `module` to `path` with `metadata` (None: a foreign program), stamped."""
    path = Path(path)
    if metadata is None:
        path.write_bytes(lower(module, None))
        return path
    data = lower(module, dataclasses.replace(metadata, weights_sha256=PLACEHOLDER).to_json())
    assert data.count(PLACEHOLDER.encode()) == 1, "the placeholder must be found exactly once"
    path.write_bytes(data)
    digest = pte_sha256(path)  # the segments: the placeholder lies before them
    path.write_bytes(data.replace(PLACEHOLDER.encode(), digest.encode()))
    assert pte_sha256(path) == digest
    return path
