import re

import pytest
import torch

from alexnet.model import AlexNet, AlexNetConfig, InputTooSmallError, build_alexnet, count_parameters
from alexnet.summary import summarize

# torchvision.models.alexnet's state_dict, written out so the test needs no torchvision.
TORCHVISION_SHAPES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


@pytest.mark.parametrize(
    "variant, classes, expected",
    [("torchvision", 1000, 61_100_840), ("paper", 1000, 60_965_224), ("cifar", 10, 58_322_314)],
)
def test_parameter_counts(variant, classes, expected):
    model = build_alexnet(variant=variant, num_classes=classes)
    assert count_parameters(model) == expected
    assert summarize(model).total_parameters == expected


def test_torchvision_layout_keys_and_shapes():
    state = build_alexnet().state_dict()
    assert list(state) == list(TORCHVISION_SHAPES)
    assert {k: tuple(v.shape) for k, v in state.items()} == TORCHVISION_SHAPES


def test_torchvision_weights_load_strict():
    weights = {k: torch.randn(shape) for k, shape in TORCHVISION_SHAPES.items()}
    model = build_alexnet()
    model.load_state_dict(weights, strict=True)
    assert torch.equal(model.features[0].weight, weights["features.0.weight"])


def test_paper_variant_is_the_published_network():
    features = build_alexnet(variant="paper").features
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    lrns = [m for m in features if isinstance(m, torch.nn.LocalResponseNorm)]
    assert len(lrns) == 2 and all((n.size, n.beta, n.k) == (5, 0.75, 2.0) for n in lrns)
    assert summarize(build_alexnet(variant="paper")).rows[0].output_shape == (96, 55, 55)  # 227 -> 55


@pytest.mark.parametrize("variant", ["torchvision", "paper", "cifar"])
@pytest.mark.parametrize("size", [32, 63, 67, 101, 224, 227])
def test_forward_shapes_at_any_size_at_or_above_minimum(variant, size):
    model = build_alexnet(variant=variant, num_classes=7).eval()
    x = torch.randn(2, 3, size, size)
    if size < model.min_image_size:
        with pytest.raises(InputTooSmallError, match=f"at least {model.min_image_size}x{model.min_image_size}"):
            model(x)
    else:
        with torch.no_grad():
            assert model(x).shape == (2, 7)


def test_non_square_input():
    model = build_alexnet(variant="cifar", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 75)).shape == (1, 3)


@pytest.mark.parametrize("variant, minimum", [("torchvision", 63), ("paper", 67), ("cifar", 27)])
def test_minimum_size_is_exact(variant, minimum):
    model = build_alexnet(variant=variant, num_classes=2).eval()
    assert model.min_image_size == minimum
    with torch.no_grad():
        model(torch.randn(1, 3, minimum, minimum))
    with pytest.raises(InputTooSmallError, match=f"'{variant}' needs inputs of at least {minimum}x{minimum}"):
        model(torch.randn(1, 3, minimum - 1, minimum - 1))


def test_config_validation_and_round_trip():
    config = AlexNetConfig(variant="cifar", num_classes=10, dropout=0.3)
    assert AlexNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="variant must be one of torchvision, paper, cifar, got 'vgg'"):
        AlexNetConfig(variant="vgg")
    with pytest.raises(ValueError, match="num_classes"):
        AlexNetConfig(num_classes=0)
    with pytest.raises(ValueError, match="unknown model_config keys: 'depth'"):
        AlexNetConfig.from_dict({"variant": "paper", "depth": 3})


# --- issue 26, item 5: every config field is bounded and typed before any layer is built -----------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_classes", 1e9, "must be an integer from 1 to 100,000, got 1000000000.0"),
        ("num_classes", 10**9, "must be an integer from 1 to 100,000, got 1000000000"),
        ("num_classes", 100_001, "got 100001"),
        ("num_classes", -1, "got -1"),
        ("num_classes", True, "got True"),
        ("num_classes", "10", "got '10'"),
        ("num_classes", 10.0, "got 10.0"),
        ("variant", "evil", "must be one of torchvision, paper, cifar, got 'evil'"),
        ("variant", ["cifar"], "got ['cifar']"),
        ("dropout", 2.0, "must be a number in [0, 1), got 2.0"),
        ("dropout", float("nan"), "got nan"),
        ("dropout", "0.5", "got '0.5'"),
        ("dropout", False, "got False"),
        ("width_divisor", 3, "must be one of (1, 2, 4, 8, 16), got 3"),
    ],
)
def test_config_fields_are_typed_and_bounded(field, value, message):
    from alexnet.model import ConfigError
    from runtime.errors import DeployError

    with pytest.raises(ConfigError, match=f"^model_config\\.{field} .*{re.escape(message)}$") as caught:
        AlexNetConfig.from_dict({"variant": "cifar", field: value})
    assert isinstance(caught.value, DeployError) and isinstance(caught.value, ValueError)


def test_config_bounds_reuse_the_artifacts_class_limit_and_normalize_numpy_scalars():
    import numpy as np

    from runtime.metadata import MAX_CLASSES

    assert AlexNetConfig(num_classes=MAX_CLASSES, width_divisor=16).num_classes == MAX_CLASSES
    config = AlexNetConfig(num_classes=np.int64(7), dropout=np.float32(0.25), width_divisor=np.int32(4))
    assert config == AlexNetConfig(num_classes=7, dropout=0.25, width_divisor=4)
    assert [type(v) for v in config.to_dict().values()] == [str, int, float, int]
    with pytest.raises(ValueError, match="^model_config must be a dict, got \\[1, 2\\]$"):
        AlexNetConfig.from_dict([1, 2])
    hostile = {"x" * 5000: 1, 7: 2, "variant": "cifar"}
    with pytest.raises(ValueError, match=r"^unknown model_config keys: 'xxx.{33}\.\.\., 7$"):
        AlexNetConfig.from_dict(hostile)


def test_summary_macs_of_known_layers():
    rows = {r.name: r for r in summarize(build_alexnet(), 224).rows}
    assert rows["features.0"].output_shape == (64, 55, 55)
    assert rows["features.0"].macs == 64 * 55 * 55 * 3 * 11 * 11
    assert rows["classifier.1"].macs == 9216 * 4096
    assert rows["flatten"].output_shape == (9216,)
    assert summarize(build_alexnet(), 224).total_macs == 714_188_480


def test_builder_is_keyword_only():
    with pytest.raises(TypeError):
        build_alexnet("paper")  # type: ignore[misc]
    assert isinstance(build_alexnet(variant="paper"), AlexNet)


@pytest.mark.parametrize("variant", ["torchvision", "paper", "cifar"])
def test_width_divisor_keeps_the_layer_structure(variant):
    """The tests' small models: every layer of the full-size network, each 1/16 as wide."""
    full, small = (build_alexnet(variant=variant, num_classes=7, width_divisor=w) for w in (1, 16))
    assert list(small.state_dict()) == list(full.state_dict())
    for (name, big), (_, little) in zip(full.named_modules(), small.named_modules()):
        if isinstance(big, torch.nn.Conv2d):
            assert (little.kernel_size, little.stride, little.padding, little.groups) == (
                big.kernel_size,
                big.stride,
                big.padding,
                big.groups,
            ), name
            assert little.out_channels * 16 == big.out_channels, name
    assert small.classifier[6].in_features * 16 == 4096 and small.classifier[6].out_features == 7
    assert small.min_image_size == full.min_image_size
    assert count_parameters(small) < count_parameters(full) / 200
    size = small.min_image_size
    assert small(torch.zeros(2, 3, size, size)).shape == (2, 7)


def test_width_divisor_in_the_config():
    assert "width_divisor" not in AlexNetConfig().to_dict()  # full-size checkpoints keep their schema
    config = AlexNetConfig(variant="cifar", width_divisor=8)
    assert config.to_dict()["width_divisor"] == 8 and AlexNetConfig.from_dict(config.to_dict()) == config
    for bad in (3, 0, 32, True, 2.0):
        with pytest.raises(ValueError, match="width_divisor"):
            AlexNetConfig(width_divisor=bad)
