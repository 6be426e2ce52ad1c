"""Shipped model weights: save them in a safe format, and load them only if their SHA-256 matches.

A shipped checkpoint ``<name>.pt`` in this folder is ``torch.save({"state_dict": ..., "metadata": ...})``
with plain types only (tensors, dicts, lists, str, int, float, bool, None), so that
``torch.load(weights_only=True)`` can read it: that loader refuses pickled Python objects, which is
what makes loading a downloaded file safe. ``SHA256SUMS`` (``sha256sum`` format: ``<hex>  <file>``)
pins every file; :func:`load_checkpoint` refuses a file whose hash differs (corrupted, truncated,
or replaced), so a stale or tampered checkpoint fails loudly instead of giving wrong answers.

Two places hold checkpoints: this folder (the weights shipped with the package) and a user folder
(``$LECTURES_CODE_HOME/checkpoints``, default ``~/.local/share/lectures_code/checkpoints``), where
``lectures train --ship`` writes when the package is installed rather than run from a source checkout.
Loading looks in the user folder first, so a model a reader retrained replaces the shipped one.
Which model class a checkpoint belongs to is the registry's business (``lectures_code.registry``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

CHECKPOINT_DIR = Path(__file__).resolve().parent  # the weights shipped with the package
SUMS_FILE = "SHA256SUMS"
HOME_ENV = "LECTURES_CODE_HOME"


def user_dir() -> Path:
    """``$LECTURES_CODE_HOME``, else ``$XDG_DATA_HOME/lectures_code``, else ``~/.local/share/lectures_code``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "lectures_code"


def in_source_checkout() -> bool:
    """True when the package runs from a git checkout of the project (an editable install), not site-packages."""
    root = CHECKPOINT_DIR.parents[1]
    return (root / "pyproject.toml").is_file() and (root / ".git").exists()


def ship_dir() -> Path:
    """Where ``--ship`` writes: this folder in a source checkout (the file is then committed), else the user's."""
    return CHECKPOINT_DIR if in_source_checkout() else user_dir() / "checkpoints"


def search_dirs() -> list[Path]:
    """Where :func:`load_checkpoint` looks, in order: the user's folder, then the shipped weights."""
    return [user_dir() / "checkpoints", CHECKPOINT_DIR]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing from SHA256SUMS, or its hash does not match."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(directory: str | os.PathLike = CHECKPOINT_DIR) -> dict[str, str]:
    """{file name: hex sha256} from ``directory/SHA256SUMS`` ({} if there is none)."""
    sums_path = Path(directory) / SUMS_FILE
    if not sums_path.is_file():
        return {}
    sums = {}
    for line in sums_path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest.lower()
    return sums


def save_checkpoint(state_dict: dict, metadata: dict, path: str | os.PathLike) -> str:
    """Save ``{"state_dict", "metadata"}`` (tensors moved to the CPU), record its hash in the folder's
    SHA256SUMS, and return the hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_state = {key: value.detach().cpu().clone() for key, value in state_dict.items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": cpu_state, "metadata": metadata}, tmp)
    os.replace(tmp, path)  # never leave a half-written file under the real name
    digest = sha256_of(path)
    sums = read_sums(path.parent)
    sums[path.name] = digest
    lines = [f"{sums[name]}  {name}\n" for name in sorted(sums)]
    (path.parent / SUMS_FILE).write_text("".join(lines))
    return digest


def find_checkpoint(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The file ``<name>.pt`` that :func:`load_checkpoint` would load: in ``directory``, or the first of
    :func:`search_dirs` that has it (the user's folder first, then the shipped weights)."""
    file_name = name if name.endswith(".pt") else f"{name}.pt"
    candidates = [Path(directory)] if directory is not None else search_dirs()
    for folder in candidates:
        if (folder / file_name).is_file():
            return folder / file_name
    raise FileNotFoundError(
        f"checkpoint {file_name} not found in {', '.join(str(c) for c in candidates)}; "
        "train it with `lectures train MODEL --ship` (`lectures list` names the models)"
    )


def load_checkpoint(name: str, directory: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """Verify and load ``<name>.pt``: returns (state_dict, metadata) on the CPU.

    ``directory=None`` looks in :func:`search_dirs` (the user's folder first, then the shipped weights).

    Raises:
        FileNotFoundError: the file does not exist (with a hint on how to make it).
        CheckpointError: the file is not listed in SHA256SUMS or its SHA-256 differs.
    """
    path = find_checkpoint(name, directory)
    directory, file_name = path.parent, path.name
    expected = read_sums(directory).get(file_name)
    if expected is None:
        raise CheckpointError(f"{file_name} is not listed in {directory / SUMS_FILE}: refusing to load it")
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointError(
            f"SHA-256 of {path} is {actual}, but {SUMS_FILE} expects {expected}: "
            "the file is corrupted or was replaced"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code can run
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a {{'state_dict', 'metadata'}} checkpoint")
    return checkpoint["state_dict"], checkpoint.get("metadata", {})


def shipped_files(directory: str | os.PathLike | None = None) -> list[str]:
    """File names (``<name>.pt``) present and listed in SHA256SUMS, in ``directory`` or in :func:`search_dirs`."""
    folders = [Path(directory)] if directory is not None else search_dirs()
    names = []
    for folder in folders:
        sums = read_sums(folder)
        names += [name for name in sorted(sums) if (folder / name).is_file() and name not in names]
    return names
