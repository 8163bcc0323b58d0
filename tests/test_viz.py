"""alexnet-viz: every command on the tiny cifar model and a small folder writes a PNG of the size
its layout says and the data behind it; the numbers drawn are the ones computed elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import CLASSES, SMALL
from click.testing import CliRunner
from PIL import Image

from alexnet.cli.viz import main
from alexnet.layers import activation_modules, capture, layer_names
from alexnet.model import VARIANTS, build_alexnet
from alexnet.summary import summarize
from alexnet.viz.architecture import MACS_TITLE, PARAMETERS_TITLE, architecture_figure, architecture_size
from alexnet.viz.features import features_size
from alexnet.viz.filters import filters_figure, filters_size, normalize_kernels
from alexnet.viz.grid import grid_size


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """DIR/{train,val}/<class>/*.png for builders.CLASSES (the cifar checkpoint's), 2 and 3 per class."""
    root = tmp_path_factory.mktemp("viz-folder")
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", 3)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / split / name / f"{i}.png")
    return root


@pytest.mark.parametrize("variant", VARIANTS)
def test_layer_names_are_the_papers_for_every_variant(variant):
    model = build_alexnet(variant=variant, num_classes=7)
    names = layer_names(model)
    convs = [names[p] for p, m in model.named_modules() if type(m).__name__ == "Conv2d"]
    linears = [names[p] for p, m in model.named_modules() if type(m).__name__ == "Linear"]
    assert convs == ["conv1", "conv2", "conv3", "conv4", "conv5"] and linears == ["fc6", "fc7", "fc8"]
    activations = activation_modules(model)
    assert list(activations)[:1] == ["conv1"] and list(activations)[-3:] == ["fc6", "fc7", "fc8"]
    with capture(model.eval(), ["conv1", "fc7", "fc8"]) as store:
        import torch

        logits = model(torch.zeros(2, 3, 72, 72))
    assert store["fc7"].shape == (2, 4096) and torch.equal(store["fc8"], logits)
    assert store["conv1"].min() >= 0  # after its ReLU
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone


def test_architecture_numbers_are_the_layer_summarys(tmp_path):
    result = invoke("architecture", "--variant", "cifar", "--num-classes", 5, "-o", tmp_path / "arch.png")
    assert result.exit_code == 0, result.output
    model = build_alexnet(variant="cifar", num_classes=5)
    summary = summarize(model)
    assert png_size(tmp_path / "arch.png") == architecture_size(summary)
    data = json.loads((tmp_path / "arch.json").read_text())
    assert {k: v for k, v in data.items() if k != "layers"} == {
        k: v for k, v in summary.to_dict().items() if k != "layers"
    }
    assert [{k: v for k, v in row.items() if k != "label"} for row in data["layers"]] == summary.to_dict()["layers"]
    assert data["layers"][0]["label"] == "conv1" and data["layers"][-1]["label"] == "fc8"
    # the bars drawn are the summary's numbers, row for row
    fig = architecture_figure(summary, layer_names(model))
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert [p.get_width() for p in axes[PARAMETERS_TITLE].patches] == [r.parameters for r in summary.rows]
    assert [p.get_width() for p in axes[MACS_TITLE].patches] == [r.macs for r in summary.rows]
    texts = " ".join(t.get_text() for t in fig.texts + [t for ax in fig.axes for t in ax.texts])
    assert f"{summary.total_parameters:,} parameters" in texts and f"{summary.rows[-1].parameters:,}" in texts


def test_architecture_of_a_checkpoint_refuses_a_variant(cifar_checkpoint, tmp_path):
    result = invoke("architecture", cifar_checkpoint, "--variant", "paper", "-o", tmp_path / "a.png")
    assert result.exit_code == 2 and "a checkpoint brings its own" in result.output
    assert not list(tmp_path.iterdir())


def test_filters_grid_normalizes_each_kernel_and_splits_the_papers_groups(cifar_checkpoint, tmp_path):
    result = invoke("filters", cifar_checkpoint, "-o", tmp_path / "conv1.png")
    assert result.exit_code == 0, result.output
    kernels = 96 // SMALL  # the cifar variant's 96 kernels (at the tests' width), one block
    assert png_size(tmp_path / "conv1.png") == filters_size(kernels, 1)
    data = json.loads((tmp_path / "conv1.json").read_text())
    assert data["shape"] == [kernels, 3, 11, 11] and data["groups"] == 1
    weight = (
        np.random.default_rng(0).standard_normal((96, 3, 11, 11)).astype(np.float32)
        * np.arange(1, 97)[:, None, None, None]
    )
    scaled = normalize_kernels(weight)
    assert scaled.shape == (96, 11, 11, 3)
    np.testing.assert_allclose(scaled.min(axis=(1, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(axis=(1, 2, 3)), 1, atol=1e-6)
    fig = filters_figure(weight, groups=2)  # the paper variant: conv2 has groups=2
    assert [ax.get_title().split(":")[1].split(",")[0].strip() for ax in fig.axes] == [
        "group 1 of 2 (48 kernels)",
        "group 2 of 2 (48 kernels)",
    ]
    assert tuple(int(v) for v in fig.get_size_inches() * fig.dpi) == filters_size(96, 2)


def test_features_show_the_input_then_each_layer(cifar_checkpoint, folder, tmp_path):
    image = folder / "val" / "star" / "0.png"
    out = tmp_path / "features.png"
    result = invoke("features", cifar_checkpoint, image, "--layers", "conv1,conv5", "--max-channels", 4, "-o", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert [layer["layer"] for layer in data["layers"]] == ["conv1", "conv5"]
    assert data["layers"][0]["shape"] == [96 // SMALL, 8, 8] and len(data["layers"][0]["channels"]) == 4
    means = data["layers"][0]["mean_activation"]
    assert means == sorted(means, reverse=True)  # the most active first
    from alexnet.viz.features import LayerMaps

    shown = [
        LayerMaps(d["layer"], tuple(d["shape"]), np.array(d["channels"]), np.zeros((len(d["channels"]), 1, 1)))
        for d in data["layers"]
    ]
    assert png_size(out) == features_size(shown)


def test_features_bad_input_is_one_line(cifar_checkpoint, folder, tmp_path):
    image = folder / "val" / "star" / "0.png"
    unknown = invoke("features", cifar_checkpoint, image, "--layers", "conv1,fc7", "-o", tmp_path / "f.png")
    assert unknown.exit_code == 2 and "unknown layer fc7" in unknown.output and "conv1" in unknown.output
    missing = invoke("features", cifar_checkpoint, tmp_path / "nope.jpg", "-o", tmp_path / "f.png")
    assert missing.exit_code == 1 and missing.output.strip().splitlines()[-1].endswith("no such file")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_embeddings_keep_the_splits_order(cifar_checkpoint, folder, tmp_path):
    out, saved = tmp_path / "emb.png", tmp_path / "emb.npz"
    result = invoke("embeddings", cifar_checkpoint, "--data", folder, "-o", out, "--save", saved)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (1000, 800)
    with np.load(saved) as npz:
        vectors, labels, names, sources = (
            npz["embeddings"],
            npz["labels"],
            list(npz["class_names"]),
            list(npz["sources"]),
        )
    assert vectors.shape == (15, 4096 // SMALL) and vectors.dtype == np.float32
    assert names == CLASSES
    expected = sorted(folder.glob("val/*/*.png"))  # the folder's order (classes by name), labels the model's
    assert [str(p) for p in expected] == sources
    assert labels.tolist() == [CLASSES.index(p.parent.name) for p in expected]
    # the vectors are fc7's (after its ReLU) for those very images, and the plot's points their projection
    import torch

    from alexnet.checkpoint import load_checkpoint
    from runtime.preprocess import preprocess_batch

    model = load_checkpoint(cifar_checkpoint).build_model()
    with capture(model, ["fc7"]) as store, torch.inference_mode():
        model(torch.from_numpy(preprocess_batch(expected[:4], load_checkpoint(cifar_checkpoint).preprocess)))
    np.testing.assert_allclose(vectors[:4], store["fc7"].numpy(), atol=1e-5)
    points = json.loads(out.with_suffix(".json").read_text())["points"]
    assert [p["source"] for p in points] == sources and len(points) == 15


def test_embeddings_class_mismatch_and_missing_tsne_are_one_line(cifar_checkpoint, tmp_path, monkeypatch):
    import importlib.util

    other = tmp_path / "other"
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(other / name / f"{i}.png")
    result = invoke("embeddings", cifar_checkpoint, "--data", other, "-o", tmp_path / "e.png")
    assert (
        result.exit_code == 1
        and "trained on 5 classes" in result.output
        and "only in the data: cat, dog" in result.output
    )
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    result = invoke("embeddings", cifar_checkpoint, "--data", other, "--method", "tsne", "-o", tmp_path / "e.png")
    assert result.exit_code == 1 and "needs scikit-learn" in result.output and "[viz]" in result.output
    assert not (tmp_path / "e.png").exists()


def test_embeddings_tsne(cifar_checkpoint, folder, tmp_path):
    pytest.importorskip("sklearn", reason="t-SNE needs scikit-learn (the [viz] extra)")
    result = invoke("embeddings", cifar_checkpoint, "--data", folder, "--method", "tsne", "-o", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["method"] == "tsne" and len(data["points"]) == 15 and data["explained_variance"] is None


def test_predictions_only_wrong_picks_exactly_the_misclassified(cifar_onnx, folder, tmp_path):
    import runtime
    from runtime.preprocess import preprocess_batch

    paths = sorted(folder.glob("val/*/*.png"))  # the split's order
    with runtime.load(cifar_onnx) as predictor:
        logits = predictor.predict_logits(preprocess_batch(paths, predictor.metadata.preprocess))
    truth = np.array([CLASSES.index(p.parent.name) for p in paths])
    wrong = [str(p) for p, ok in zip(paths, logits.argmax(1) == truth) if not ok]
    assert 0 < len(wrong) < len(paths)  # an untrained model with one mostly-predicted class: some right
    out = tmp_path / "wrong.png"
    result = invoke("predictions", cifar_onnx, "--data", folder, "--only-wrong", "--n", 64, "-o", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert [row["source"] for row in data["rows"]] == wrong and data["wrong"] == len(wrong)
    assert all(not row["correct"] and row["predicted"] != row["true"] for row in data["rows"])
    assert png_size(out) == grid_size(len(wrong))
    everything = invoke("predictions", cifar_onnx, "--data", folder, "--n", 6, "-o", tmp_path / "all.png")
    rows = json.loads((tmp_path / "all.json").read_text())["rows"]
    assert everything.exit_code == 0 and [r["index"] for r in rows] == [0, 3, 6, 8, 11, 14]  # spread evenly
    for row in rows:
        scores = logits[row["index"]]
        assert row["predicted"] == CLASSES[int(scores.argmax())]
        assert row["confidence"] == pytest.approx(
            float(np.exp(scores - scores.max()).max() / np.exp(scores - scores.max()).sum()), abs=1e-6
        )


def test_batch_is_denormalized_and_seeded(folder, tmp_path):
    first = invoke("batch", "--data", folder, "--train", "--n", 6, "--image-size", 32, "-o", tmp_path / "a.png")
    again = invoke("batch", "--data", folder, "--train", "--n", 6, "--image-size", 32, "-o", tmp_path / "b.png")
    assert first.exit_code == again.exit_code == 0, first.output
    assert png_size(tmp_path / "a.png") == grid_size(6)
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a == b and a["split"] == "train" and len(a["images"]) == 6
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # same seed, same augmentations
    for item in a["images"]:
        assert item["source"].startswith(str(folder / "train" / item["label"]))


def test_batch_takes_the_variants_size_and_the_chosen_augmentation(folder, tmp_path):
    # No --image-size: the cifar variant's 32 px, as alexnet-train would; the augmentation is recorded.
    args = ("batch", "--data", folder, "--train", "--n", 4, "--variant", "cifar", "--augment", "paper", "--no-flip")
    result = invoke(*args, "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "p.json").read_text())
    assert (record["augment"], record["flip"], record["preprocess"]["crop"]) == ("paper", False, 32)
    assert invoke("batch", "--data", folder, "--train", "--n", 4, "-o", tmp_path / "d.png").exit_code == 0
    assert json.loads((tmp_path / "d.json").read_text())["preprocess"]["crop"] == 224  # the torchvision variant's


@pytest.mark.parametrize("output, message", [("out.jpg", "takes a .png"), ("sub", "is a directory")])
def test_bad_output_is_a_usage_error_before_any_work(tmp_path, output, message):
    (tmp_path / "sub").mkdir()
    result = invoke("architecture", "-o", tmp_path / output)
    assert result.exit_code == 2 and message in result.output


def test_palette_makes_a_smaller_png_of_the_same_size(tmp_path):
    full = invoke("architecture", "--variant", "cifar", "-o", tmp_path / "full.png")
    small = CliRunner().invoke(
        main, ["--palette", "16", "architecture", "--variant", "cifar", "-o", str(tmp_path / "p.png")]
    )
    assert full.exit_code == small.exit_code == 0, small.output
    with Image.open(tmp_path / "p.png") as reduced:
        assert reduced.mode == "P" and len(reduced.getcolors()) <= 16
        assert reduced.size == png_size(tmp_path / "full.png")
    assert (tmp_path / "p.png").stat().st_size < (tmp_path / "full.png").stat().st_size
