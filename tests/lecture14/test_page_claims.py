"""Claims of the Lecture 14 page about code behaviour (ours and torchvision's), each checked by running it.

- RoI Align's ``aligned=True`` shifts the box by half a FEATURE CELL (0.5 / spatial_scale image pixels);
- our two-stage detectors sample 128 regions per image for the box head, torchvision's default is 512;
- our Faster R-CNN trains RPN and box head jointly but ignores the gradient through the proposals;
- our FCOS halves the ICCV 2019 paper's scale ranges, so a digit of at most 64 px never reaches P5;
  center sampling (1.5 strides) and the GIoU loss are torchvision's, not the ICCV 2019 paper's;
- our FPN smooths every merged level with a 3x3 convolution, as torchvision's FeaturePyramidNetwork.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
import torchvision
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN

from lectures_code import results
from lectures_code.detection import backbones, fcos
from lectures_code.detection.fast_rcnn import FastRCNN
from lectures_code.detection.faster_rcnn import FasterRCNN
from lectures_code.ops.roi_align import roi_align

RECORDS = results.package_path("lecture14_detectors")
FCOS_PAPER_M = (0, 64, 128, 256, 512, math.inf)  # Tian et al. 2019, m2..m7: level P_i regresses (m_{i-1}, m_i]


@pytest.mark.parametrize("spatial_scale", [1 / 8, 1 / 16, 0.5])
def test_aligned_shifts_by_half_a_feature_cell(device, spatial_scale):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(1, 3, 20, 20, generator=g, dtype=torch.float64).to(device)
    # boxes at least 2 cells wide so that aligned=False's ">= 1 cell" clamp plays no part
    boxes = torch.tensor([[0, 10.0, 12.0, 60.0, 50.0], [0, 3.0, 7.0, 33.0, 70.0]], dtype=torch.float64)
    boxes[:, 1:] = boxes[:, 1:] * (1 / 8) / spatial_scale  # same boxes in cells, whatever the scale
    boxes = boxes.to(device)
    half_cell = boxes.clone()
    half_cell[:, 1:] -= 0.5 / spatial_scale  # half a cell, in image pixels
    for op in (roi_align, torchvision.ops.roi_align):
        aligned = op(features, boxes, 4, spatial_scale, 2, True)
        torch.testing.assert_close(aligned, op(features, half_cell, 4, spatial_scale, 2, False), rtol=0, atol=1e-12)
        half_pixel = boxes.clone()
        half_pixel[:, 1:] -= 0.5  # NOT the same unless the stride is 1
        assert not torch.allclose(aligned, op(features, half_pixel, 4, spatial_scale, 2, False))


def test_box_head_samples_128_regions_where_torchvision_samples_512():
    for model in (FasterRCNN, FastRCNN):
        assert inspect.signature(model).parameters["box_batch_size_per_image"].default == 128
    assert inspect.signature(TorchvisionFasterRCNN).parameters["box_batch_size_per_image"].default == 512
    records = json.loads(RECORDS.read_text())
    for key in ("fast_rcnn", "faster_rcnn", "faster_rcnn_fpn"):
        assert records[key]["settings"]["box_batch_size_per_image"] == 128


def test_our_fcos_scale_ranges_are_half_the_papers():
    assert len(fcos.SCALE_RANGES) == 3 and fcos.STRIDES == (8, 16, 32)
    for level, (low, high) in enumerate(fcos.SCALE_RANGES):
        assert low == FCOS_PAPER_M[level] / 2
        if level < len(fcos.SCALE_RANGES) - 1:
            assert high == FCOS_PAPER_M[level + 1] / 2
        else:
            assert high == math.inf  # the last level is open: we have no P6, P7


def test_a_64_px_digit_never_reaches_p5():
    model = fcos.FCOS()
    with torch.no_grad():
        outputs = model.head_outputs(torch.zeros(1, 3, 128, 128))
    sizes = outputs["num_points_per_level"]
    for box in ([32.0, 32.0, 96.0, 96.0], [0.0, 0.0, 64.0, 64.0], [60.0, 10.0, 124.0, 74.0]):
        matched, targets, _ = fcos.assign_targets(outputs, torch.tensor([box]))
        per_level = torch.split(matched, list(sizes))
        assert (per_level[2] < 0).all(), "P5 got a positive point"
        assert (matched >= 0).any()
        assert targets[matched >= 0].amax(dim=1).max() < fcos.SCALE_RANGES[2][0]


def test_center_sampling_and_giou_are_torchvisions_choices():
    assert inspect.signature(TorchvisionFCOS).parameters["center_sampling_radius"].default == 1.5
    source = inspect.getsource(torchvision.models.detection.fcos.FCOSHead.compute_loss)
    assert "generalized_box_iou_loss" in source
    assert fcos.CENTER_SAMPLING_RADIUS == 1.5


def test_fpn_smooths_each_level_with_a_3x3_convolution():
    pyramid = backbones.FeaturePyramid((8, 12, 16), out_channels=6)
    assert [tuple(conv.kernel_size) for conv in pyramid.lateral] == [(1, 1)] * 3
    assert [tuple(conv.kernel_size) for conv in pyramid.smooth] == [(3, 3)] * 3
    reference = torchvision.ops.FeaturePyramidNetwork([8, 12, 16], 6)
    assert [tuple(block[0].kernel_size) for block in reference.layer_blocks] == [(3, 3)] * 3


def test_our_faster_rcnn_uses_approximate_joint_training():
    """The page: the second stage's losses do not reach the RPN through the proposal coordinates
    (Ren et al.'s "approximate joint training"); they still train the shared backbone."""
    from lectures_code.data.digit_canvases import DigitCanvases

    torch.manual_seed(0)
    model = FasterRCNN().train()
    dataset = DigitCanvases("train", size=2, seed=0)
    images = torch.stack([dataset[i][0] for i in range(2)])
    targets = [dataset[i][1] for i in range(2)]
    losses = model(images, targets)
    (losses["loss_classifier"] + losses["loss_box_reg"]).backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.rpn_head.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.backbone.parameters())
    model.zero_grad()
    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    assert all(p.grad is not None and p.grad.any() for p in model.rpn_head.parameters())


def test_multiplying_by_the_reciprocal_moves_a_roi_pool_bin_edge():
    """The page's float32 example: 7 * (1/3) rounds up, 7 / 3 does not, and ceil(3 x) tells them apart."""
    seven, three = torch.tensor(7.0), torch.tensor(3.0)
    by_reciprocal = seven * torch.tensor(1 / 3, dtype=torch.float32)
    by_division = seven / three
    assert f"{by_reciprocal.item():.7f}" == "2.3333335" and f"{by_division.item():.7f}" == "2.3333333"
    assert torch.ceil(3 * by_reciprocal).item() == 8 and torch.ceil(3 * by_division).item() == 7
