import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from alexnet.augment import TrainTransform, random_crop_with_padding, random_resized_crop
from alexnet.cli.data import main as data_cli
from alexnet.data import DataError, load_data, load_eval_split
from alexnet.synthetic import SYNTHETIC_CLASSES, render_synthetic, write_synthetic_imagefolder
from runtime.preprocess import PreprocessSpec

SMALL = dict(synthetic_train_per_class=3, synthetic_val_per_class=2)


def test_synthetic_is_deterministic_by_seed_and_split():
    a, label_a = render_synthetic(5, split="train", image_size=40, seed=1)
    b, label_b = render_synthetic(5, split="train", image_size=40, seed=1)
    assert label_a == label_b and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(render_synthetic(5, split="train", image_size=40, seed=2)[0]))
    assert not np.array_equal(np.asarray(a), np.asarray(render_synthetic(5, split="val", image_size=40, seed=1)[0]))


@pytest.mark.parametrize("size", [32, 64, 100])
def test_synthetic_any_size_every_class(size):
    labels = set()
    for index in range(len(SYNTHETIC_CLASSES)):
        image, label = render_synthetic(index, split="val", image_size=size)
        assert image.size == (size, size) and image.mode == "RGB"
        labels.add(label)
    assert labels == set(range(len(SYNTHETIC_CLASSES)))


def test_synthetic_bundle_shapes_and_eval_split_matches_training_val():
    bundle = load_data("synthetic", image_size=48, seed=3, **SMALL)
    assert bundle.class_names == list(SYNTHETIC_CLASSES) and bundle.preprocess.crop == 48
    assert len(bundle.train) == 3 * len(SYNTHETIC_CLASSES) and len(bundle.val) == 2 * len(SYNTHETIC_CLASSES)
    x, y = bundle.train[0]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and isinstance(y, int)
    val, names = load_eval_split("synthetic", preprocess=bundle.preprocess, seed=3, synthetic_val_per_class=2)
    assert names == bundle.class_names
    assert all(torch.equal(val[i][0], bundle.val[i][0]) and val[i][1] == bundle.val[i][1] for i in range(len(val)))


def test_training_augmentation_follows_torch_seed():
    bundle = load_data("synthetic", image_size=32, **SMALL)
    torch.manual_seed(0)
    first = bundle.train[4][0]
    torch.manual_seed(0)
    assert torch.equal(first, bundle.train[4][0])
    assert not torch.equal(first, bundle.train[4][0])  # the stream moves on


def test_augmentations_shapes():
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (120, 80), (10, 200, 30))
    assert random_resized_crop(image, 64, rng).size == (64, 64)
    assert random_crop_with_padding(Image.new("RGB", (32, 32)), 32, rng).size == (32, 32)
    out = TrainTransform(PreprocessSpec(resize=32, crop=32), kind="padded")(image, rng)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32


def write_folder(root, layout):
    for split in (["train", "val"] if layout == "split" else [""]):
        for name in ("ants", "bees"):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (70, 60), (i * 40, 100, 0 if name == "ants" else 255)).save(folder / f"{i}.png")


@pytest.mark.parametrize("layout", ["split", "flat"])
def test_imagefolder_layouts(tmp_path, layout):
    write_folder(tmp_path, layout)
    bundle = load_data(str(tmp_path), image_size=64, seed=0)
    assert bundle.class_names == ["ants", "bees"] and bundle.preprocess == PreprocessSpec.for_image_size(64)
    assert bundle.val[0][0].shape == (3, 64, 64)
    if layout == "flat":  # a seeded 80/20 split per class, disjoint
        assert len(bundle.train) == 8 and len(bundle.val) == 2
        assert not set(bundle.train.sources) & set(bundle.val.sources)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "missing"))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_data(str(tmp_path / "empty"))
    write_folder(tmp_path / "odd", "split")
    (tmp_path / "odd" / "val" / "bees").rename(tmp_path / "odd" / "val" / "wasps")
    with pytest.raises(DataError, match="only in train: bees; only in val: wasps"):
        load_data(str(tmp_path / "odd"))


def fake_cifar(root, n=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}
        with open(root / name, "wb") as handle:
            pickle.dump(batch, handle)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)
    return root


def test_cifar10_reads_official_layout(tmp_path):
    root = fake_cifar(tmp_path / "cifar")
    bundle = load_data(f"cifar10:{root}")
    assert len(bundle.train) == 20 and len(bundle.val) == 4 and bundle.class_names[3] == "c3"
    assert bundle.preprocess.crop == 32 and bundle.val[1][1] == 1
    with open(root / "test_batch", "rb") as handle:
        first = pickle.load(handle)[b"data"][0]
    # channel planes R, G, B: pixel (0, 1) red is data[1], green data[1024 + 1]
    assert (bundle.val.pixels[0, 0, 1, 0], bundle.val.pixels[0, 0, 1, 1]) == (first[1], first[1025])


def test_cifar10_missing_files_are_listed(tmp_path):
    root = fake_cifar(tmp_path / "cifar")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_data(f"cifar10:{root}")
    with pytest.raises(DataError, match="does not exist; expected files: data_batch_1"):
        load_data(f"cifar10:{tmp_path / 'nowhere'}")


def test_cifar10_refuses_foreign_pickles(tmp_path):
    root = fake_cifar(tmp_path / "cifar")
    with open(root / "test_batch", "wb") as handle:
        pickle.dump({b"data": Image.new("RGB", (1, 1))}, handle)
    with pytest.raises(DataError, match="refusing to load"):
        load_data(f"cifar10:{root}")


def test_stl10_reads_column_major_binaries(tmp_path):
    root = tmp_path / "stl"
    root.mkdir()
    images = np.zeros((3, 96, 96, 3), np.uint8)  # (N, y, x, c)
    images[:, 10, 20, 0] = 255  # a red pixel at row 10, column 20
    for prefix in ("train", "test"):
        images.transpose(0, 3, 2, 1).tofile(root / f"{prefix}_X.bin")  # stored (N, c, x, y)
        np.array([1, 2, 10], np.uint8).tofile(root / f"{prefix}_y.bin")
    (root / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)))
    bundle = load_data(f"stl10:{root}")
    assert bundle.val.labels == [0, 1, 9] and bundle.class_names[9] == "k9"
    assert bundle.val.pixels[0, 10, 20, 0] == 255 and bundle.val.pixels[0, 20, 10, 0] == 0
    (root / "test_y.bin").unlink()
    with pytest.raises(DataError, match="missing test_y.bin"):
        load_data(f"stl10:{root}")


def test_write_synthetic_imagefolder_and_reload(tmp_path):
    counts = write_synthetic_imagefolder(tmp_path, per_class=2, val_per_class=1, image_size=40)
    assert counts == {"train": 16, "val": 8}
    assert not list(tmp_path.rglob(".*.tmp"))
    bundle = load_data(str(tmp_path), image_size=40)
    assert bundle.class_names == sorted(SYNTHETIC_CLASSES) and len(bundle.val) == 8


def test_cli_synthetic_and_inspect(tmp_path):
    runner = CliRunner()
    result = runner.invoke(data_cli, ["synthetic", "--out", str(tmp_path / "shapes"), "--per-class", "2", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    assert "wrote 16 train and 8 val images of 8 classes (32x32)" in result.output
    result = runner.invoke(data_cli, ["inspect", str(tmp_path / "shapes")])
    assert result.exit_code == 0 and "train: 16 images (2-2 per class)" in result.output


def test_cli_errors(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(data_cli, ["inspect", f"cifar10:{tmp_path}"])
    assert missing.exit_code == 1 and "missing data_batch_1" in missing.output
    assert runner.invoke(data_cli, ["synthetic", "--out", str(tmp_path)]).exit_code == 2  # --per-class required
    (tmp_path / "file").write_text("x")
    clash = runner.invoke(data_cli, ["synthetic", "--out", str(tmp_path / "file"), "--per-class", "1"])
    assert clash.exit_code == 2
