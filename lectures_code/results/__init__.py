"""Recorded results that the notes' tables and figures read: training records and benchmark timings.

The JSON files in this folder are package data (``importlib.resources``), written by the commands that
produce them, never by hand:

    lecture13_detectors.json    ``lectures train single-object | rcnn --ship``: one record per model
    lecture14_detectors.json    ``lectures train fast-rcnn | faster-rcnn | ... --ship``
    lecture13_transfer.json     ``python -m lectures_code.lecture13.transfer_learning``
    benchmarks/<name>.json/.md  ``python benchmarks/<name>.py`` (the speed comparisons the pages show)

Outside a source checkout (an installed package), new records go to the user's folder
(``$LECTURES_CODE_HOME/results``) instead of the installed package.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from lectures_code import checkpoints

BENCHMARK_DIR = Path(str(resources.files(__name__) / "benchmarks"))


def package_path(name: str) -> Path:
    """The package data file of the record ``name`` (a file stem, e.g. "lecture14_detectors")."""
    return Path(str(resources.files(__name__) / f"{name}.json"))


def write_path(name: str) -> Path:
    """Where a new record called ``name`` is written: here in a source checkout, else the user's folder."""
    if checkpoints.in_source_checkout():
        return package_path(name)
    return checkpoints.user_dir() / "results" / f"{name}.json"


def read(name: str) -> dict:
    """The recorded JSON ``name``."""
    path = resources.files(__name__) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"recorded results {name}.json are missing from lectures_code/results: "
                                "run the command recorded in the docs to produce them")
    return json.loads(path.read_text(encoding="utf-8"))
