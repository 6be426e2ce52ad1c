"""Shipped model weights: save them in a safe format, and load them only if their SHA-256 matches.

A shipped checkpoint ``<name>.pt`` in this folder is ``torch.save({"state_dict": ..., "metadata": ...})``
with plain types only (tensors, dicts, lists, str, int, float, bool, None), so that
``torch.load(weights_only=True)`` can read it: that loader refuses pickled Python objects, which is
what makes loading a downloaded file safe. ``SHA256SUMS`` (``sha256sum`` format: ``<hex>  <file>``)
pins every file; :func:`load_checkpoint` refuses a file whose hash differs (corrupted, truncated,
or replaced), so a stale or tampered checkpoint fails loudly instead of giving wrong answers.

``MODELS`` names every detector that can be shipped here (all trained on DigitCanvases) and the class that
loads it; :func:`shipped_names` says which of them are present.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import torch

CHECKPOINT_DIR = Path(__file__).resolve().parent
SUMS_FILE = "SHA256SUMS"
# checkpoint name -> (module in lectures_code.detection, model class); its metadata["config"] builds the model
MODELS = {
    "single_object_digits": ("single_object", "SingleObjectDetector"),
    "rcnn_digits": ("rcnn", "RCNN"),
    "fast_rcnn_digits": ("fast_rcnn", "FastRCNN"),
    "faster_rcnn_digits": ("faster_rcnn", "FasterRCNN"),
    "faster_rcnn_fpn_digits": ("faster_rcnn_fpn", "FasterRCNNFPN"),
    "fcos_digits": ("fcos", "FCOS"),
    "retinanet_digits": ("retinanet", "RetinaNet"),
}
SHIPPED = tuple(MODELS)


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


def load_checkpoint(name: str, directory: str | os.PathLike = CHECKPOINT_DIR) -> tuple[dict, dict]:
    """Verify and load ``directory/<name>.pt``: returns (state_dict, metadata) on the CPU.

    Raises:
        FileNotFoundError: the file does not exist (with a hint on how to make it).
        CheckpointError: the file is not listed in SHA256SUMS or its SHA-256 differs.
    """
    directory = Path(directory)
    file_name = name if name.endswith(".pt") else f"{name}.pt"
    path = directory / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found; the known ones are {', '.join(MODELS)} in {CHECKPOINT_DIR} "
            "(re-create them with `python -m lectures_code.detection.rcnn --ship` and "
            "`python -m lectures_code.detection.single_object --ship`)"
        )
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


def load_pretrained(name: str, directory: str | os.PathLike = CHECKPOINT_DIR, device: str | torch.device = "cpu"):
    """The shipped model ``name`` (a key of ``MODELS``, e.g. "faster_rcnn_digits"), hash-checked, in eval mode."""
    if name not in MODELS:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(MODELS)}")
    state_dict, metadata = load_checkpoint(name, directory)
    module_name, class_name = MODELS[name]
    module = importlib.import_module(f"lectures_code.detection.{module_name}")
    model = getattr(module, class_name)(**metadata.get("config", {}))
    model.load_state_dict(state_dict)
    model.metadata = metadata
    return model.to(device).eval()


def shipped_names(directory: str | os.PathLike = CHECKPOINT_DIR) -> list[str]:
    """The names of ``MODELS`` whose file is present and listed in SHA256SUMS (in ``MODELS`` order)."""
    sums = read_sums(directory)
    return [name for name in MODELS if f"{name}.pt" in sums and (Path(directory) / f"{name}.pt").is_file()]
