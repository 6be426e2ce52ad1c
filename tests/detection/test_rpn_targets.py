"""rpn_targets against torchvision's RegionProposalNetwork.assign_targets_to_anchors + box_coder.encode."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from lectures_code.detection.anchors import AnchorGenerator
from lectures_code.detection.rpn_targets import rpn_targets


def tiny_rpn(fg=0.7, bg=0.3):
    return RegionProposalNetwork(
        TVAnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),)), RPNHead(1, 6),
        fg_iou_thresh=fg, bg_iou_thresh=bg, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": 100, "testing": 100}, post_nms_top_n={"training": 50, "testing": 50},
        nms_thresh=0.7,
    )


def reference(rpn, anchors, gt_boxes):
    labels, matched = rpn.assign_targets_to_anchors([anchors], [{"boxes": gt_boxes}])
    return labels[0], rpn.box_coder.encode(matched, [anchors])[0]


def random_gt(n, g, dtype, device, image=128):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * image * 0.8
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 60 + 4
    return torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fg, bg", [(0.7, 0.3), (0.5, 0.4)])
@pytest.mark.parametrize("seed", range(6))
def test_matches_torchvision(device, dtype, fg, bg, seed):
    g = torch.Generator().manual_seed(seed)
    anchors = AnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),))((128, 128), [(16, 16)], dtype=dtype, device=device)
    gt = random_gt(int(torch.randint(1, 8, (1,), generator=g)), g, dtype, device)
    ref_labels, ref_targets = reference(tiny_rpn(fg, bg), anchors, gt)
    labels, targets = rpn_targets(anchors, gt, fg, bg)
    assert labels.dtype == torch.float32 and targets.dtype == dtype and targets.shape == anchors.shape
    assert bool((labels == 1).any()) and bool((labels == 0).any())  # every GT gets >= 1 anchor
    torch.testing.assert_close(labels, ref_labels, rtol=0, atol=0)
    torch.testing.assert_close(targets, ref_targets, rtol=0, atol=0)


def test_gt_equal_to_an_anchor(device):
    anchors = AnchorGenerator(((32,),), ((1.0,),))((64, 64), [(4, 4)], device=device)
    gt = anchors[5:6].clone()
    labels, targets = rpn_targets(anchors, gt)
    ref_labels, ref_targets = reference(tiny_rpn(), anchors, gt)
    torch.testing.assert_close(labels, ref_labels, rtol=0, atol=0)
    torch.testing.assert_close(targets, ref_targets, rtol=0, atol=0)
    assert labels[5] == 1 and torch.equal(targets[5], torch.zeros(4, device=device))


def test_no_ground_truth(device):
    anchors = AnchorGenerator(((32,),), ((0.5, 1.0),))((64, 64), [(4, 4)], device=device)
    gt = torch.zeros(0, 4, device=device)
    labels, targets = rpn_targets(anchors, gt)
    ref_labels, ref_targets = reference(tiny_rpn(), anchors, gt)
    assert bool((labels == 0).all())
    torch.testing.assert_close(labels, ref_labels, rtol=0, atol=0)
    torch.testing.assert_close(targets, ref_targets, rtol=0, atol=0)  # includes the -inf of log(0)


def test_bad_input():
    with pytest.raises(ValueError):
        rpn_targets(torch.zeros(5, 3), torch.zeros(1, 4))
    with pytest.raises(TypeError):
        rpn_targets(torch.zeros(5, 4), torch.zeros(1, 4, dtype=torch.int64))
