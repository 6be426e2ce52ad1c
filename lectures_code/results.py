"""Recorded results (training records, benchmark timings) that the pages' tables and figures read.

Reading goes through :func:`read`; writing (``lectures train --ship``) through :func:`write_path`.
"""

from __future__ import annotations

import json
from pathlib import Path

from lectures_code import checkpoints

_CHECKOUT_DIR = Path(__file__).resolve().parents[1] / "docs" / "data"


def write_path(name: str) -> Path:
    """Where a record called ``name`` (a file stem, e.g. "lecture14_detectors") is written."""
    if checkpoints.in_source_checkout():
        return _CHECKOUT_DIR / f"{name}.json"
    return checkpoints.user_dir() / "results" / f"{name}.json"


def read(name: str) -> dict:
    """The recorded JSON ``name``."""
    path = _CHECKOUT_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the command recorded in the docs to produce it")
    return json.loads(path.read_text(encoding="utf-8"))
