"""Sample a mini-batch of positive and negative training examples (Lecture 14, Faster R-CNN).

An image has ~10^4-10^5 anchors (or ~2000 proposals) and almost all of them are background. Training
on all of them would drown the few positives, so each image contributes a fixed-size random sample
with at most a given fraction of positives; negatives fill the rest. Settings in torchvision: RPN 256
anchors per image, 50% positive; Fast R-CNN box head 512 proposals per image, 25% positive.

Labels: >= 1 positive (an RPN's 1, or a class index + 1), 0 negative (background), -1 ignored
(never sampled). Counts and randomness are those of
``torchvision.models.detection._utils.BalancedPositiveNegativeSampler`` (the oracle):

    num_pos = min(#positives, int(batch_size_per_image * positive_fraction))
    num_neg = min(#negatives, batch_size_per_image - num_pos)

and the two subsets come from ``torch.randperm`` over the positives, then over the negatives, so
with the same random state the masks are identical to torchvision's. If there are too few
positives the negatives fill the batch; if there are too few negatives the batch is just smaller.

Differences from torchvision: one image per call (torchvision loops over a list; call this in the
same order to reproduce it), boolean masks instead of uint8, and an optional ``generator``.
"""

from __future__ import annotations

import torch
from torch import Tensor


# --8<-- [start:sampler]
def sample_positive_negative(
    matched_labels: Tensor,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Randomly pick at most ``batch_size_per_image`` examples, at most a fraction of them positive.

    Args:
        matched_labels: [N] labels of one image, any real dtype: >= 1 positive, 0 negative,
            -1 (or any other negative value) ignored.
        batch_size_per_image: total number of examples to sample.
        positive_fraction: largest fraction of the sample that may be positive, in [0, 1].
        generator: random generator on the device of ``matched_labels``; None uses torch's global
            one (as torchvision does).

    Returns:
        (positive_mask, negative_mask): [N] bool each, on the device of ``matched_labels``.
    """
    if not isinstance(matched_labels, Tensor) or matched_labels.dim() != 1:
        raise ValueError(f"matched_labels must be a [N] tensor, got {getattr(matched_labels, 'shape', None)}")
    if matched_labels.dtype == torch.bool or matched_labels.is_complex():
        raise TypeError(f"matched_labels must hold real numbers, got {matched_labels.dtype}")
    if batch_size_per_image < 0 or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"need batch_size_per_image >= 0 and 0 <= positive_fraction <= 1, "
                         f"got {batch_size_per_image}, {positive_fraction}")
    device = matched_labels.device
    positive = torch.where(matched_labels >= 1)[0]  # [#pos] indices
    negative = torch.where(matched_labels == 0)[0]  # [#neg] indices

    num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
    # Missing positives are made up with negatives, so the batch stays full when it can.
    num_neg = min(negative.numel(), batch_size_per_image - num_pos)

    # A random permutation's first k entries are a uniform random k-subset. Same two calls, same
    # order as torchvision, so one random state gives the same sample.
    chosen_pos = positive[torch.randperm(positive.numel(), generator=generator, device=device)[:num_pos]]
    chosen_neg = negative[torch.randperm(negative.numel(), generator=generator, device=device)[:num_neg]]

    positive_mask = torch.zeros_like(matched_labels, dtype=torch.bool)
    negative_mask = torch.zeros_like(matched_labels, dtype=torch.bool)
    positive_mask[chosen_pos] = True
    negative_mask[chosen_neg] = True
    return positive_mask, negative_mask
# --8<-- [end:sampler]
