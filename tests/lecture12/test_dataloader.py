"""Lecture 12: the DataLoader example yields the right batches."""

from __future__ import annotations

import pytest
import torch

from lectures_code.lecture12.dataloader_example import RegressionDataset, make_loader


def _dataset(n=20):
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)   # row i is [i, i, i]
    y = torch.arange(n, dtype=torch.float32)[:, None] * 10
    return RegressionDataset(x, y)


def _epoch_rows(loader):
    return [batch_x[:, 0].long().tolist() for batch_x, _ in loader]


def test_batches_cover_every_sample_once_with_the_right_shapes():
    loader = make_loader(_dataset(20), batch_size=8, shuffle=True, seed=0)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [torch.Size([8, 3]), torch.Size([8, 3]), torch.Size([4, 3])]
    rows = [i for b in _epoch_rows(loader) for i in b]
    assert sorted(rows) == list(range(20))
    for batch_x, batch_y in batches:                  # x and y stay paired after shuffling
        torch.testing.assert_close(batch_y[:, 0], batch_x[:, 0] * 10)


def test_shuffle_is_seeded_and_changes_between_epochs():
    a = make_loader(_dataset(), batch_size=4, shuffle=True, seed=3)
    b = make_loader(_dataset(), batch_size=4, shuffle=True, seed=3)
    first_a, first_b = _epoch_rows(a), _epoch_rows(b)
    assert first_a == first_b
    assert _epoch_rows(a) != first_a                  # a new order in the next epoch
    assert sum(first_a, []) != list(range(20))        # and it really is shuffled


def test_no_shuffle_keeps_order():
    assert sum(_epoch_rows(make_loader(_dataset(), batch_size=6, shuffle=False)), []) == list(range(20))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches():
    serial = _epoch_rows(make_loader(_dataset(), batch_size=5, shuffle=True, num_workers=0, seed=1))
    parallel = _epoch_rows(make_loader(_dataset(), batch_size=5, shuffle=True, num_workers=2, seed=1))
    assert serial == parallel


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        RegressionDataset(torch.zeros(3, 2), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(_dataset(), batch_size=0)
