import io

import numpy as np
import pytest
from PIL import Image

from runtime.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageLoadError,
    PreprocessSpec,
    center_crop,
    denormalize,
    load_image,
    normalize,
    preprocess_batch,
    preprocess_image,
    resize_shorter_side,
)

pytestmark = pytest.mark.runtime


def gradient(width=300, height=200):
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 128, np.float32),
        ],
        axis=2,
    )
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def test_default_spec_is_imagenet_eval():
    spec = PreprocessSpec()
    assert (spec.resize, spec.crop, spec.mean, spec.std, spec.interpolation) == (
        256,
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "bilinear",
    )
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert PreprocessSpec.for_image_size(224) == spec


def test_output_shape_dtype_and_values(tmp_path):
    path = tmp_path / "g.png"
    gradient().save(path)
    out = preprocess_image(path)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    # the same pipeline by hand: resize shorter side to 256 (300x200 -> 384x256), crop the centre 224
    resized = gradient().resize((384, 256), Image.Resampling.BILINEAR)
    crop = np.asarray(resized, np.float32)[16:240, 80:304] / 255.0
    expected = ((crop - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_spec_drives_sizes_and_normalization(tmp_path):
    spec = PreprocessSpec(resize=40, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="nearest")
    out = preprocess_image(Image.new("RGB", (80, 60), (255, 0, 51)), spec)
    assert out.shape == (3, 32, 32)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_resize_matches_torchvision_rule():
    assert resize_shorter_side(Image.new("RGB", (300, 200)), 256).size == (384, 256)
    assert resize_shorter_side(Image.new("RGB", (200, 333)), 256).size == (256, 426)  # int(256*333/200) = 426
    assert center_crop(Image.new("RGB", (10, 6)), 8).size == (8, 8)  # padded when smaller


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    image = (
        gradient(64, 48).convert("L").convert(mode) if mode in ("I;16", "I", "F") else gradient(64, 48).convert(mode)
    )
    suffix = {"CMYK": ".jpg", "F": ".tiff", "I": ".tiff"}.get(mode, ".png")
    path = tmp_path / f"img{suffix}"
    image.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (64, 48)
    out = preprocess_image(path, PreprocessSpec(resize=32, crop=32))
    assert out.shape == (3, 32, 32) and np.isfinite(out).all()


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    pixels = np.full((8, 8), 32768, np.uint16)  # half of full scale
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    assert load_image(path).getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    upright = load_image(path)
    assert upright.size == (20, 40)
    r, g, b = upright.getpixel((10, 5))
    assert b > 200 and r < 60  # the blue half is now on top


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an image file"), (b"hello, not an image", "not an image file")],
)
def test_non_images_raise_one_error_type_naming_the_file(tmp_path, content, message):
    path = tmp_path / "notes.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=f"{path.name}: {message}"):
        preprocess_image(path)


def test_truncated_image(tmp_path):
    buffer = io.BytesIO()
    gradient(200, 200).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg: cannot read image"):
        preprocess_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50 * 50)  # Pillow's limit, made small for the test
    with pytest.raises(ImageLoadError, match="bomb.png: refused, image too large"):
        load_image(path)


def test_batch(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        gradient(50 + i, 40).save(paths[-1])
    assert preprocess_batch(paths, PreprocessSpec(resize=36, crop=32)).shape == (3, 3, 32, 32)


def test_matches_torchvision_when_available(tmp_path):
    transforms = pytest.importorskip("torchvision.transforms", reason="torchvision is not importable here")
    path = tmp_path / "g.jpg"
    gradient(333, 250).save(path)
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )(Image.open(path).convert("RGB")).numpy()
    np.testing.assert_allclose(preprocess_image(path), reference, atol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(),
        PreprocessSpec(mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.2435, 0.2616)),
        PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1)),
    ],
    ids=["imagenet", "cifar10", "identity"],
)
def test_denormalize_inverts_normalize_exactly(spec):
    # every 8-bit value in every channel (256 x 3 ramps), then noise: what normalize gave comes back bit for bit
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (8, 256, 3))
    noise = np.random.default_rng(0).integers(0, 256, (29, 256, 3), dtype=np.uint8)
    pixels = np.ascontiguousarray(np.concatenate([ramp, noise]))
    array = normalize(Image.fromarray(pixels, "RGB"), spec)
    assert array.shape == (3, 37, 256) and array.dtype == np.float32
    back = denormalize(array, spec)
    assert back.dtype == np.uint8 and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


def test_denormalize_clips_what_no_image_holds_and_checks_its_shape():
    spec = PreprocessSpec()
    far = np.stack([np.full((2, 2), v, np.float32) for v in (-50.0, 50.0, 0.0)])
    out = denormalize(far, spec)
    assert out[..., 0].max() == 0 and out[..., 1].min() == 255
    with pytest.raises(ValueError, match="expects a \\(3, H, W\\) array"):
        denormalize(np.zeros((2, 2, 3), np.float32), spec)
