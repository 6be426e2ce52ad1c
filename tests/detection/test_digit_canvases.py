"""DigitCanvases: determinism, disjoint digit pools, exact boxes/masks/labels, COCO export via pycocotools."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou as tv_box_iou

from lectures_code.data.digit_canvases import (
    SPLITS,
    DigitCanvases,
    collate_detection,
    dataset_stats,
    load_mnist_subset,
    split_pool,
    to_coco,
)

N_ITEMS = 24


@pytest.fixture(scope="module")
def items():
    """(split, index, image, target, sources) for a few canvases of every split."""
    out = []
    for split in SPLITS:
        ds = DigitCanvases(split, size=N_ITEMS, seed=3)
        for i in range(N_ITEMS):
            image, target = ds[i]
            out.append((split, i, image, target, ds.object_sources(i)))
    return out


def test_same_item_every_time():
    a = DigitCanvases("train", size=10, seed=0)
    b = DigitCanvases("train", size=500, seed=0)  # the size must not change item i
    for i in (0, 7, 9):
        (ia, ta), (ib, tb) = a[i], b[i]
        assert torch.equal(ia, ib)
        for key in ("boxes", "labels", "masks"):
            assert torch.equal(ta[key], tb[key])
        assert ta["image_id"] == tb["image_id"] == i
    assert torch.equal(a[3][0], a[3][0])
    assert not torch.equal(a[3][0], DigitCanvases("train", size=10, seed=1)[3][0])
    assert not torch.equal(a[3][0], DigitCanvases("val", size=10, seed=0)[3][0])
    assert not torch.equal(a[3][0], a[4][0])


def test_pools_are_disjoint_and_stratified():
    _, labels = load_mnist_subset()
    pools = {split: split_pool(split) for split in SPLITS}
    assert [len(pools[s]) for s in SPLITS] == [3500, 500, 1000]
    for a in SPLITS:
        for b in SPLITS:
            if a != b:
                assert np.intersect1d(pools[a], pools[b]).size == 0
    assert np.array_equal(np.sort(np.concatenate(list(pools.values()))), np.arange(5000))
    for split, per_class in zip(SPLITS, (350, 50, 100)):
        assert np.bincount(labels[pools[split]], minlength=10).tolist() == [per_class] * 10
    # Pools do not depend on the data set's seed.
    pool_seed0 = DigitCanvases("test", size=1, seed=0).pool
    assert np.array_equal(pool_seed0, DigitCanvases("test", size=1, seed=9).pool)


def test_objects_come_from_their_split_and_labels_are_true(items):
    _, mnist_labels = load_mnist_subset()
    used = {split: set() for split in SPLITS}
    for split, _, _, target, sources in items:
        assert np.isin(sources, split_pool(split)).all()
        assert target["labels"].tolist() == mnist_labels[sources].tolist()
        used[split].update(sources.tolist())
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"])
    assert not (used["val"] & used["test"])


def test_shapes_dtypes_ranges(items):
    for _, i, image, target, _ in items:
        assert image.shape == (3, 128, 128) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        k = len(target["labels"])
        assert 1 <= k <= 4
        assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
        labels = target["labels"]
        assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() <= 9
        assert target["masks"].shape == (k, 128, 128) and target["masks"].dtype == torch.bool
        assert target["image_id"] == i
        assert image.std() > 0.02  # textured, not a flat background


def test_boxes_are_tight_boxes_of_masks_and_inside(items):
    for _, _, _, target, _ in items:
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = np.nonzero(mask.numpy())
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # x2/y2 exclusive
            assert box.tolist() == [float(v) for v in expected]
            assert 0 <= box[0] < box[2] <= 128 and 0 <= box[1] < box[3] <= 128
            w, h = (box[2:] - box[:2]).tolist()
            assert max(w, h) >= 20 - 1 and max(w, h) <= 64  # scale range (ink threshold may trim 1 px)


def test_limited_overlap_and_disjoint_masks(items):
    for _, _, _, target, _ in items:
        boxes, masks = target["boxes"], target["masks"]
        iou = tv_box_iou(boxes, boxes)
        iou.fill_diagonal_(0)
        assert iou.max() <= 0.3 + 1e-6
        assert masks.sum(dim=0).max() <= 1


def test_masks_have_the_source_digit_shape(items):
    """The mask, compared with the source digit's ink scaled into the box, overlaps it strongly."""
    digits, _ = load_mnist_subset()
    ious = []
    for _, _, _, target, sources in items:
        for box, mask, source in zip(target["boxes"].long(), target["masks"], sources):
            x1, y1, x2, y2 = box.tolist()
            digit = torch.from_numpy(digits[source].astype(np.float32))
            ys, xs = torch.nonzero(digit > 127, as_tuple=True)
            ink = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            resized = F.interpolate(ink[None, None], size=(y2 - y1, x2 - x1), mode="bilinear")[0, 0] > 127
            crop = mask[y1:y2, x1:x2]
            iou = (crop & resized).sum() / (crop | resized).sum()
            # Thin strokes (a small "1") lose pixels to rounding: a loose bound each, a tight one on average.
            assert iou > 0.5, f"digit {source}: mask IoU {iou:.2f} with its source"
            ious.append(iou.item())
    assert np.mean(ious) > 0.85


def test_pixels_under_masks_differ_from_background(items):
    for _, _, image, target, _ in items[:20]:
        if target["masks"].any():
            union = target["masks"].any(dim=0)
            inside = image[:, union].mean(dim=1)
            outside = image[:, ~union].mean(dim=1)
            assert (inside - outside).abs().max() > 0.15


def test_coco_export_loads_in_pycocotools():
    ds = DigitCanvases("val", size=15, seed=2)
    gt = to_coco(ds)
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    assert sorted(coco.getImgIds()) == list(range(15))
    assert sorted(coco.getCatIds()) == list(range(1, 11))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [str(d) for d in range(10)]
    ann_ids = [a["id"] for a in gt["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    total = 0
    for i in range(len(ds)):
        _, target = ds[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i]))
        assert len(anns) == len(target["labels"])
        total += len(anns)
        for ann, box, label, mask in zip(anns, target["boxes"], target["labels"], target["masks"]):
            x1, y1, x2, y2 = box.tolist()
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert ann["category_id"] == int(label) + 1 and ann["iscrowd"] == 0
            decoded = coco.annToMask(ann).astype(bool)
            assert np.array_equal(decoded, mask.numpy())
            assert ann["area"] == mask.sum().item() == mask_utils.area(coco.annToRLE(ann))
            assert mask_utils.toBbox(coco.annToRLE(ann)).tolist() == ann["bbox"]
    assert total == len(gt["annotations"])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_eval_of_the_ground_truth_is_perfect(iou_type):
    gt = to_coco(DigitCanvases("test", size=12, seed=5))
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
         "segmentation": mask_utils.frPyObjects(a["segmentation"], *a["segmentation"]["size"]), "score": 0.9}
        for a in gt["annotations"]
    ]
    evaluator = COCOeval(coco, coco.loadRes(dets), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0) and evaluator.stats[8] == pytest.approx(1.0)


def test_dataset_stats_counts():
    ds = DigitCanvases("train", size=20, seed=4)
    stats = dataset_stats(ds)
    targets = [ds[i][1] for i in range(len(ds))]
    counts = [len(t["labels"]) for t in targets]
    assert stats["images"] == 20 and stats["objects"] == sum(counts)
    assert sum(stats["objects_per_image"].values()) == 20
    assert stats["objects_per_image"] == {k: counts.count(k) for k in sorted(set(counts))}
    labels = torch.cat([t["labels"] for t in targets])
    assert stats["class_counts"] == torch.bincount(labels, minlength=10).tolist()
    widths = torch.cat([t["boxes"][:, 2] - t["boxes"][:, 0] for t in targets])
    assert stats["box_width"]["max"] == widths.max().item()
    assert stats["box_width"]["mean"] == pytest.approx(widths.double().mean().item())


def test_collate_and_device(device):
    ds = DigitCanvases("train", size=6, canvas_size=96, max_objects=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 96, 96) and len(targets) == 4
    assert torch.equal(images[2], ds[2][0])
    images = images.to(device)
    boxes = [t["boxes"].to(device) for t in targets]
    assert images.device.type == boxes[0].device.type == torch.device(device).type
    assert all(len(b) <= 3 for b in boxes)
    with pytest.raises(ValueError):
        collate_detection([])


def test_bad_arguments():
    with pytest.raises(ValueError):
        DigitCanvases("training")
    with pytest.raises(ValueError):
        DigitCanvases(max_objects=0)
    with pytest.raises(ValueError):
        DigitCanvases(canvas_size=10)
    with pytest.raises(TypeError):
        DigitCanvases(size=2.5)
    with pytest.raises(IndexError):
        DigitCanvases(size=3)[3]
