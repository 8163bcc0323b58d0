"""alexnet-viz's commands that read a data set: embeddings, predictions, batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from alexnet.augment import AUGMENTATIONS
from alexnet.cli.eval import SEED_NOTE, SYNTHETIC_VAL_NOTE, eval_dataset
from alexnet.cli.viz_support import (
    MAX_IMAGES,
    check_outputs,
    model_inputs,
    output_option,
    source_names,
    subset_note,
    write_picture,
)
from alexnet.input_size import VARIANTS
from runtime.cliutil import handle_errors
from runtime.options import (
    augment_options,
    backend_option,
    batch_size_option,
    command,
    count_option,
    data_option,
    device_option,
    image_size_option,
    max_images_option,
    seed_option,
    split_option,
    synthetic_val_option,
    variant_option,
)


def eval_data_options(func: Callable) -> Callable:
    """--data --split --seed --synthetic-val-per-class --batch-size: the split alexnet-eval would read."""
    for option in (
        batch_size_option(default=64),
        synthetic_val_option(SYNTHETIC_VAL_NOTE),
        seed_option(SEED_NOTE),
        split_option(),
        data_option(required=True),
    ):
        func = option(func)
    return func


@command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@eval_data_options
@click.option("--layer", default="fc7", show_default=True, help="Layer whose activations are embedded (fc6, fc7, ...).")
@click.option("--method", type=click.Choice(["pca", "tsne"]), default="pca", show_default=True)
@max_images_option("A 2-D projection needs at least 2.", default=MAX_IMAGES)
@click.option(
    "--save", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also keep the raw embeddings (.npz)."
)
@output_option("embeddings.png")
@handle_errors
def embeddings(
    checkpoint: Path,
    data: str,
    split: str,
    seed: int,
    synthetic_val_per_class: int | None,
    batch_size: int,
    layer: str,
    method: str,
    max_images: int,
    save: Path | None,
    output: Path,
) -> None:
    """The split's embeddings at a layer (default fc7, the penultimate) projected to 2-D, by class.

    --save writes embeddings (N, F) float32, labels (N,), class_names and sources (file paths)
    in the order of the split. t-SNE needs scikit-learn (the [viz] extra).

    \b
    Examples:
      alexnet-viz embeddings runs/demo/best.pth --data synthetic -o embeddings.png --save embeddings.npz
      alexnet-viz embeddings runs/demo/best.pth --data images/ --method tsne -o tsne.png
    """
    from torch.utils.data import Subset

    from alexnet.checkpoint import load_checkpoint
    from alexnet.layers import LayerError, check_layers
    from alexnet.viz.embeddings import embeddings_figure, extract_embeddings, require_tsne
    from alexnet.viz.predictions import evenly_spaced

    if max_images < 2:
        raise click.UsageError(f"--max-images {max_images}: a 2-D projection needs at least 2 images")
    if save is not None and save.suffix.lower() != ".npz":
        raise click.UsageError(f"--save takes a .npz file name, got {save}")
    check_outputs(output, (save, "--save"))
    if method == "tsne":
        require_tsne()  # before the long part
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    try:
        check_layers(model, [layer])
    except LayerError as exc:
        raise click.UsageError(f"--layer: {exc}") from None
    dataset = eval_dataset(checkpoint, ckpt, data, split, seed, synthetic_val_per_class)
    chosen = evenly_spaced(len(dataset), max_images)
    names = source_names(dataset, data, split)
    sources = [names[i] for i in chosen]
    note = subset_note(len(dataset), max_images)
    click.echo(f"{checkpoint} on {data} {split}: {len(chosen)} images at {layer}{note}", err=True)
    vectors, labels = extract_embeddings(model, Subset(dataset, chosen), layer, batch_size=batch_size)
    points, ratio, how = _project(vectors, method, seed)
    classes = list(ckpt.class_names)
    if save is not None:
        _save_embeddings(save, vectors, labels, classes, sources)
    title = f"{checkpoint.name}: {layer} of {data} {split} ({len(chosen)} images), {how}"
    record = {
        "checkpoint": str(checkpoint),
        "data": data,
        "split": split,
        "layer": layer,
        "method": method,
        "dimensions": int(vectors.shape[1]),
        "class_names": classes,
        "explained_variance": None if ratio is None else [float(r) for r in ratio],
        "points": [
            {"source": s, "label": int(y), "x": float(p[0]), "y": float(p[1])}
            for s, y, p in zip(sources, labels, points)
        ],
    }
    write_picture(embeddings_figure(points, labels, classes, title), output, record, tight=True)


def _project(vectors: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(points (N, 2), PCA's explained variance ratio or None, how, for the title)."""
    from alexnet.viz.embeddings import pca_2d, tsne_2d

    if method == "pca":
        points, ratio = pca_2d(vectors)
        return points, ratio, f"PCA (explained variance {ratio[0]:.0%} + {ratio[1]:.0%})"
    return tsne_2d(vectors, seed=seed), None, "t-SNE"


def _save_embeddings(
    path: Path, vectors: np.ndarray, labels: np.ndarray, classes: list[str], sources: list[str]
) -> None:
    from runtime.outputs import atomic_write

    arrays = {"embeddings": vectors, "labels": labels, "class_names": np.array(classes), "sources": np.array(sources)}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to the temp name
            np.savez(handle, **arrays)

    atomic_write(path, write, what="--save")
    click.echo(f"wrote {path}: embeddings {vectors.shape[0]}x{vectors.shape[1]}", err=True)


@command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@eval_data_options
@count_option("In the grid.")
@click.option("--only-wrong", is_flag=True, help="Predict the whole split; show only misclassified images.")
@backend_option()
@device_option()
@output_option("predictions.png")
@handle_errors
def predictions(
    model: Path,
    data: str,
    split: str,
    seed: int,
    synthetic_val_per_class: int | None,
    batch_size: int,
    count: int,
    only_wrong: bool,
    backend: str,
    device: str,
    output: Path,
) -> None:
    """A grid of images with the predicted label and confidence, wrong ones in red with the true
    label. MODEL is a checkpoint or any exported artifact (.onnx and .xml, int8 included; .pt; .mlpackage).

    \b
    Examples:
      alexnet-viz predictions runs/demo/best.pth --data synthetic -o predictions.png
      alexnet-viz predictions runs/demo/best-int8.onnx --data synthetic --only-wrong -o wrong.png
    """
    import runtime
    from alexnet.viz.grid import RIGHT, WRONG, image_grid_figure
    from alexnet.viz.predictions import predict_rows
    from runtime.preprocess import denormalize

    check_outputs(output)
    with runtime.load(model, backend=backend, device=device) as predictor:
        meta = predictor.metadata
        dataset = eval_dataset(model, meta, data, split, seed, synthetic_val_per_class)
        click.echo(
            f"{model} [{predictor.backend_name} on {predictor.device}] on {data} {split}: {len(dataset)} images",
            err=True,
        )
        rows, summary = predict_rows(
            predictor.predict_logits,
            dataset,
            list(meta.class_names),
            n=count,
            only_wrong=only_wrong,
            sources=source_names(dataset, data, split),
            batch_size=batch_size,
        )
    images, _ = model_inputs(dataset, [row.index for row in rows])
    pictures = [denormalize(image, meta.preprocess) for image in images]
    shown = f"{len(rows)} of its {summary['wrong']} misclassified" if only_wrong else f"{len(rows)}"
    title = f"{model.name} on {data} {split}: {shown} of {summary['images']} images ({summary['wrong']} of {summary['evaluated']} predicted wrong)"
    fig = image_grid_figure(
        pictures, [row.caption() for row in rows], title, colours=[RIGHT if r.correct else WRONG for r in rows]
    )
    record = {
        "model": str(model),
        "data": data,
        "split": split,
        "only_wrong": only_wrong,
        **summary,
        "rows": [r.to_dict() for r in rows],
    }
    write_picture(fig, output, record)


@command()
@data_option(required=True)
@click.option("--train", "train_split", is_flag=True, help="The training split with its augmentation (default: val).")
@count_option("In the batch.")
@variant_option(VARIANTS, "Its input size is the default --image-size, as in alexnet-train.", default="torchvision")
@image_size_option("As alexnet-train's.")
@augment_options(AUGMENTATIONS, "As alexnet-train's.")
@seed_option("Which images, and their augmentation.")
@output_option("batch.png")
@handle_errors
def batch(
    data: str,
    train_split: bool,
    count: int,
    variant: str,
    image_size: int | None,
    augment: str | None,
    flip: bool,
    seed: int,
    output: Path,
) -> None:
    """A batch as the model sees it: images drawn as a shuffled loader would, preprocessed (and
    augmented with --train) exactly as in training, then denormalized back to viewable RGB.

    \b
    Examples:
      alexnet-viz batch --data synthetic --train -o batch.png
      alexnet-viz batch --data cifar10:~/data/cifar-10-batches-py --train -o cifar-batch.png
      alexnet-viz batch --data ~/data/digits --variant cifar --train --augment light --no-flip -o digits.png
    """
    import torch

    from alexnet.data import load_data, size_notice
    from alexnet.viz.grid import image_grid_figure
    from runtime.preprocess import denormalize

    check_outputs(output)
    bundle = load_data(data, image_size=image_size, seed=seed, variant=variant, augment=augment, flip=flip)
    notice = size_notice(bundle, data)
    if notice:
        click.echo(notice, err=True)
    dataset = bundle.train if train_split else bundle.val
    split = "train" if train_split else "val"
    chosen = np.random.default_rng(seed).permutation(len(dataset))[:count].tolist()
    with torch.random.fork_rng(devices=[]):  # the augmentation draws from torch's RNG: seeded here, restored after
        torch.manual_seed(seed)
        images, labels = model_inputs(dataset, chosen)
    pictures = [denormalize(image, bundle.preprocess) for image in images]
    captions = [bundle.class_names[label][:20] for label in labels]
    augmented = f"augment {bundle.augment}{'' if bundle.flip else ', no flip'}" if train_split else "eval preprocessing"
    title = f"{bundle.name} {split}: {len(chosen)} images, {augmented}, {images.shape[-1]}x{images.shape[-2]}"
    sources = source_names(dataset, data, split)
    record = {
        "data": bundle.name,
        "split": split,
        "preprocess": bundle.preprocess.to_dict(),
        **({"augment": bundle.augment, "flip": bundle.flip} if train_split else {}),
        "images": [{"index": i, "source": sources[i], "label": bundle.class_names[y]} for i, y in zip(chosen, labels)],
    }
    write_picture(image_grid_figure(pictures, captions, title), output, record)
