"""sample_positive_negative against torchvision's BalancedPositiveNegativeSampler (the oracle)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from lectures_code.detection.sampler import sample_positive_negative

# (batch_size_per_image, positive_fraction): RPN, box head, odd ones (int() truncation, all / none).
SETTINGS = [(256, 0.5), (512, 0.25), (10, 0.37), (10, 1.0), (10, 0.0), (0, 0.5)]


def random_labels(n, g, dtype, device, p_pos, p_neg):
    u = torch.rand(n, generator=g)
    labels = torch.full((n,), -1, dtype=torch.int64)
    labels[u < p_pos + p_neg] = 0
    # Positives may be any value >= 1 (class index + 1 in the box head).
    labels[u < p_pos] = torch.randint(1, 5, (n,), generator=g)[u < p_pos]
    return labels.to(dtype=dtype, device=device)


def label_cases(g, dtype, device):
    yield random_labels(3000, g, dtype, device, 0.01, 0.9)  # RPN-like: few positives
    yield random_labels(600, g, dtype, device, 0.6, 0.3)  # many positives
    yield random_labels(300, g, dtype, device, 0.5, 0.02)  # too few negatives
    yield random_labels(50, g, dtype, device, 0.0, 0.5)  # no positives
    yield random_labels(50, g, dtype, device, 0.0, 0.0)  # everything ignored
    yield torch.zeros(0, dtype=dtype, device=device)  # no anchors


@pytest.mark.parametrize("dtype", [torch.int64, torch.float32])
@pytest.mark.parametrize("batch_size, fraction", SETTINGS)
@pytest.mark.parametrize("seed", range(4))
def test_same_masks_as_torchvision_with_same_seed(device, dtype, batch_size, fraction, seed):
    labels = list(label_cases(torch.Generator().manual_seed(seed), dtype, device))
    torch.manual_seed(1000 + seed)  # the sampler draws from the global generators (CPU and CUDA)
    ref_pos, ref_neg = BalancedPositiveNegativeSampler(batch_size, fraction)(labels)
    torch.manual_seed(1000 + seed)
    # One call per image, in the order torchvision loops over them: same randperm stream.
    ours = [sample_positive_negative(lab, batch_size, fraction) for lab in labels]
    for (pos, neg), rp, rn in zip(ours, ref_pos, ref_neg):
        assert pos.dtype == torch.bool and neg.dtype == torch.bool and pos.device == rp.device
        assert torch.equal(pos, rp.bool()) and torch.equal(neg, rn.bool())


@pytest.mark.parametrize("batch_size, fraction", SETTINGS)
@pytest.mark.parametrize("seed", range(4))
def test_invariants(device, batch_size, fraction, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    for labels in label_cases(torch.Generator().manual_seed(seed), torch.int64, device):
        pos, neg = sample_positive_negative(labels, batch_size, fraction, generator=g)
        num_pos_available, num_neg_available = int((labels >= 1).sum()), int((labels == 0).sum())
        expected_pos = min(num_pos_available, int(batch_size * fraction))
        expected_neg = min(num_neg_available, batch_size - expected_pos)
        assert int(pos.sum()) == expected_pos and int(neg.sum()) == expected_neg
        assert bool((labels[pos] >= 1).all()) and bool((labels[neg] == 0).all())  # subsets; -1 never drawn


def test_generator_is_reproducible_and_random(device):
    labels = random_labels(2000, torch.Generator().manual_seed(0), torch.int64, device, 0.2, 0.7)
    a = sample_positive_negative(labels, 256, 0.5, generator=torch.Generator(device=device).manual_seed(3))
    b = sample_positive_negative(labels, 256, 0.5, generator=torch.Generator(device=device).manual_seed(3))
    c = sample_positive_negative(labels, 256, 0.5, generator=torch.Generator(device=device).manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_uniform_over_positives():
    # Every positive is equally likely: 4 of 8 positives, 4000 draws, each picked ~ 2000 times.
    labels = torch.tensor([1] * 8 + [0] * 8)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    for _ in range(4000):
        pos, _ = sample_positive_negative(labels, 8, 0.5, generator=g)
        counts += pos
    assert counts[8:].sum() == 0
    assert ((counts[:8] - 2000).abs() < 150).all()


def test_bad_input():
    with pytest.raises(ValueError):
        sample_positive_negative(torch.zeros(2, 3), 256, 0.5)
    with pytest.raises(TypeError):
        sample_positive_negative(torch.zeros(3, dtype=torch.bool), 256, 0.5)
    with pytest.raises(ValueError):
        sample_positive_negative(torch.zeros(3), 256, 1.5)
    with pytest.raises(ValueError):
        sample_positive_negative(torch.zeros(3), -1, 0.5)
