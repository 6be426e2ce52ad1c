"""Fast R-CNN: RoI features vs torchvision, losses vs torchvision and by hand, one backbone pass per image,
inference format, bad input, training, the shipped checkpoint and its AP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import clip_boxes_to_image, remove_small_boxes
from torchvision.ops import roi_align as tv_roi_align
from torchvision.ops import roi_pool as tv_roi_pool

from lectures_code.data.digit_canvases import render_canvases
from lectures_code.detection.fast_rcnn import (
    FastRCNN,
    fast_rcnn_losses,
    usable_proposals,
)
from lectures_code.detection.faster_rcnn import box_head_targets, faster_rcnn_losses
from lectures_code.detection.rcnn import proposals_for


@pytest.fixture
def one_thread():
    """Small training steps run faster on one thread than on two cores shared with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("proposals")


@pytest.fixture(scope="module")
def canvases(cache_dir):
    """4 training canvases: uint8 images, targets and their Selective Search proposals."""
    images, targets = render_canvases("train", 4, seed=0)
    proposals = [proposals_for(images[i].float() / 255, "train", i, cache_dir=cache_dir) for i in range(4)]
    return images, targets, proposals


def _batch(canvases, device, n=2):
    images, targets, proposals = canvases
    return (images[:n].to(device).float() / 255, [p.to(device) for p in proposals[:n]],
            [{k: v.to(device) for k, v in t.items()} for t in targets[:n]])


def random_boxes(generator: torch.Generator, n: int, size: float = 128.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size * 0.9 - 4
    wh = torch.rand(n, 2, generator=generator) * size * 0.5 + 1
    return torch.cat([xy, xy + wh], dim=1)


# ---------------------------------------------------------------------------------------------
# Proposals -> RoI features


@pytest.mark.parametrize("seed", range(4))
def test_usable_proposals_match_torchvision_clip_and_remove_small(seed):
    boxes = random_boxes(torch.Generator().manual_seed(seed), 200, 150.0)
    boxes[:5, 2:] = boxes[:5, :2] + torch.tensor([1.99, 5.0])  # just too narrow
    boxes[5:10, 2:] = boxes[5:10, :2] + 2.0  # exactly 2 px: kept
    ours = usable_proposals(boxes.double(), (96, 128))
    clipped = clip_boxes_to_image(boxes.double(), (96, 128))  # oracle
    expected = clipped[remove_small_boxes(clipped, 2.0)]
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected.float())


@pytest.mark.parametrize("roi_op", ["roi_align", "roi_pool"])
@pytest.mark.parametrize("seed", range(3))
def test_roi_features_match_torchvision(roi_op, seed, device):
    g = torch.Generator().manual_seed(seed)
    model = FastRCNN(channels=16, roi_op=roi_op).to(device)
    features = torch.randn(2, 16, 12, 16, generator=g).to(device)  # a 96x128 image at stride 8
    boxes = [random_boxes(g, 30).to(device), random_boxes(g, 7).to(device)]
    ours = model.roi_features(features, boxes)
    if roi_op == "roi_align":
        expected = tv_roi_align(features, boxes, 7, 1 / 8, 2, aligned=False)  # oracle
    else:
        expected = tv_roi_pool(features, boxes, 7, 1 / 8)
    assert ours.shape == (37, 16, 7, 7) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_eval_forward_runs_backbone_once_and_pools_the_proposals(canvases, device):
    torch.manual_seed(0)
    model = FastRCNN().to(device).eval()
    images, proposals, _ = _batch(canvases, device)
    calls, head_inputs = [], []
    model.backbone.register_forward_hook(lambda module, args, output: calls.append(output))
    model.box_head.register_forward_hook(lambda module, args, output: head_inputs.append(args[0]))
    with torch.no_grad():
        model(images, proposals)
        assert len(calls) == 1 and len(head_inputs) == 1  # one backbone pass for the whole batch of regions
        kept = [usable_proposals(p, (128, 128)) for p in proposals]
        expected = tv_roi_align(model.backbone(images - 0.5), kept, 7, 1 / 8, 2, aligned=False)  # oracle
    assert sum(len(p) for p in kept) > 50
    torch.testing.assert_close(head_inputs[0], expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Losses


@pytest.mark.parametrize("seed", range(4))
def test_losses_match_torchvision_and_faster_rcnn(seed, device):
    g = torch.Generator().manual_seed(seed)
    num, classes = 40, 10
    class_logits = torch.randn(num, classes + 1, generator=g).to(device)
    box_deltas = torch.randn(num, classes, 4, generator=g).to(device)
    labels = torch.randint(0, classes + 1, (num,), generator=g).to(device)
    if seed == 0:
        labels[:] = 0  # no positive: the box loss is 0, not NaN
    box_targets = torch.randn(num, 4, generator=g).to(device)
    losses = fast_rcnn_losses(class_logits, box_deltas, labels, box_targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    # torchvision's box head predicts a (background) box for class 0 too; it is never trained.
    with_background = torch.cat([torch.zeros(num, 1, 4, device=device), box_deltas], dim=1).reshape(num, -1)
    ref_cls, ref_box = fastrcnn_loss(class_logits, with_background, [labels], [box_targets])  # oracle
    torch.testing.assert_close(losses["loss_classifier"], ref_cls)
    torch.testing.assert_close(losses["loss_box_reg"], ref_box)
    rpn = (torch.randn(8, device=device), torch.randn(8, 4, device=device), torch.ones(8, device=device),
           torch.randn(8, 4, device=device))
    faster = faster_rcnn_losses(*rpn, class_logits, box_deltas, labels, box_targets)
    for name in losses:
        torch.testing.assert_close(losses[name], faster[name])
    with pytest.raises(ValueError):
        fast_rcnn_losses(class_logits, box_deltas[:, :5], labels, box_targets)


def test_train_losses_equal_an_independent_computation(canvases):
    model = FastRCNN().train()
    images, proposals, targets = _batch(canvases, "cpu", n=3)
    torch.manual_seed(7)
    losses = model(images, proposals, targets)
    # The same sampling (box_head_targets draws from torch's global generator), then written out by hand.
    torch.manual_seed(7)
    parts = [box_head_targets(usable_proposals(p, (128, 128)), t["boxes"], t["labels"], 128, 0.25)
             for p, t in zip(proposals, targets)]
    features = model.backbone(images - 0.5)
    pooled = tv_roi_align(features, [part[0] for part in parts], 7, 1 / 8, 2, aligned=False)  # oracle
    class_logits, box_deltas = model.box_head(pooled)
    labels = torch.cat([part[1] for part in parts])
    box_targets = torch.cat([part[2] for part in parts])
    assert 0 < int((labels > 0).sum()) and len(labels) <= 3 * 128  # fewer when an image has < 128 regions
    ref_cls = F.cross_entropy(class_logits, labels)
    fg = torch.where(labels > 0)[0]
    ref_box = F.smooth_l1_loss(box_deltas[fg, labels[fg] - 1], box_targets[fg], beta=1 / 9,
                               reduction="sum") / len(labels)
    torch.testing.assert_close(losses["loss_classifier"], ref_cls)
    torch.testing.assert_close(losses["loss_box_reg"], ref_box)
    (losses["loss_classifier"] + losses["loss_box_reg"]).backward()
    assert all(p.grad is not None for p in model.backbone.parameters())  # the backbone is trained too


# ---------------------------------------------------------------------------------------------
# Inference format and bad input


def test_eval_output_format(canvases, device):
    torch.manual_seed(0)
    model = FastRCNN().to(device).eval()
    images, proposals, _ = _batch(canvases, device)
    proposals[1] = proposals[1][:0]  # an image without proposals gives no detections
    with torch.no_grad():
        detections = model(images, proposals)
    assert isinstance(detections, list) and len(detections) == 2
    for result in detections:
        n = len(result["scores"])
        assert result["boxes"].shape == (n, 4) and result["boxes"].dtype == torch.float32
        assert result["scores"].dtype == torch.float32 and result["labels"].dtype == torch.int64
        assert result["boxes"].device.type == device
        assert bool((result["labels"] >= 0).all() and (result["labels"] <= 9).all())
        assert bool((result["scores"][:-1] >= result["scores"][1:]).all())
        assert bool((result["boxes"] >= 0).all() and (result["boxes"] <= 128).all())
    assert len(detections[0]["scores"]) > 0 and len(detections[1]["scores"]) == 0


def test_without_proposals_eval_runs_selective_search(canvases):
    torch.manual_seed(0)
    model = FastRCNN().eval()
    images, _, _ = _batch(canvases, "cpu", n=1)
    with torch.no_grad():
        own = model(images)[0]
        given = model(images, [proposals_for(images[0])])[0]
    for key in own:
        assert torch.equal(own[key], given[key])


def test_bad_input_raises(canvases):
    model = FastRCNN().train()
    images, proposals, targets = _batch(canvases, "cpu")
    with pytest.raises(ValueError, match="target"):
        model(images, proposals)
    with pytest.raises(ValueError, match="proposals"):
        model(images, None, targets)
    with pytest.raises(ValueError, match="proposals"):
        model(images, proposals[:1], targets)
    with pytest.raises(ValueError):
        model(images, [p[:, :3] for p in proposals], targets)
    with pytest.raises(TypeError):
        model(images, [p.long() for p in proposals], targets)
    with pytest.raises(ValueError):
        model(images[:, :2], proposals, targets)
    model.eval()
    with pytest.raises(TypeError):
        model(images.to(torch.uint8), proposals)
    with pytest.raises(ValueError):
        model(images[..., :100], proposals)
    with pytest.raises(ValueError, match="roi_op"):
        FastRCNN(roi_op="roi_warp")
