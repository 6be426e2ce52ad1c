"""Progress bars for long work (rendering, training, evaluation): tqdm when enabled, nothing otherwise."""

from __future__ import annotations


def progress_bar(iterable, enabled: bool, desc: str, total: int | None = None):
    """A tqdm bar around ``iterable`` when ``enabled``, else the iterable itself."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True)
