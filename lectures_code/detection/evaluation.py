"""COCO box AP of a detector on the DigitCanvases test split: the protocol every detector of the notes uses.

One canvas at a time (batch 1), so "seconds_per_image" is the latency a reader's single image would see,
on the model's device (CUDA synchronized). Scores come from our ``coco_evaluate`` (equal to pycocotools).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from lectures_code.data.digit_canvases import DigitCanvases, to_coco
from lectures_code.metrics.coco_eval import coco_evaluate, named_stats
from lectures_code.progress import progress_bar

SUBSET = 40  # the first 40 test canvases: what the tests re-check against a shipped model's record


def digit_coco_ap(dataset: DigitCanvases, detections: list[dict]) -> dict:
    """Our coco_evaluate on a DigitCanvases split: the 12 stats and AP per digit ("0".."9")."""
    evaluation = coco_evaluate(to_coco(dataset), detections)
    return {
        "stats": [float(s) for s in evaluation["stats"]],
        "per_class_ap": {str(category_id - 1): {k: float(v) for k, v in ap.items()}
                         for category_id, ap in evaluation["per_class_ap"].items()},
    }


def evaluate_on_canvases(detect: Callable[[int, torch.Tensor], dict], device, num_test_images: int,
                         split: str = "test", seed: int = 0, progress: bool = False, desc: str | None = None) -> dict:
    """COCO box AP of ``detect`` on the first ``num_test_images`` canvases of a DigitCanvases split.

    ``detect(index, image)`` gets one canvas (float [3, H, W] in [0, 1], on the CPU) and returns
    {"boxes": [D, 4] xyxy pixels, "scores": [D], "labels": [D] digits 0..9}; each call is timed (CUDA
    synchronized). Returns {"stats": the 12 COCO numbers, "per_class_ap": {digit: {"AP", "AP50"}},
    "seconds_per_image", "images", "detections"}.
    """
    if not isinstance(num_test_images, int) or isinstance(num_test_images, bool) or num_test_images < 1:
        raise ValueError(f"num_test_images must be a positive int, got {num_test_images!r}")
    dataset = DigitCanvases(split, size=num_test_images, seed=seed)
    detections, seconds = [], 0.0
    for index in progress_bar(range(num_test_images), progress, desc or f"evaluate ({split})"):
        image, _ = dataset[index]
        start = time.perf_counter()
        result = detect(index, image)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist()):
            x1, y1, x2, y2 = box
            detections.append({"image_id": index, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                               "score": score})
    return {**digit_coco_ap(dataset, detections), "seconds_per_image": seconds / num_test_images,
            "images": num_test_images, "detections": len(detections)}


@torch.no_grad()
def evaluate_detector(model, num_test_images: int = 200, split: str = "test", seed: int = 0,
                      progress: bool = False) -> dict:
    """COCO box AP of a detector with the inference API (``model.predict(images)``), one canvas at a time
    on the model's device; the dict of :func:`evaluate_on_canvases`."""
    model.eval()
    device = next(model.parameters()).device
    return evaluate_on_canvases(lambda index, image: model.predict(image[None].to(device))[0], device,
                                num_test_images, split, seed, progress)


def rounded_per_class(per_class_ap: dict, digits: int = 4) -> dict:
    return {digit: {k: round(v, digits) for k, v in ap.items()} for digit, ap in per_class_ap.items()}


def coco_record(evaluation: dict, subset: dict) -> dict:
    """What a training record says about a detector's test results, from two evaluations (dicts of
    :func:`evaluate_on_canvases`): the 12 COCO numbers by name, AP per digit, and the same on the first
    ``SUBSET`` canvases (what the tests re-check against the shipped model)."""
    return {
        "test_images": evaluation["images"],
        "test": named_stats(evaluation["stats"]),
        "per_class_ap": rounded_per_class(evaluation["per_class_ap"]),
        f"test_first_{SUBSET}": named_stats(subset["stats"]),
    }


def detector_record(model, num_test_images: int = 200, progress: bool = False) -> dict:
    """:func:`coco_record` of a detector's inference API and the seconds per canvas (batch 1, its device)."""
    evaluation = evaluate_detector(model, num_test_images, progress=progress)
    subset = evaluate_detector(model, min(SUBSET, num_test_images))
    return coco_record(evaluation, subset) | {"seconds_per_test_image": round(evaluation["seconds_per_image"], 4)}
