"""load_data / load_eval_split over every source, and the training augmentation."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from alexnet.augment import TrainTransform, random_crop_with_padding, random_resized_crop
from alexnet.data import CIFAR10_MEAN, CIFAR10_STD, DataError, load_data, load_eval_split, size_notice
from alexnet.synthetic import SYNTHETIC_CLASSES, write_synthetic_imagefolder
from runtime.errors import DeployError
from runtime.preprocess import PreprocessSpec, preprocess_image

SMALL = dict(synthetic_train_per_class=3, synthetic_val_per_class=2)


# --- synthetic ----------------------------------------------------------------------------------


def test_synthetic_bundle_shapes_and_spec():
    bundle = load_data("synthetic", image_size=48, seed=3, **SMALL)
    assert bundle.name == "synthetic" and bundle.class_names == list(SYNTHETIC_CLASSES)
    assert bundle.preprocess == PreprocessSpec(resize=48, crop=48)
    assert len(bundle.train) == 3 * len(SYNTHETIC_CLASSES) and len(bundle.val) == 2 * len(SYNTHETIC_CLASSES)
    for dataset in (bundle.train, bundle.val):
        x, y = dataset[0]
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and isinstance(y, int)
    assert load_data("synthetic", **SMALL).preprocess.crop == 64  # the default size


def test_eval_split_is_the_training_val_set():
    bundle = load_data("synthetic", image_size=48, seed=3, **SMALL)
    val, names = load_eval_split("synthetic", preprocess=bundle.preprocess, seed=3, synthetic_val_per_class=2)
    assert names == bundle.class_names and len(val) == len(bundle.val)
    assert all(torch.equal(val[i][0], bundle.val[i][0]) and val[i][1] == bundle.val[i][1] for i in range(len(val)))
    other, _ = load_eval_split("synthetic", preprocess=bundle.preprocess, seed=4, synthetic_val_per_class=2)
    assert not torch.equal(other[0][0], val[0][0])
    # The eval items are exactly runtime.preprocess's output: one eval implementation.
    assert np.array_equal(val[1][0].numpy(), preprocess_image(val.image(1), bundle.preprocess))
    with pytest.raises(DataError, match="unknown split"):
        load_eval_split("synthetic", split="test", preprocess=bundle.preprocess)


def test_bad_val_fraction():
    with pytest.raises(DataError, match="val_fraction"):
        load_data("synthetic", val_fraction=1.0, **SMALL)


# --- augmentation -------------------------------------------------------------------------------


def test_augmentation_shapes_dtypes_and_rng_determinism():
    image = Image.new("RGB", (120, 80), (10, 200, 30))
    image.paste((250, 0, 0), (10, 10, 50, 40))
    assert random_resized_crop(image, 64, np.random.default_rng(0)).size == (64, 64)
    assert random_crop_with_padding(Image.new("RGB", (32, 32)), 32, np.random.default_rng(0)).size == (32, 32)
    for augment, size in (("standard", 56), ("light", 32), ("paper", 48), ("none", 40)):
        transform = TrainTransform(PreprocessSpec(resize=size, crop=size), augment=augment)
        out = transform(image, np.random.default_rng(7))
        assert out.shape == (3, size, size) and out.dtype == np.float32
        assert np.array_equal(out, transform(image, np.random.default_rng(7)))
        assert not all(np.array_equal(out, transform(image, np.random.default_rng(s))) for s in range(8, 12))
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'; choose one of none, light, standard, paper"):
        TrainTransform(PreprocessSpec(), augment="mixup")


def test_augment_none_without_flip_is_the_eval_preprocessing():
    image = Image.new("RGB", (90, 60), (10, 200, 30))
    image.paste((250, 0, 0), (5, 5, 30, 40))  # off-centre: a flip would show
    spec = PreprocessSpec(resize=40, crop=32)
    fixed = TrainTransform(spec, augment="none", flip=False)
    for seed in range(6):
        assert np.array_equal(fixed(image, np.random.default_rng(seed)), preprocess_image(image, spec))
    flipping = TrainTransform(spec, augment="none")
    outs = [flipping(image, np.random.default_rng(seed)) for seed in range(12)]
    assert any(not np.array_equal(out, outs[0]) for out in outs)  # the flip is the only randomness left


def test_no_flip_never_mirrors():
    # A left-bright, right-dark image: every light crop without flips keeps the bright side left.
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, :16] = 255
    image, spec = Image.fromarray(pixels), PreprocessSpec(resize=32, crop=32)
    for flip, mirrored in ((False, 0), (True, None)):
        transform = TrainTransform(spec, augment="light", flip=flip)
        outs = [transform(image, np.random.default_rng(s))[0] for s in range(20)]
        left_darker = sum(out[:, :16].mean() < out[:, 16:].mean() for out in outs)
        assert left_darker == mirrored if mirrored is not None else 0 < left_darker < 20


def test_paper_augmentation_shifts_colour_along_the_principal_components():
    image, spec = Image.new("RGB", (64, 64), (120, 120, 120)), PreprocessSpec(resize=32, crop=32)
    out = TrainTransform(spec, augment="paper", flip=False)(image, np.random.default_rng(3))
    plain = preprocess_image(image, spec)
    shift = (out - plain).reshape(3, -1)
    assert np.allclose(shift, shift[:, :1], atol=1e-5)  # one RGB shift for the whole image
    assert 0 < np.abs(shift).max() < 0.5  # alpha ~ N(0, 0.1) times the eigenvalues: small


def test_default_augmentation_and_size_follow_the_data_and_variant(tmp_path):
    write_synthetic_imagefolder(tmp_path / "f", per_class=1, image_size=32, seed=0, val_per_class=1)
    cases = {  # (data, variant) -> (input size, augmentation)
        ("synthetic", "torchvision"): (64, "none"),
        ("synthetic", "cifar"): (32, "none"),
        (str(tmp_path / "f"), "cifar"): (32, "light"),
        (str(tmp_path / "f"), "torchvision"): (224, "standard"),
        (str(tmp_path / "f"), "paper"): (227, "standard"),
    }
    for (data, variant), (size, augment) in cases.items():
        bundle = load_data(data, variant=variant, **SMALL)
        assert (bundle.preprocess.crop, bundle.augment, bundle.flip) == (size, augment, True), (data, variant)
        assert bundle.train[0][0].shape == (3, size, size)
    assert load_data(str(tmp_path / "f"), variant="cifar", image_size=48).preprocess.crop == 48  # given wins


def test_notice_when_a_folders_images_are_much_smaller(tmp_path):
    write_synthetic_imagefolder(tmp_path / "f", per_class=2, image_size=32, seed=0, val_per_class=1)
    notice = size_notice(load_data(str(tmp_path / "f")), str(tmp_path / "f"))
    assert notice.startswith(f"notice: the images in {tmp_path / 'f'} are about 32x32 pixels (median of ")
    assert "much smaller than the 224x224 input in use; --variant cifar (a 32-pixel network) fits them" in notice
    assert "\n" not in notice
    assert size_notice(load_data(str(tmp_path / "f"), image_size=56), str(tmp_path / "f")) is None  # not 2x smaller
    assert size_notice(load_data("synthetic", image_size=200, **SMALL), "synthetic") is None  # rendered at 200


def test_random_resized_crop_falls_back_on_extreme_ratios():
    # A 300x4 strip: no (scale, ratio) draw fits, the centre crop fallback still gives size x size.
    assert random_resized_crop(Image.new("RGB", (300, 4)), 16, np.random.default_rng(0)).size == (16, 16)


def test_padded_crop_shifts_at_most_the_padding():
    image = Image.fromarray(np.full((32, 32, 3), 255, np.uint8))
    for seed in range(10):
        crop = np.asarray(random_crop_with_padding(image, 32, np.random.default_rng(seed)))
        white = crop.min(axis=2) == 255
        assert white.sum() >= 28 * 28  # at most 4 px of zero padding per axis comes in


def test_training_items_follow_torch_seed():
    bundle = load_data("synthetic", image_size=32, **SMALL)

    def draws(seed):  # augmentation is a coin flip per item: 16 draws tell two streams apart
        torch.manual_seed(seed)
        return torch.stack([bundle.train[4][0] for _ in range(16)])

    first = draws(0)
    assert torch.equal(first, draws(0))
    assert not torch.equal(first, draws(1))
    assert not all(torch.equal(first[0], x) for x in first[1:])  # the stream moves on


def _epoch(dataset, seed, workers):
    loader = DataLoader(
        dataset, batch_size=4, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(seed)
    )
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_with_workers_is_reproducible():
    bundle = load_data("synthetic", image_size=32, **SMALL)
    first, again, other = _epoch(bundle.train, 1, 2), _epoch(bundle.train, 1, 2), _epoch(bundle.train, 2, 2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


# --- image folders ------------------------------------------------------------------------------


def write_folder(root, layout, per_class=5):
    for split in ["train", "val"] if layout == "split" else [""]:
        for name in ("ants", "bees"):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (70, 60), (i * 40, 100, 0 if name == "ants" else 255)).save(folder / f"{i}.png")


@pytest.mark.parametrize("layout", ["split", "flat"])
def test_imagefolder_layouts(tmp_path, layout):
    write_folder(tmp_path, layout)
    bundle = load_data(str(tmp_path), image_size=64, seed=0)
    assert bundle.class_names == ["ants", "bees"] and bundle.preprocess == PreprocessSpec(
        resize=64, crop=64
    )  # small inputs: the whole image
    assert bundle.name == f"imagefolder:{tmp_path}"
    assert bundle.val[0][0].shape == (3, 64, 64) and bundle.train[0][0].shape == (3, 64, 64)
    assert sorted(set(bundle.train.labels)) == [0, 1]
    if layout == "flat":  # a seeded 80/20 split per class, disjoint, the same for load_eval_split
        assert len(bundle.train) == 8 and len(bundle.val) == 2
        assert not set(bundle.train.sources) & set(bundle.val.sources)
        val, _ = load_eval_split(str(tmp_path), preprocess=bundle.preprocess, seed=0)
        assert val.sources == bundle.val.sources
    else:
        assert len(bundle.train) == len(bundle.val) == 10
    assert load_data(str(tmp_path)).preprocess == PreprocessSpec.for_image_size(224)


def test_imagefolder_flat_split_depends_on_seed(tmp_path):
    write_folder(tmp_path, "flat", per_class=20)
    splits = {tuple(load_data(str(tmp_path), seed=seed, val_fraction=0.25).val.sources) for seed in range(4)}
    assert len(splits) > 1 and all(len(s) == 10 for s in splits)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "missing"))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_data(str(tmp_path / "empty"))
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_data(str(tmp_path / "bare"))
    write_folder(tmp_path / "odd", "split")
    (tmp_path / "odd" / "val" / "bees").rename(tmp_path / "odd" / "val" / "wasps")
    with pytest.raises(DataError, match="only in train: bees; only in val: wasps"):
        load_data(str(tmp_path / "odd"))
    write_folder(tmp_path / "half", "split")
    for path in (tmp_path / "half" / "val").rglob("*.png"):
        path.unlink()
    for folder in sorted((tmp_path / "half" / "val").rglob("*"), reverse=True):
        folder.rmdir()
    (tmp_path / "half" / "val").rmdir()
    with pytest.raises(DataError, match="has train/ but no val/"):
        load_data(str(tmp_path / "half"))


def test_errors_are_deploy_errors():
    assert issubclass(DataError, DeployError) and issubclass(DataError, ValueError)


def test_written_synthetic_folder_reloads(tmp_path):
    write_synthetic_imagefolder(tmp_path, per_class=2, val_per_class=1, image_size=40)
    bundle = load_data(str(tmp_path), image_size=40)
    assert bundle.class_names == sorted(SYNTHETIC_CLASSES) and len(bundle.train) == 16 and len(bundle.val) == 8


# --- CIFAR-10 -----------------------------------------------------------------------------------


def fake_cifar(root, n=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(n)],
            b"batch_label": name.encode(),
            b"filenames": [f"{i}.png".encode() for i in range(n)],
        }
        with open(root / name, "wb") as handle:
            pickle.dump(batch, handle)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, handle)
    return root


def test_cifar10_reads_official_layout(tmp_path):
    root = fake_cifar(tmp_path / "cifar")
    bundle = load_data(f"cifar10:{root}")
    assert len(bundle.train) == 20 and len(bundle.val) == 4 and bundle.class_names[3] == "c3"
    assert bundle.preprocess == PreprocessSpec(resize=32, crop=32, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert [bundle.val[i][1] for i in range(4)] == [0, 1, 2, 3]
    assert bundle.val[0][0].shape == bundle.train[0][0].shape == (3, 32, 32)
    with open(root / "test_batch", "rb") as handle:
        first = pickle.load(handle)[b"data"][0]
    # channel planes R, G, B: pixel (row 0, col 1) red is data[1], green data[1024 + 1]
    assert (bundle.val.pixels[0, 0, 1, 0], bundle.val.pixels[0, 0, 1, 1]) == (first[1], first[1025])
    val, names = load_eval_split(f"cifar10:{root}", preprocess=bundle.preprocess)
    assert names == bundle.class_names and torch.equal(val[2][0], bundle.val[2][0])


def test_cifar10_missing_files_are_listed(tmp_path):
    root = fake_cifar(tmp_path / "cifar")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_data(f"cifar10:{root}")
    with pytest.raises(DataError, match="does not exist; expected files: data_batch_1, .*test_batch, batches.meta"):
        load_data(f"cifar10:{tmp_path / 'nowhere'}")


def test_cifar10_refuses_foreign_or_malformed_pickles(tmp_path):
    root = fake_cifar(tmp_path / "cifar")
    with open(root / "test_batch", "wb") as handle:
        pickle.dump({b"data": Image.new("RGB", (1, 1))}, handle)
    with pytest.raises(DataError, match="refusing to load"):
        load_data(f"cifar10:{root}")
    with open(root / "test_batch", "wb") as handle:
        pickle.dump({b"pixels": np.zeros((1, 3072), np.uint8)}, handle)
    with pytest.raises(DataError, match="no 'data'/'labels'"):
        load_data(f"cifar10:{root}")
    with open(root / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(DataError, match=r"expected data \(N, 3072\)"):
        load_data(f"cifar10:{root}")


# --- STL-10 -------------------------------------------------------------------------------------


def fake_stl(root, labels=(1, 2, 10)):
    root.mkdir()
    images = np.zeros((len(labels), 96, 96, 3), np.uint8)  # (N, y, x, c)
    images[:, 10, 20, 0] = 255  # a red pixel at row 10, column 20
    for prefix in ("train", "test"):
        images.transpose(0, 3, 2, 1).tofile(root / f"{prefix}_X.bin")  # stored (N, c, x, y): column-major
        np.array(labels, np.uint8).tofile(root / f"{prefix}_y.bin")
    (root / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)) + "\n")
    return root


def test_stl10_reads_column_major_binaries(tmp_path):
    root = fake_stl(tmp_path / "stl")
    bundle = load_data(f"stl10:{root}")
    assert bundle.val.labels == [0, 1, 9] and bundle.class_names[9] == "k9" and len(bundle.class_names) == 10
    assert bundle.val.pixels[0, 10, 20, 0] == 255 and bundle.val.pixels[0, 20, 10, 0] == 0
    assert bundle.preprocess == PreprocessSpec.for_image_size(96)
    assert bundle.val[0][0].shape == bundle.train[0][0].shape == (3, 96, 96)


def test_stl10_errors(tmp_path):
    root = fake_stl(tmp_path / "stl")
    (root / "test_y.bin").unlink()
    with pytest.raises(DataError, match="missing test_y.bin"):
        load_data(f"stl10:{root}")
    bad = fake_stl(tmp_path / "bad", labels=(0, 3, 4))  # labels on disk are 1-based
    with pytest.raises(DataError, match="labels outside 1..10"):
        load_data(f"stl10:{bad}")
    short = fake_stl(tmp_path / "short")
    np.array([1, 2], np.uint8).tofile(short / "train_y.bin")
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_data(f"stl10:{short}")
