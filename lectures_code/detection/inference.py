"""What every detector's inference API (``model.predict``) shares: checking the reader's thresholds.

Every detector of the notes has ``predict(images, score_threshold=None, nms_threshold=None,
max_detections=None)`` -> one dict per image {"boxes" float32 [D, 4] xyxy, "scores" float32 [D]
descending, "labels" int64 [D] digits 0..9} (two-stage detectors add their "proposals"). None means
the model's own setting (the one it was evaluated with). The thresholds act inside the detector, before
its per-class NMS and top-k, not as a filter applied afterwards.
"""

from __future__ import annotations

import math


def inference_settings(model, score_threshold=None, nms_threshold=None, max_detections=None) -> tuple:
    """(score_threshold, nms_threshold, max_detections), the model's where None, checked.

    Raises ValueError for thresholds outside [0, 1] (NaN included) or a max_detections below 1, and
    RuntimeError if the model is in train mode (BatchNorm would use the batch's statistics).
    """
    if model.training:
        raise RuntimeError(f"{type(model).__name__}.predict needs eval mode: call model.eval() first")
    score_threshold = model.score_threshold if score_threshold is None else score_threshold
    nms_threshold = model.nms_threshold if nms_threshold is None else nms_threshold
    max_detections = model.max_detections if max_detections is None else max_detections
    for name, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not isinstance(max_detections, int) or isinstance(max_detections, bool) or max_detections < 1:
        raise ValueError(f"max_detections must be a positive int, got {max_detections!r}")
    return float(score_threshold), float(nms_threshold), max_detections
