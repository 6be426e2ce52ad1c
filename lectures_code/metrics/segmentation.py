"""Segmentation metrics (Lecture 15): mIoU from a confusion matrix, and panoptic quality (PQ, SQ, RQ).

Semantic segmentation (one class per pixel)
-------------------------------------------
Label maps are integer tensors [H, W] (one image) or [B, H, W] (a batch), any integer dtype, on any
device; ``pred`` and ``target`` have the same shape. ``confusion_matrix`` counts pixels into a
[K, K] int64 matrix, ROWS = target class, COLUMNS = predicted class (as in sklearn and torchmetrics).
Confusion matrices of several batches simply add up, so every metric below is computed over a whole
data set from one summed matrix (as mmseg and torchmetrics' ``MulticlassJaccardIndex`` do; the average of
per-image scores, torchmetrics' ``segmentation.MeanIoU``, is a different number). From the matrix:

- IoU of class k = n_kk / (row_k + col_k - n_kk): pixels labelled k AND predicted k, over pixels
  labelled k OR predicted k (Long et al., CVPR 2015, "Fully Convolutional Networks ...": "mean IU").
- ``mean_iou`` averages over the classes that occur (in the target or the prediction). A class absent
  from both has union 0 and IoU 0/0 = NaN in ``iou_per_class`` and is left out of the mean, as
  torchmetrics' ``MulticlassJaccardIndex(average="macro")`` and mmseg (``nanmean``) do; a class that is
  only predicted has IoU 0 and counts. No pixel at all (everything ignored) gives NaN.
- ``pixel_accuracy`` = trace / total.
- ``foreground_iou``: the binary IoU of "any object" vs background (a digit predicted as the wrong
  digit still counts as foreground).

``ignore_index``: target pixels with this value are skipped together with whatever was predicted
there (the usual 255 "void" of PASCAL VOC). It must not be a class in [0, K). Every other target
label and every predicted label must lie in [0, K), else ValueError.

Panoptic segmentation (Kirillov et al., CVPR 2019, "Panoptic Segmentation")
--------------------------------------------------------------------------
Every pixel gets a category and an instance id. Categories are "things" (countable objects, each
instance its own segment) or "stuff" (amorphous regions like sky or road: the instance id is ignored,
so all pixels of one stuff category in an image form ONE segment). A segment is therefore a
(category, instance id) pair inside one image; its pixels need not be connected.

- Matching: a predicted and a ground-truth segment of the same category match when their IoU is
  STRICTLY greater than 0.5. Because the segments of one map do not overlap, the matching is unique
  (the paper's Theorem 1): IoU(p, g) > 0.5 means |p & g| > |p | g| / 2 >= |g| / 2, so p covers more
  than half of g, which no second (disjoint) predicted segment can also do; the same holds the other
  way round (also with void pixels removed from p, see below). No greedy assignment or Hungarian
  algorithm is needed. Segments are matched inside each image, never across images of a batch.
- Matched pairs are true positives (TP), unmatched predicted segments false positives (FP), unmatched
  ground-truth segments false negatives (FN). Per category, summed over the data set:
      PQ = sum_{(p, g) in TP} IoU(p, g) / (|TP| + |FP| / 2 + |FN| / 2)
         = [sum IoU / |TP|]  x  [|TP| / (|TP| + |FP| / 2 + |FN| / 2)] = SQ x RQ,
  SQ (segmentation quality) the mean IoU of the matched pairs, RQ (recognition quality) the F1 score
  of segment detection. PQ, SQ and RQ are then averaged over categories ("all"), over things (PQ^Th)
  and over stuff (PQ^St).
- Void (``void_label``, default -1) in the ground truth: as the paper prescribes, the pixels of a
  predicted segment that are void in the ground truth are removed from it when its IoU is computed,
  and an unmatched predicted segment that is more than half void (over the matching threshold) is
  not a false positive. Void in the prediction ("no label here") makes no predicted segment, but the
  ground-truth pixels it covers stay in the ground-truth segment's area (they are missed). This is
  what the COCO reference code ``panopticapi`` (``pq_compute_single_core``) does; torchmetrics 1.9
  (``allow_unknown_preds_category=True``) instead removes those pixels from the ground truth too
  (the test suite shows a case where the two differ).
- Empty cases (the ``panopticapi`` conventions): a category with TP = FP = FN = 0 (absent from both)
  has NaN PQ/SQ/RQ here (panopticapi reports 0) and is left out of every average; a category with
  TP = 0 but FP or FN has SQ = RQ = PQ = 0 and counts; an average over no category is NaN with n = 0
  (panopticapi divides by zero there).
- Crowd regions (COCO's ``iscrowd``) are not supported; label them void.

Panoptic inputs: either a pair ``(categories, instance_ids)`` of integer tensors [H, W] or [B, H, W],
or one tensor [H, W, 2] / [B, H, W, 2] holding (category, instance id) in its last dimension (the
format of torchmetrics' ``PanopticQuality``). Categories must be things, stuff or ``void_label``
(anything else is a ValueError: a misspelt class would otherwise silently become void); instance ids
must be >= 0.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import Tensor


def _check_integer_maps(maps: dict[str, Tensor]) -> None:
    """Each map an integer tensor [H, W] or [B, H, W]; all of the same shape, on the same device."""
    shapes, devices = set(), set()
    for name, labels in maps.items():
        if not isinstance(labels, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise TypeError(f"{name} must hold integer labels, got dtype {labels.dtype} "
                            "(for class scores [B, K, H, W], pass scores.argmax(dim=1))")
        if labels.dim() not in (2, 3):
            raise ValueError(f"{name} must have shape [H, W] or [B, H, W], got {list(labels.shape)}")
        shapes.add(tuple(labels.shape))
        devices.add(labels.device)
    if len(shapes) > 1:
        raise ValueError(f"{' and '.join(maps)} differ in shape: {' vs '.join(str(list(s)) for s in shapes)}")
    if len(devices) > 1:
        raise ValueError(f"{' and '.join(maps)} are on different devices: {sorted(map(str, devices))}")


def _first_values(labels: Tensor, limit: int = 8) -> list[int]:
    return labels.unique()[:limit].tolist()


# ----------------------------------------------------------------------------------------------------
# Semantic segmentation
# ----------------------------------------------------------------------------------------------------


def _check_semantic_inputs(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> None:
    _check_integer_maps({"pred": pred, "target": target})
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index={ignore_index} is one of the classes 0..{num_classes - 1}; "
                         "use a value outside that range (e.g. 255)")
    bad_pred = (pred < 0) | (pred >= num_classes)
    if bad_pred.any():
        raise ValueError(f"pred has labels outside 0..{num_classes - 1}: {_first_values(pred[bad_pred])}")
    bad_target = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad_target &= target != ignore_index
    if bad_target.any():
        allowed = f"0..{num_classes - 1}" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
        raise ValueError(f"target has labels outside {allowed}: {_first_values(target[bad_target])}")


def _check_confusion(confusion: Tensor) -> None:
    if not isinstance(confusion, Tensor) or confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        shape = list(confusion.shape) if isinstance(confusion, Tensor) else type(confusion).__name__
        raise ValueError(f"confusion must be a square [K, K] tensor, got {shape}")


# --8<-- [start:confusion_iou]
def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Pixel counts [K, K] (int64, on the inputs' device): entry (t, p) = pixels labelled t, predicted p.

    pred, target: integer label maps [H, W] or [B, H, W] of the same shape, labels in [0, K);
    target pixels equal to ``ignore_index`` are skipped. Empty maps give a zero matrix.
    """
    _check_semantic_inputs(pred, target, num_classes, ignore_index)
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()  # [N] each
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    pair = target * num_classes + pred  # [N]: one bin per (target, pred) pair, row-major
    return torch.bincount(pair, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_per_class(confusion: Tensor) -> Tensor:
    """IoU of every class, float64 [K]; NaN for a class absent from target and prediction (union 0)."""
    _check_confusion(confusion)
    confusion = confusion.double()
    intersection = confusion.diagonal()  # [K] labelled k and predicted k
    union = confusion.sum(dim=1) + confusion.sum(dim=0) - intersection  # [K] labelled k or predicted k
    return intersection / union  # 0 / 0 = NaN where the class never occurs


def mean_iou(confusion: Tensor) -> float:
    """Mean IoU over the classes that occur (NaN classes left out); NaN if no class occurs."""
    return iou_per_class(confusion).nanmean().item()
# --8<-- [end:confusion_iou]


def pixel_accuracy(confusion: Tensor) -> float:
    """Correct pixels / all counted pixels; NaN if no pixel was counted."""
    _check_confusion(confusion)
    confusion = confusion.double()
    return (confusion.trace() / confusion.sum()).item()


def foreground_iou(confusion: Tensor, background: int = 0) -> float:
    """Binary IoU of "any object" (every class but ``background``) vs background; NaN if neither occurs.

    The K x K matrix collapses to 2 x 2: a pixel labelled 3 and predicted 7 is a foreground hit.
    """
    _check_confusion(confusion)
    if not 0 <= background < confusion.shape[0]:
        raise ValueError(f"background={background} is not a class of a {confusion.shape[0]}-class confusion matrix")
    confusion = confusion.double()
    total = confusion.sum()
    both_background = confusion[background, background]
    labelled_background = confusion[background, :].sum()
    predicted_background = confusion[:, background].sum()
    intersection = total - labelled_background - predicted_background + both_background  # fg in both
    union = total - both_background  # fg in either
    return (intersection / union).item()


# ----------------------------------------------------------------------------------------------------
# Panoptic segmentation
# ----------------------------------------------------------------------------------------------------


@dataclass
class PanopticCounts:
    """Per-category matching results, summed over images; add two with ``+`` to accumulate a data set.

    categories: the category ids in ascending order (things and stuff together), C of them;
    is_thing: bool [C]; iou_sum: float64 [C] (sum of IoU over the TPs); true_positives,
    false_positives, false_negatives: int64 [C]. All tensors on the inputs' device.
    """

    categories: tuple[int, ...]
    is_thing: Tensor
    iou_sum: Tensor
    true_positives: Tensor
    false_positives: Tensor
    false_negatives: Tensor

    def __add__(self, other: PanopticCounts) -> PanopticCounts:
        if not isinstance(other, PanopticCounts):
            return NotImplemented
        if other.categories != self.categories or not torch.equal(other.is_thing.cpu(), self.is_thing.cpu()):
            raise ValueError("cannot add PanopticCounts of different things / stuff categories")
        device = self.iou_sum.device
        return PanopticCounts(
            self.categories, self.is_thing,
            self.iou_sum + other.iou_sum.to(device),
            self.true_positives + other.true_positives.to(device),
            self.false_positives + other.false_positives.to(device),
            self.false_negatives + other.false_negatives.to(device),
        )


@dataclass
class PanopticScores:
    """PQ, SQ, RQ per category (float64 [C], NaN for a category absent from both sides) and averaged.

    ``averages[name]`` for name in ("all", "things", "stuff") is a dict with "pq", "sq", "rq" (floats,
    NaN when no category of that kind occurs) and "n", the number of categories averaged.
    """

    categories: tuple[int, ...]
    is_thing: Tensor
    pq: Tensor
    sq: Tensor
    rq: Tensor
    averages: dict[str, dict[str, float]]


def _check_categories(things: Collection[int], stuffs: Collection[int], void_label: int) -> tuple[set, set]:
    for name, ids in (("things", things), ("stuffs", stuffs)):
        if isinstance(ids, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{name} must be a collection of int category ids, got {ids!r}")
        if any(i < 0 for i in ids):
            raise ValueError(f"{name} must hold category ids >= 0, got {sorted(ids)}")
    things, stuffs = set(things), set(stuffs)
    if things & stuffs:
        raise ValueError(f"categories {sorted(things & stuffs)} are both things and stuffs")
    if not things | stuffs:
        raise ValueError("things and stuffs are both empty: there is nothing to evaluate")
    if void_label in things | stuffs:
        raise ValueError(f"void_label={void_label} is also a thing or stuff category")
    return things, stuffs


def _split_panoptic(maps, name: str) -> tuple[Tensor, Tensor]:
    """(categories, instance ids), each [H, W] or [B, H, W], from a pair of maps or one [..., 2] tensor."""
    if isinstance(maps, (tuple, list)):
        if len(maps) != 2:
            raise ValueError(f"{name} must be a pair (categories, instance_ids), got {len(maps)} items")
        categories, instances = maps
    elif isinstance(maps, Tensor):
        if maps.dim() not in (3, 4) or maps.shape[-1] != 2:
            raise ValueError(f"{name} as one tensor must have shape [H, W, 2] or [B, H, W, 2], got {list(maps.shape)}")
        categories, instances = maps[..., 0], maps[..., 1]
    else:
        raise TypeError(f"{name} must be a (categories, instance_ids) pair or a tensor, got {type(maps).__name__}")
    _check_integer_maps({f"{name} categories": categories, f"{name} instance ids": instances})
    if (instances < 0).any():
        raise ValueError(f"{name} has negative instance ids: {_first_values(instances[instances < 0])}")
    return categories, instances


def _category_slots(categories: Tensor, category_ids: Tensor, void_label: int, name: str) -> Tensor:
    """Each pixel's position in ``category_ids`` (0..C-1), or C for void. Unknown categories: ValueError."""
    num_categories = len(category_ids)
    slot = torch.searchsorted(category_ids, categories.contiguous())  # [B, H, W] in 0..C
    known = category_ids[slot.clamp(max=num_categories - 1)] == categories
    void = categories == void_label
    unknown = ~(known | void)
    if unknown.any():
        raise ValueError(f"{name} has categories {_first_values(categories[unknown])} that are neither things, "
                         f"stuffs nor void_label={void_label}")
    return torch.where(known, slot, num_categories)


def _segments(slots: Tensor, instances: Tensor, is_thing_slot: Tensor) -> tuple[Tensor, Tensor]:
    """Number the segments of a batch of maps: (segment of each pixel [B*H*W], category slot of each segment [S]).

    A segment is (image, category, instance id) for things and (image, category) for stuff and void.
    """
    num_images, num_slots = slots.shape[0], len(is_thing_slot)  # slots are 0..C, C = void
    instances = torch.where(is_thing_slot[slots], instances, 0)  # stuff and void: one segment per image
    instance_range = int(instances.max()) + 1 if instances.numel() else 1
    if num_images * num_slots * instance_range >= 2**62:
        raise ValueError(f"instance ids up to {instance_range - 1} are too large to number the segments; renumber them")
    image = torch.arange(num_images, device=slots.device).view(-1, 1, 1)
    key = (image * num_slots + slots) * instance_range + instances  # [B, H, W], unique per segment
    keys, segment = torch.unique(key.reshape(-1), return_inverse=True)  # [S], [B*H*W]
    return segment, (keys // instance_range) % num_slots


def panoptic_counts(pred, target, things: Collection[int], stuffs: Collection[int],
                    void_label: int = -1) -> PanopticCounts:
    """Match the segments of ``pred`` and ``target`` (see module docstring) and count TP/FP/FN per category.

    pred, target: (categories, instance_ids) pairs of integer maps [H, W] or [B, H, W], or tensors
    [H, W, 2] / [B, H, W, 2]; same shape. things, stuffs: disjoint category ids (>= 0).
    Returns PanopticCounts summed over the batch; pass it (or a sum of them) to ``panoptic_quality``.
    """
    things, stuffs = _check_categories(things, stuffs, void_label)
    pred_categories, pred_instances = _split_panoptic(pred, "pred")
    target_categories, target_instances = _split_panoptic(target, "target")
    _check_integer_maps({"pred": pred_categories, "target": target_categories})
    if pred_categories.dim() == 2:  # one image -> a batch of one
        pred_categories, pred_instances = pred_categories[None], pred_instances[None]
        target_categories, target_instances = target_categories[None], target_instances[None]
    pred_categories, pred_instances = pred_categories.long(), pred_instances.long()
    target_categories, target_instances = target_categories.long(), target_instances.long()
    device = target_categories.device
    categories = tuple(sorted(things | stuffs))
    category_ids = torch.tensor(categories, device=device)  # [C]
    is_thing = torch.tensor([c in things for c in categories], device=device)  # [C]
    void = len(categories)  # the slot of void pixels
    is_thing_slot = torch.cat([is_thing, is_thing.new_zeros(1)])  # [C + 1]
    pred_slots = _category_slots(pred_categories, category_ids, void_label, "pred")
    target_slots = _category_slots(target_categories, category_ids, void_label, "target")
    pred_segment, pred_slot = _segments(pred_slots, pred_instances, is_thing_slot)  # [N], [P]
    gt_segment, gt_slot = _segments(target_slots, target_instances, is_thing_slot)  # [N], [G]
    iou_sum, tp, fp, fn = _match_segments(pred_segment, pred_slot, gt_segment, gt_slot, void)
    return PanopticCounts(categories, is_thing, iou_sum, tp, fp, fn)


# --8<-- [start:pq_matching]
def _match_segments(pred_segment: Tensor, pred_slot: Tensor, gt_segment: Tensor, gt_slot: Tensor,
                    void: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PQ matching. pred_segment, gt_segment: the segment of each pixel [N]; pred_slot [P], gt_slot [G]:
    each segment's category 0..C-1, or ``void`` (= C). Returns iou_sum (float64), TP, FP, FN, each [C]."""
    num_pred, num_gt = len(pred_slot), len(gt_slot)
    pred_area = torch.bincount(pred_segment, minlength=num_pred)  # [P] pixels
    gt_area = torch.bincount(gt_segment, minlength=num_gt)  # [G]
    # every (predicted, ground-truth) pair that shares a pixel, with its intersection
    pairs, intersection = torch.unique(pred_segment * num_gt + gt_segment, return_counts=True)  # [Q] each
    pair_pred, pair_gt = pairs // max(num_gt, 1), pairs % max(num_gt, 1)
    # pixels of each predicted segment that are void in the ground truth: removed from it before IoU
    on_void = torch.where(gt_slot[pair_gt] == void, intersection, 0)
    pred_void_area = torch.zeros_like(pred_area).index_add_(0, pair_pred, on_void)  # [P]
    union = pred_area[pair_pred] - pred_void_area[pair_pred] + gt_area[pair_gt] - intersection  # [Q]
    same_category = (pred_slot[pair_pred] == gt_slot[pair_gt]) & (gt_slot[pair_gt] != void)
    matched = same_category & (2 * intersection > union)  # IoU > 0.5, in exact integers; unique by Theorem 1
    iou = intersection[matched].double() / union[matched].double()  # [TP]
    category = gt_slot[pair_gt[matched]]  # [TP]
    true_positives = torch.bincount(category, minlength=void)
    iou_sum = torch.zeros(void, dtype=torch.float64, device=iou.device).index_add_(0, category, iou)
    gt_matched = torch.zeros(num_gt, dtype=torch.bool, device=gt_slot.device)
    gt_matched[pair_gt[matched]] = True
    pred_matched = torch.zeros(num_pred, dtype=torch.bool, device=pred_slot.device)
    pred_matched[pair_pred[matched]] = True
    # unmatched ground truth: FN; unmatched prediction: FP unless more than half of it is void in the ground truth
    missed = ~gt_matched & (gt_slot != void)
    false_negatives = torch.bincount(gt_slot[missed], minlength=void)
    spurious = ~pred_matched & (pred_slot != void) & (2 * pred_void_area <= pred_area)
    false_positives = torch.bincount(pred_slot[spurious], minlength=void)
    return iou_sum, true_positives, false_positives, false_negatives
# --8<-- [end:pq_matching]


# --8<-- [start:pq_decomposition]
def panoptic_quality(counts: PanopticCounts) -> PanopticScores:
    """PQ = SQ x RQ per category, and their averages over all categories, things and stuff."""
    tp, fp, fn = (c.double() for c in (counts.true_positives, counts.false_positives, counts.false_negatives))
    occurs = (tp + fp + fn) > 0  # [C]; the others are left out of every average
    sq = torch.where(tp > 0, counts.iou_sum / tp.clamp(min=1), 0.0)  # mean IoU of the matched pairs
    rq = tp / (tp + fp / 2 + fn / 2)  # F1 score of segment detection (0/0 = NaN where nothing occurs)
    pq = sq * rq  # = sum IoU / (|TP| + |FP|/2 + |FN|/2)
    nan = torch.tensor(math.nan, dtype=torch.float64, device=tp.device)
    pq, sq, rq = (torch.where(occurs, value, nan) for value in (pq, sq, rq))
    averages = {}
    for name, kind in (("all", torch.ones_like(occurs)), ("things", counts.is_thing), ("stuff", ~counts.is_thing)):
        chosen = kind & occurs
        averages[name] = {"pq": pq[chosen].mean().item(), "sq": sq[chosen].mean().item(),
                          "rq": rq[chosen].mean().item(), "n": int(chosen.sum())}
    return PanopticScores(counts.categories, counts.is_thing, pq, sq, rq, averages)
# --8<-- [end:pq_decomposition]
