"""Single-object detector: multitask loss by hand, shapes, a tiny training run, the shipped checkpoint."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou as tv_box_iou

from lectures_code import checkpoints
from lectures_code.data.digit_canvases import DigitCanvases
from lectures_code.detection.single_object import (
    SingleObjectDetector,
    evaluate_single_object,
    predict_single_object,
    render_split,
    single_object_loss,
    train_single_object,
)

# Measured on the first 100 test canvases with the shipped checkpoint: accuracy 0.89, IoU > 0.5 for 0.97
# (0.904 and 0.95 on 500, docs/data/lecture13_detectors.json); the test asks for a little less.
MIN_ACCURACY_FIRST_100 = 0.84
MIN_IOU_ABOVE_HALF_FIRST_100 = 0.92


@pytest.mark.parametrize("box_weight", [0.0, 1.0, 10.0])
def test_loss_matches_hand_computation(box_weight, device):
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], device=device)
    labels = torch.tensor([0, 1], device=device)
    pred = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], device=device)
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.6], [0.2, 0.1, 0.8, 1.0]], device=device)
    total, cls, reg = single_object_loss(logits, pred, labels, boxes, box_weight=box_weight)

    # cross-entropy = mean over images of log(sum exp) - logit of the true class
    ce0 = math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)) - 2.0
    ce1 = math.log(2 + math.exp(3.0)) - 0.0
    # L2 = mean over images of the squared distance between the 4 numbers
    l2_0 = 0.0**2 + 0.1**2 + 0.1**2 + 0.0**2
    l2_1 = 0.2**2 + 0.1**2 + 0.2**2 + 0.0**2
    assert cls.item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    assert reg.item() == pytest.approx((l2_0 + l2_1) / 2, rel=1e-5)
    assert total.item() == pytest.approx((ce0 + ce1) / 2 + box_weight * (l2_0 + l2_1) / 2, rel=1e-5)


def test_loss_rejects_bad_shapes():
    with pytest.raises(ValueError):
        single_object_loss(torch.zeros(2, 10), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError):
        single_object_loss(torch.zeros(2, 10), torch.zeros(2, 4), torch.zeros(3, dtype=torch.long), torch.zeros(2, 4))


def test_output_shapes(device):
    model = SingleObjectDetector().to(device)
    logits, box = model(torch.rand(3, 3, 128, 128, device=device))
    assert logits.shape == (3, 10) and box.shape == (3, 4)
    out = predict_single_object(model, torch.rand(2, 3, 128, 128, device=device))
    assert out["boxes"].shape == (2, 4) and out["labels"].shape == (2,) and out["scores"].shape == (2,)
    assert bool(((out["scores"] > 0) & (out["scores"] <= 1)).all())
    with pytest.raises(ValueError):
        model(torch.rand(3, 3, 64, 64, device=device))
    with pytest.raises(ValueError):
        SingleObjectDetector(image_size=100)


def test_render_split_matches_dataset():
    data = render_split("val", 3)
    dataset = DigitCanvases("val", size=3, max_objects=1)
    for i in range(3):
        image, target = dataset[i]
        assert torch.equal(data["boxes"][i], target["boxes"][0]) and data["labels"][i] == target["labels"][0]
        assert (data["images"][i].float() / 255 - image).abs().max() <= 0.5 / 255 + 1e-6


def test_tiny_training_reduces_loss():
    model, history = train_single_object(steps=30, lr=3e-3, batch_size=8, num_train_images=32, seed=0,
                                         progress=False)
    assert len(history["total"]) == 30 and not model.training
    assert np.mean(history["total"][-5:]) < 0.8 * np.mean(history["total"][:5])
    again, _ = train_single_object(steps=3, lr=3e-3, batch_size=4, num_train_images=8, seed=1, progress=False)
    again2, _ = train_single_object(steps=3, lr=3e-3, batch_size=4, num_train_images=8, seed=1, progress=False)
    for key, value in again.state_dict().items():
        assert torch.equal(value, again2.state_dict()[key]), "same seed must give the same model"
    with pytest.raises(ValueError):
        train_single_object(steps=0)


def test_evaluate_against_oracle_iou():
    model = checkpoints.load_pretrained("single_object_digits")
    dataset = DigitCanvases("test", size=20, max_objects=1)
    metrics = evaluate_single_object(model, dataset)
    images = torch.stack([dataset[i][0] for i in range(20)])
    out = predict_single_object(model, images)
    boxes = torch.stack([dataset[i][1]["boxes"][0] for i in range(20)])
    labels = torch.stack([dataset[i][1]["labels"][0] for i in range(20)])
    iou = tv_box_iou(out["boxes"], boxes).diagonal()
    assert metrics["accuracy"] == pytest.approx((out["labels"] == labels).float().mean().item())
    assert metrics["mean_iou"] == pytest.approx(iou.mean().item(), abs=1e-6)
    assert metrics["iou_above_0.5"] == pytest.approx((iou > 0.5).float().mean().item())


def test_shipped_checkpoint_quality_and_hash(tmp_path):
    path = checkpoints.CHECKPOINT_DIR / "single_object_digits.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == {"state_dict", "metadata"} and path.stat().st_size < 5_000_000
    sums = (checkpoints.CHECKPOINT_DIR / "SHA256SUMS").read_text().splitlines()
    assert f"{checkpoints.sha256_of(path)}  single_object_digits.pt" in sums

    model = checkpoints.load_pretrained("single_object_digits")
    metrics = evaluate_single_object(model, 100)
    assert metrics["accuracy"] >= MIN_ACCURACY_FIRST_100, metrics
    assert metrics["iou_above_0.5"] >= MIN_IOU_ABOVE_HALF_FIRST_100, metrics

    for name in ("single_object_digits.pt", "SHA256SUMS"):
        shutil.copy(checkpoints.CHECKPOINT_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / "single_object_digits.pt").read_bytes())
    data[-100] ^= 0x01
    (tmp_path / "single_object_digits.pt").write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.load_pretrained("single_object_digits", tmp_path)
