"""How close an exported format stays to PyTorch, in the numbers the README quotes (issue 27).

    python -m benchmarks.format_agreement check demo-out/run/best.pth openvino
    python -m benchmarks.format_agreement train-1000 tv1000.pth     # the 1000-class model, ~9 min here
    python -m benchmarks.format_agreement check tv1000.pth openvino

`check` exports fp32 and int8 (`export_artifact`, int8 through its gate with the default options:
the checkpoint's own training data) into a temp folder, then prints as JSON: the fp32 artifact's
max relative logit difference from the PyTorch module and its top-1 agreement on 64 crops of the
two photographs scikit-learn ships (china.jpg, flower.jpg), the int8 gate record, and both sizes.
`train-1000` trains the torchvision variant with 1000 outputs on the 8 synthetic shapes at 224 px
(12 epochs, AdamW, seed 0): a full-size model whose predictions are decisive, unlike a fresh one's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np

from runtime import formats
from runtime.options import group

PHOTOS = 64


def photo_crops(folder: Path, count: int = PHOTOS, seed: int = 1) -> list[Path]:
    """Square crops (25-100% of the short side, anywhere, half mirrored) of scikit-learn's two photographs."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(image) for image in load_sample_images().images]
    paths = []
    for i in range(count):
        image = photos[i % len(photos)]
        side = int(min(image.size) * rng.uniform(0.25, 1.0))
        x, y = (int(rng.integers(0, n - side + 1)) for n in image.size)
        crop = image.crop((x, y, x + side, y + side))
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop
        paths.append(folder / f"photo{i:03d}.jpg")
        crop.save(paths[-1], quality=92)
    return paths


def fp32_agreement(checkpoint: Path, artifact: Path, photos: list[Path]) -> dict[str, float]:
    import torch

    import runtime
    from alexnet.checkpoint import load_checkpoint
    from runtime.preprocess import preprocess_image

    model = load_checkpoint(checkpoint).build_model().eval()
    with runtime.load(artifact) as predictor:
        batch = np.stack([preprocess_image(str(p), predictor.metadata.preprocess) for p in photos])
        got = np.concatenate([predictor.predict_logits(batch[i : i + 16]) for i in range(0, len(batch), 16)])
    with torch.inference_mode():
        ref = model(torch.from_numpy(batch)).numpy()
    rel = np.abs(got - ref).max(1) / np.abs(ref).max(1)
    return {"max_rel_diff": float(rel.max()), "top1_same": int((got.argmax(1) == ref.argmax(1)).sum())}


@group()
def main() -> None:
    """Export agreement with PyTorch (check) and the full-size model it is measured on (train-1000)."""


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument(
    "fmt",
    metavar="[FORMAT]",
    default="openvino",
    type=click.Choice([f.name for f in formats.FORMATS.values() if f.in_all and f.gated_int8]),  # fp32 and int8
)
def check(checkpoint: Path, fmt: str) -> None:
    """Export CHECKPOINT as FORMAT (default openvino) fp32 and int8; print the agreement, gate and sizes as JSON."""
    import runtime
    from export import export_artifact
    from runtime.formats import artifact_bytes

    with tempfile.TemporaryDirectory(prefix="format-agreement-") as tmp:
        folder = Path(tmp)
        say = lambda line: click.echo(line, err=True)  # noqa: E731 (stdout carries the JSON)
        fp32 = export_artifact(checkpoint, fmt, folder, echo=say)
        int8 = export_artifact(checkpoint, fmt, folder, precision="int8", tag="int8", echo=say)
        (folder / "photos").mkdir()
        result = {"fp32": fp32_agreement(checkpoint, fp32, photo_crops(folder / "photos")), "photos": PHOTOS}
        with runtime.load(int8) as predictor:
            result["int8_gate"] = (predictor.metadata.quantization or {}).get("gate")
        result["fp32_bytes"], result["int8_bytes"] = artifact_bytes(fp32), artifact_bytes(int8)
    click.echo(json.dumps(result, indent=1))


@main.command(name="train-1000")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def train_1000(output: Path) -> None:
    """Train the 1000-class torchvision variant on the 8 synthetic shapes at 224 px (12 epochs); save it as OUTPUT."""
    import torch

    from alexnet.checkpoint import Checkpoint, save_checkpoint
    from alexnet.data import load_data
    from alexnet.model import AlexNet, AlexNetConfig

    epochs = 12
    torch.manual_seed(0)
    data = load_data("synthetic", image_size=224, seed=0, synthetic_train_per_class=150, synthetic_val_per_class=50)
    config = AlexNetConfig(variant="torchvision", num_classes=1000)
    model = AlexNet(config)
    loader = torch.utils.data.DataLoader(data.train, batch_size=32, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    for epoch in range(epochs):
        model.train()
        for x, y in loader:  # x: (32, 3, 224, 224), y: (32,) class indices 0..7
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        click.echo(f"epoch {epoch + 1}/{epochs}", err=True)
    names = list(data.class_names) + [f"unused{i}" for i in range(1000 - len(data.class_names))]
    training = {"epoch": epochs, "args": {"data": "synthetic", "seed": 0, "synthetic_val_per_class": 50}}
    save_checkpoint(Checkpoint(config, model.state_dict(), names, data.preprocess, training), output)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
