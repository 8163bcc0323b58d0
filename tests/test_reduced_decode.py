"""Reduced decoding (issue 29): a large JPEG decoded at the size it needs, the exact path kept bit for bit."""

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from runtime.decode import ImageLoadError
from runtime.preprocess import PreprocessSpec, center_crop, load_image, normalize, preprocess_image, resize_shorter_side
from runtime.reduced_decode import REDUCE_BOUND, load_reduced, reduction

pytestmark = pytest.mark.runtime

EXACT = PreprocessSpec(decode="exact")
# The README's bound ("Camera photos", python -m benchmarks.decode_quality compare): the largest input
# change, in 8-bit levels of 255, and the mean one (measured: at most 5 and 0.38 on these photographs).
MAX_DX_LEVELS = 8.0
MEAN_DX_LEVELS = 0.5


def photo(size, *, index=0, exif_orientation=None, quality=90, mode="RGB"):
    """One of scikit-learn's photographs resized to `size`, as JPEG bytes."""
    datasets = pytest.importorskip("sklearn.datasets", reason="the photographs ship with scikit-learn (dev extra)")
    load_sample_images = datasets.load_sample_images

    image = Image.fromarray(load_sample_images().images[index]).resize(size, Image.Resampling.BICUBIC).convert(mode)
    out = io.BytesIO()
    extra = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        extra["exif"] = exif
    image.save(out, "JPEG", quality=quality, **extra)
    return out.getvalue()


def todays_pipeline(source, spec):
    """preprocess_image before issue 29: decode all, resize the whole image, crop, normalize."""
    image = resize_shorter_side(load_image(source), spec.resize, spec.interpolation)
    return normalize(center_crop(image, spec.crop), spec)


def to_levels(a, b, spec):
    return np.abs(a - b) * np.asarray(spec.std, np.float32)[:, None, None] * 255


@pytest.mark.parametrize(
    "size",
    [(500, 375), (4032, 3024), (3024, 4032), (333, 250), (31, 900)],
    ids=["photo", "12mp", "portrait", "small", "strip"],
)
def test_exact_mode_is_todays_preprocessing_bit_for_bit(tmp_path, size):
    path = tmp_path / "p.jpg"
    path.write_bytes(photo(size))
    for spec in (EXACT, dataclasses.replace(PreprocessSpec.for_image_size(32), decode="exact")):
        np.testing.assert_array_equal(preprocess_image(path, spec), todays_pipeline(path, spec))


def test_the_default_is_reduced_and_the_mode_is_not_stored_with_the_model():
    assert PreprocessSpec().decode == "reduced"
    assert "decode" not in EXACT.to_dict()
    assert PreprocessSpec.from_dict({**EXACT.to_dict(), "decode": "exact"}).decode == "reduced"  # not read from files
    with pytest.raises(Exception, match="unknown decode mode 'fast'"):
        PreprocessSpec(decode="fast")


@pytest.mark.parametrize(
    "width,height,min_side,scale",
    [
        (4032, 3024, 384, 4),
        (4032, 3024, 378, 8),
        (4032, 3024, 379, 4),
        (500, 375, 384, 1),
        (1024, 768, 384, 2),
        (100, 50, 8, 4),
    ],
)
def test_the_reduction_keeps_the_shorter_side_at_least_min_side(width, height, min_side, scale):
    assert reduction(width, height, min_side) == scale
    assert scale == 1 or -(-min(width, height) // scale) >= min_side


def test_a_12_megapixel_jpeg_is_decoded_at_a_quarter_and_upright():
    data = photo((4032, 3024), exif_orientation=6)  # displayed rotated: a portrait photo
    reduced = load_reduced(data, int(REDUCE_BOUND * 256))
    assert reduced.scale == 4 and reduced.image.size == (756, 1008) and reduced.full_size == (3024, 4032)
    exact = load_image(data).resize((756, 1008), Image.Resampling.BOX)
    assert np.abs(np.asarray(reduced.image, np.int16) - np.asarray(exact, np.int16)).mean() < 3  # the same picture


def test_greyscale_and_cmyk_jpegs_are_reduced_too():
    for mode in ("L", "CMYK"):
        data = photo((2048, 1536), mode=mode)
        reduced = load_reduced(data, 384)
        assert reduced.scale == 4 and reduced.image.mode == "RGB" and reduced.image.size == (512, 384), mode
        levels = to_levels(preprocess_image(data), preprocess_image(data, EXACT), EXACT)
        assert levels.mean() < MEAN_DX_LEVELS, mode


def test_a_photo_without_reduction_differs_from_exact_only_by_rounding():
    data = photo((500, 375))  # 375 < 2 x 256: decoded whole, then cropped before resizing
    levels = to_levels(preprocess_image(data), preprocess_image(data, EXACT), EXACT)
    assert levels.max() <= 1.01 and (levels > 0.5).mean() < 0.01


@pytest.mark.parametrize("size", [(1024, 768), (1600, 1200), (2016, 1512), (3024, 4032)])
@pytest.mark.parametrize("index", [0, 1], ids=["china", "flower"])
def test_reduced_inputs_stay_within_the_published_bound_on_photographs(size, index):
    data = photo(size, index=index)
    levels = to_levels(preprocess_image(data), preprocess_image(data, EXACT), EXACT)
    assert levels.max() <= MAX_DX_LEVELS and levels.mean() <= MEAN_DX_LEVELS


def test_a_large_png_is_reduced_by_blocks_not_decoded_smaller():
    out = io.BytesIO()
    Image.open(io.BytesIO(photo((2000, 1500)))).save(out, "PNG")
    data = out.getvalue()
    assert load_reduced(data, 384).scale == 1
    levels = to_levels(preprocess_image(data), preprocess_image(data, EXACT), EXACT)
    assert levels.mean() < MEAN_DX_LEVELS


def test_broken_and_hostile_files_fail_with_one_line_in_both_modes(tmp_path):
    data = photo((1024, 768))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    (tmp_path / "dir.jpg").mkdir()
    for name in ("cut.jpg", "junk.jpg", "dir.jpg", "missing.jpg"):
        for spec in (PreprocessSpec(), EXACT):
            with pytest.raises(ImageLoadError) as info:
                preprocess_image(tmp_path / name, spec)
            assert name in str(info.value) and "\n" not in str(info.value), (name, spec.decode)


def test_a_pil_image_and_bytes_give_the_same_input_as_the_file(tmp_path):
    data = photo((1200, 900))
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(preprocess_image(data), preprocess_image(path))
    decoded = Image.open(path)
    np.testing.assert_allclose(preprocess_image(decoded, EXACT), preprocess_image(path, EXACT))
