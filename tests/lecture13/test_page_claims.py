"""Claims of the Lecture 13 page about code behaviour that no other test states directly."""

from __future__ import annotations

import torch
import torchvision

from lectures_code.ops.nms import batched_nms


def test_torchvision_batched_nms_documents_non_negative_coordinates_and_fails_outside_them():
    """The page: torchvision's offset trick assumes 0 <= x1 < x2 (documented); with negative
    coordinates it keeps one box where per-class NMS keeps both; ours falls back to the per-class loop."""
    assert "0 <= x1 < x2" in torchvision.ops.batched_nms.__doc__
    boxes = torch.tensor([[-60.0, -60, -20, -20], [-40, -40, 10, 10]])
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([1, 0])
    assert torchvision.ops.batched_nms(boxes, scores, labels, 0.1).tolist() == [0]
    per_class = [torchvision.ops.nms(boxes[labels == c], scores[labels == c], 0.1).numel() for c in (0, 1)]
    assert sum(per_class) == 2
    assert batched_nms(boxes, scores, labels, 0.1).tolist() == [0, 1]
    # inside the documented precondition (shift both boxes by +100) the two agree
    shifted = boxes + 100
    assert torchvision.ops.batched_nms(shifted, scores, labels, 0.1).tolist() == [0, 1]
