"""The torchvision twins of benchmarks/torchvision_detectors.py are built with our models' settings.

Each test builds a twin on a tiny batch of DigitCanvases and checks one setting against our model
(anchors, parameters of the shared parts, RoI Align output, input normalization, target assignment), or
runs one training step and one eval pass. The strongest checks load our shipped weights into torchvision's
model: Faster R-CNN must then give our detections, FCOS our classification and centerness losses.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from lectures_code import registry
from lectures_code.data.digit_canvases import CanvasDetectionSet, DigitCanvases
from lectures_code.detection import faster_rcnn as ours_faster_rcnn
from lectures_code.detection import fcos as ours_fcos
from lectures_code.detection.fcos_targets import fcos_points

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "torchvision_detectors.py"
_spec = importlib.util.spec_from_file_location("torchvision_detectors", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def batch():
    """Two training canvases as the benchmark feeds them: float [2, 3, 128, 128] in [0, 1], digit labels."""
    batch = CanvasDetectionSet("train", 2, seed=0).collate(torch.arange(2), torch.device("cpu"))
    return batch["images"], batch["targets"]


@pytest.fixture(scope="module")
def test_images():
    dataset = DigitCanvases("test", size=3, seed=0)
    return [dataset[i][0][None] for i in range(3)]


def _to(device, images, targets):
    return images.to(device), [{k: v.to(device) for k, v in t.items()} for t in targets]


# ---------------------------------------------------------------------------------------------
# Faster R-CNN


def test_faster_rcnn_twin_shares_our_settings(batch):
    images, _ = batch
    ours, twin = bench.faster_rcnn_pair().build_ours(0), bench.torchvision_faster_rcnn(seed=0)
    counts = bench.shared_parameter_counts("faster_rcnn", ours, twin)
    for part in ("backbone", "rpn_head", "box_head_fc"):
        assert counts[part][0] == counts[part][1], part
    assert counts["box_predictor"][1] - counts["box_predictor"][0] == 256 * 4 + 4  # the background's deltas
    # Same seed, same constructor order: the backbone and RPN head start from the same weights.
    for a, b in zip(ours.backbone.state_dict().values(), twin.backbone.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(ours.rpn_head.conv.weight, twin.rpn.head.conv[0][0].weight)

    twin.eval()
    normalized, _ = twin.transform(list(images))
    assert normalized.image_sizes == [(128, 128)] * 2
    torch.testing.assert_close(normalized.tensors, images - 0.5, rtol=0, atol=1e-6)  # ours: backbone(images - 0.5)

    features = ours.backbone(images - 0.5)  # [2, 128, 16, 16]
    tv_anchors = twin.rpn.anchor_generator(ImageList(images, [(128, 128)] * 2), [features])
    our_anchors = ours.anchor_generator((128, 128), [features.shape[-2:]])
    assert all(torch.equal(a, our_anchors) for a in tv_anchors)

    rpn, heads = twin.rpn, twin.roi_heads
    assert (rpn._pre_nms_top_n, rpn._post_nms_top_n) == (dict(training=600, testing=300),
                                                         dict(training=300, testing=100))
    assert (rpn.nms_thresh, rpn.proposal_matcher.high_threshold, rpn.proposal_matcher.low_threshold) == (0.7, 0.7, 0.3)
    assert (rpn.fg_bg_sampler.batch_size_per_image, rpn.fg_bg_sampler.positive_fraction) == (256, 0.5)
    assert (heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction) == (128, 0.25)
    assert heads.box_coder.weights == ours_faster_rcnn.BOX_WEIGHTS
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.05, 0.5, 100)

    proposals = [torch.tensor([[8.0, 16.0, 40.0, 72.0], [60.0, 4.0, 100.0, 30.0]])] * 2
    pooled = heads.box_roi_pool({"0": features}, proposals, [(128, 128)] * 2)
    assert pooled.shape == (4, 128, 7, 7)
    assert heads.box_roi_pool.scales == [1 / 8] and heads.box_roi_pool.sampling_ratio == 2
    torch.testing.assert_close(pooled, bench.ours_faster_rcnn.roi_align(features, proposals, 7, 1 / 8, 2))


def test_faster_rcnn_twin_with_our_weights_gives_our_detections(test_images):
    ours = registry.load_pretrained("faster-rcnn")
    twin = bench.TorchvisionTwin(bench.torchvision_faster_rcnn(ours.config()), "faster_rcnn", label_offset=1)
    twin.detector.load_state_dict(bench.faster_rcnn_weights_for_torchvision(ours))
    twin.eval()
    pair = bench.faster_rcnn_pair()
    with torch.no_grad():
        for image in test_images:
            expected, actual = pair.ours_detect(ours, image), pair.torchvision_detect(twin, image)
            assert len(expected["boxes"]) > 0
            torch.testing.assert_close(actual["boxes"], expected["boxes"], rtol=0, atol=1e-4)
            torch.testing.assert_close(actual["scores"], expected["scores"], rtol=0, atol=1e-5)
            assert torch.equal(actual["labels"], expected["labels"])


# ---------------------------------------------------------------------------------------------
# FCOS


def test_fcos_twin_shares_our_settings(batch):
    images, _ = batch
    ours, twin = bench.fcos_pair().build_ours(0), bench.torchvision_fcos(seed=0)
    counts = bench.shared_parameter_counts("fcos", ours, twin)
    assert counts["backbone"][0] == counts["backbone"][1] and counts["fpn"][0] == counts["fpn"][1]
    assert counts["head"][0] - counts["head"][1] == len(ours_fcos.STRIDES)  # our per-level scales only
    assert [m.num_groups for m in twin.head.modules() if isinstance(m, torch.nn.GroupNorm)] == [16] * 4

    features = list(twin.backbone(images).values())
    assert [f.shape[-2:] for f in features] == [f.shape[-2:] for f in ours.features(images)]
    anchors = twin.anchor_generator(ImageList(images, [(128, 128)] * 2), features)[0]
    points, strides, _ = fcos_points([f.shape[-2:] for f in features], ours_fcos.STRIDES)
    torch.testing.assert_close((anchors[:, :2] + anchors[:, 2:]) / 2, points)
    # torchvision's rule: scale range (4 a, 8 a) and radius r * a for anchor size a = s / 2.
    sizes = anchors[:, 2] - anchors[:, 0]
    torch.testing.assert_close(sizes, strides / 2)
    assert twin.center_sampling_radius * sizes[0] == ours_fcos.CENTER_SAMPLING_RADIUS * strides[0]
    for (low, high), size in zip(ours_fcos.SCALE_RANGES[1:-1], (sizes.unique()[1:-1])):
        assert (4 * size, 8 * size) == (low, high)
    assert (twin.score_thresh, twin.nms_thresh, twin.topk_candidates, twin.detections_per_img) == (0.05, 0.6, 1000, 100)
    normalized, _ = twin.transform(list(images))
    torch.testing.assert_close(normalized.tensors, images, rtol=0, atol=0)  # ours: raw [0, 1] images


def test_fcos_twin_with_our_weights_assigns_our_targets(batch):
    images, targets = batch
    ours = registry.load_pretrained("fcos").train()
    twin = bench.torchvision_fcos(ours.config())
    missing, unexpected = twin.load_state_dict(bench.fcos_weights_for_torchvision(ours), strict=False)
    assert missing == [] and unexpected == []
    twin.train()
    with torch.no_grad():
        expected = ours(images, targets)
        actual = twin(list(images), targets)
    # Same logits and same point-to-box assignment give the same classification and centerness losses.
    for name in ("classification", "bbox_ctrness"):
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# One training step and one eval pass of every twin


def _pairs():
    pairs = [pytest.param("faster_rcnn", id="faster_rcnn"), pytest.param("fcos", id="fcos")]
    has_retinanet = importlib.util.find_spec("lectures_code.detection.retinanet") is not None
    pairs.append(pytest.param("retinanet", id="retinanet",
                              marks=pytest.mark.skipif(not has_retinanet, reason="no retinanet.py yet")))
    return pairs


@pytest.mark.parametrize("key", _pairs())
def test_one_training_step_and_eval_pass(key, batch, device):
    pair = {"faster_rcnn": bench.faster_rcnn_pair, "fcos": bench.fcos_pair, "retinanet": bench.retinanet_pair}[key]()
    images, targets = _to(device, *batch)
    recipe = bench.Recipe(num_train_images=2, epochs=1, lr=2e-3, batch_size=2)
    ours, twin = pair.build_ours(0).to(device).train(), pair.build_twin(0).to(device).train()
    if key == "retinanet":
        counts = bench.shared_parameter_counts(key, ours, twin)
        assert counts["backbone"][0] == counts["backbone"][1] and counts["fpn"][0] == counts["fpn"][1]
        detector = twin.detector
        anchors = detector.anchor_generator(ImageList(images, [(128, 128)] * 2),
                                            list(detector.backbone(images).values()))
        assert torch.equal(anchors[0], ours.head_outputs(images)["anchors"])
    losses = {}
    for name, losses_fn, model in (("ours", pair.ours_losses, ours), ("torchvision", pair.torchvision_losses, twin)):
        optimizer, scheduler = bench.make_optimizer(model, recipe, steps_per_epoch=1)
        before = [p.detach().clone() for p in model.parameters()]
        losses[name] = bench.train_step(losses_fn, model, optimizer, scheduler, images, targets)
        assert all(math.isfinite(v) for v in losses[name].values()), losses[name]
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert set(losses["ours"]) == set(losses["torchvision"])  # the same loss terms, same names
    twin.eval()
    with torch.no_grad():
        result = pair.torchvision_detect(twin, images[:1])
    assert set(result) == {"boxes", "scores", "labels"} and result["boxes"].shape[1:] == (4,)
    assert ((result["labels"] >= 0) & (result["labels"] <= 9)).all()
    assert (result["boxes"] >= 0).all() and (result["boxes"] <= 128).all()


@pytest.mark.parametrize("key", ["faster_rcnn", "fcos"])
def test_the_twins_train_through_our_loop(key, tmp_path):
    pair = {"faster_rcnn": bench.faster_rcnn_pair, "fcos": bench.fcos_pair}[key]()
    recipe = bench.Recipe(num_train_images=4, epochs=2, lr=2e-3, batch_size=2)
    data = CanvasDetectionSet("train", 4, seed=0)
    twin, training = bench.train_torchvision(pair, recipe, 0, data, tmp_path / "twin.pt")
    assert training["steps"] == 4 and not twin.training
    assert torch.load(tmp_path / "twin.pt", weights_only=True)["epoch"] == 2
    assert all(math.isfinite(v) for v in training["final_loss"].values())
