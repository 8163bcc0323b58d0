"""alexnet-viz: pictures of a model's inside, one PNG (and the JSON behind it) per command."""

from __future__ import annotations

from pathlib import Path

import click

from alexnet.cli.info import model_and_summary, model_arguments
from alexnet.cli.viz_data import batch, embeddings, predictions
from alexnet.cli.viz_support import check_outputs, output_option, write_picture
from runtime.cliutil import handle_errors
from runtime.options import group

CONV_LAYERS = "conv1,conv2,conv3,conv4,conv5"


@group()
@click.option(
    "--palette",
    type=click.IntRange(2, 256),
    default=None,
    help="Reduce every PNG to this many colours (a palette PNG: small files for docs).",
)
def main(palette: int | None) -> None:
    """Pictures of AlexNet: its architecture, conv1 filters, feature maps, embeddings,
    predictions, and a batch as the model sees it.

    Each command writes a PNG (-o) and, beside it, a .json with the numbers it drew.

    \b
    Examples:
      alexnet-viz architecture --variant paper -o arch.png
      alexnet-viz filters runs/demo/best.pth -o conv1.png
      alexnet-viz features runs/demo/best.pth cat.jpg --layers conv1,conv5 -o features.png
      alexnet-viz embeddings runs/demo/best.pth --data synthetic -o embeddings.png --save emb.npz
      alexnet-viz predictions runs/demo/best-int8.onnx --data synthetic --only-wrong -o wrong.png
      alexnet-viz batch --data synthetic --train -o batch.png
      alexnet-viz --palette 64 architecture -o docs/architecture.png   # the README's picture
    """


@main.command()
@model_arguments
@output_option("arch.png")
@handle_errors
def architecture(
    checkpoint: str | None, variant: str | None, num_classes: int | None, image_size: int | None, output: Path
) -> None:
    """The network as a diagram: one row per layer with its output shape, parameters and MACs,
    drawn to scale (alexnet-info's numbers).

    \b
    Examples:
      alexnet-viz architecture -o arch.png                     # torchvision layout, 224x224
      alexnet-viz architecture --variant paper --num-classes 10 -o paper.png
      alexnet-viz architecture runs/demo/best.pth -o arch.png  # what a checkpoint holds
    """
    from alexnet.layers import layer_names
    from alexnet.viz.architecture import architecture_figure

    check_outputs(output)
    model, summary, _ = model_and_summary(checkpoint, variant, num_classes, image_size)
    labels = layer_names(model)
    data = summary.to_dict()
    for layer in data["layers"]:
        layer["label"] = labels.get(layer["name"], layer["name"])
    write_picture(architecture_figure(summary, labels), output, data)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@output_option("conv1.png")
@handle_errors
def filters(checkpoint: str, output: Path) -> None:
    """The first convolution's kernels as an RGB grid, each scaled to its own range (the 2012
    paper's Figure 3; the paper variant in the two groups its conv2 reads).

    \b
    Example:
      alexnet-viz filters runs/demo/best.pth -o conv1.png
    """
    from torch import nn

    from alexnet.checkpoint import load_checkpoint
    from alexnet.viz.filters import filters_figure

    check_outputs(output)
    model = load_checkpoint(checkpoint).build_model()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    weight = convs[0].weight.detach().numpy()  # (C, 3, k, k)
    groups = convs[1].groups  # conv2 reads conv1's channels in this many consecutive blocks
    title = f"{Path(checkpoint).name} ({model.config.variant}) conv1"
    data = {
        "checkpoint": checkpoint,
        "variant": model.config.variant,
        "shape": list(weight.shape),
        "groups": groups,
        "kernel_min": weight.min(axis=(1, 2, 3)).round(6).tolist(),
        "kernel_max": weight.max(axis=(1, 2, 3)).round(6).tolist(),
    }
    write_picture(filters_figure(weight, groups=groups, title=title), output, data)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--layers", default=CONV_LAYERS, show_default=True, help="Comma-separated layers (conv*, pool*, norm*).")
@click.option("--max-channels", type=click.IntRange(1, 512), default=32, show_default=True, help="Channels per layer.")
@output_option("features.png")
@handle_errors
def features(checkpoint: str, image: str, layers: str, max_channels: int, output: Path) -> None:
    """Feature maps of IMAGE at each chosen layer (the most active channels), with the
    preprocessed input shown first.

    \b
    Example:
      alexnet-viz features runs/demo/best.pth images/val/star/0.png --layers conv1,conv3,conv5 -o features.png
    """
    from alexnet.checkpoint import load_checkpoint
    from alexnet.layers import LayerError, check_layers, spatial_layers
    from alexnet.viz.features import feature_maps, features_figure
    from runtime.preprocess import denormalize, preprocess_image

    check_outputs(output)
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    try:
        wanted = check_layers(
            model, [name.strip() for name in layers.split(",") if name.strip()], spatial_layers(model)
        )
    except LayerError as exc:
        raise click.UsageError(f"--layers: {exc}") from None
    array = preprocess_image(image, ckpt.preprocess)  # (3, S, S); the forward pass checks its size
    maps = feature_maps(model, array, wanted, max_channels)
    fig = features_figure(denormalize(array, ckpt.preprocess), maps, title=Path(image).name)
    data = {"checkpoint": checkpoint, "image": image, "layers": [layer.to_dict() for layer in maps]}
    write_picture(fig, output, data)


# The commands that read a data set (alexnet/cli/viz_data.py).
for command in (embeddings, predictions, batch):
    main.add_command(command)
