"""The CNNs the detectors read their features from, and the Feature Pyramid Network.

All are small (the canvases are 128x128, the digits 20-64 px) and built from one block, :func:`conv_block`
(3x3 convolution, BatchNorm, ReLU):

    small_backbone(channels)   one map, stride 8: Faster R-CNN, Fast R-CNN
    Backbone                   C3, C4, C5 at strides 8, 16, 32 (64 / 96 / 128 channels): FCOS, RetinaNet
    FeaturePyramid             [C3, C4, C5] -> [P3, P4, P5] (Lin et al., CVPR 2017)
    PyramidBackbone            small_backbone grown to C3-C5, plus a FeaturePyramid: Faster R-CNN + FPN

Images go in as float [B, 3, H, W] in [0, 1]; H and W multiples of the largest stride.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm has one) -> BatchNorm -> ReLU; ``stride`` 2 halves the map."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def small_backbone(channels: int = 128) -> nn.Sequential:
    """Images [B, 3, H, W] -> features [B, channels, H / 8, W / 8]; receptive field ~60 px (a big digit)."""
    return nn.Sequential(
        conv_block(3, 32, stride=2), conv_block(32, 32), nn.MaxPool2d(2),  # 128 -> 64 -> 32
        conv_block(32, 64), conv_block(64, 64), nn.MaxPool2d(2),  # -> 16
        conv_block(64, channels), conv_block(channels, channels),
    )


class Backbone(nn.Module):
    """Small CNN: float images [B, 3, S, S] -> [C3, C4, C5].

    C3 [B, 64, S/8, S/8], C4 [B, 96, S/16, S/16], C5 [B, 128, S/32, S/32].
    """

    channels = (64, 96, 128)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_block(3, 16, stride=2), conv_block(16, 32, stride=2), conv_block(32, 32))
        self.stage3 = nn.Sequential(conv_block(32, 64, stride=2), conv_block(64, 64))  # stride 8
        self.stage4 = nn.Sequential(conv_block(64, 96, stride=2), conv_block(96, 96))  # stride 16
        self.stage5 = nn.Sequential(conv_block(96, 128, stride=2), conv_block(128, 128))  # stride 32

    def forward(self, images: Tensor) -> list[Tensor]:
        c3 = self.stage3(self.stem(images))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        return [c3, c4, c5]


# --8<-- [start:fpn]
class FeaturePyramid(nn.Module):
    """Feature Pyramid Network (Lin et al., 2017): [C3, C4, C5] -> [P3, P4, P5], all ``out_channels``.

    Deep maps (C5) know *what* is there but are coarse; shallow maps (C3) are sharp but semantically
    weak. The top-down pathway upsamples the deeper P and adds it to a 1x1 "lateral" projection of
    the shallower C, so every level gets both; a 3x3 convolution then smooths the aliasing of the
    nearest-neighbour upsampling.
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """features: finest first, each [B, C_k, H_k, W_k] with H_k = 2 H_{k+1}. Returns [B, out, H_k, W_k] each."""
        top_down = self.lateral[-1](features[-1])  # start at the coarsest level
        outputs = [self.smooth[-1](top_down)]
        for k in range(len(features) - 2, -1, -1):
            upsampled = F.interpolate(top_down, size=features[k].shape[-2:], mode="nearest")
            top_down = self.lateral[k](features[k]) + upsampled
            outputs.insert(0, self.smooth[k](top_down))
        return outputs
# --8<-- [end:fpn]


class PyramidBackbone(nn.Module):
    """Bottom-up CNN + top-down FPN: float images [B, 3, H, W] -> [P3, P4, P5], each [B, channels, H/s, W/s].

    C3 is ``small_backbone`` of the single-level Faster R-CNN (stride 8, 128 channels); C4 (stride 16,
    192 channels) and C5 (stride 32, 256 channels) are two more pairs of 3x3 conv blocks, the first
    of each with stride 2. At 8x8 and 4x4 they cost little but see the whole canvas.
    """

    c_channels = (128, 192, 256)

    def __init__(self, channels: int = 128):
        super().__init__()
        self.stage3 = small_backbone(self.c_channels[0])
        self.stage4 = nn.Sequential(conv_block(self.c_channels[0], self.c_channels[1], stride=2),
                                    conv_block(self.c_channels[1], self.c_channels[1]))
        self.stage5 = nn.Sequential(conv_block(self.c_channels[1], self.c_channels[2], stride=2),
                                    conv_block(self.c_channels[2], self.c_channels[2]))
        self.fpn = FeaturePyramid(self.c_channels, channels)

    # --8<-- [start:fpn_features]
    def forward(self, images: Tensor) -> list[Tensor]:
        # Bottom-up: each stage halves the resolution; deeper maps are coarser but see more.
        c3 = self.stage3(images)  # [B, 128, H / 8, W / 8]
        c4 = self.stage4(c3)  # [B, 192, H / 16, W / 16]
        c5 = self.stage5(c4)  # [B, 256, H / 32, W / 32]
        # Top-down (FeaturePyramid): P5 = smooth(lateral(C5)); P4 = smooth(lateral(C4) + up2(P5's
        # pre-smoothing map)); P3 likewise. Every P has the same channels, so one RPN head reads all.
        return self.fpn([c3, c4, c5])  # [P3, P4, P5], [B, channels, H / s, W / s] each
    # --8<-- [end:fpn_features]
