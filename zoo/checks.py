"""Checks of a user's arguments that the library's entry points (``zoo.train``, ``zoo.bench.run``)
make before any file or folder is made: each raises a one-line ZooError."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ZooError


def check_device(device: str) -> str:
    """A torch device string that exists here, or a one-line ZooError."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ZooError(f"--device {device!r} is not a torch device (try cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"--device {device}: no CUDA device is available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ZooError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ZooError(f"--device {device}: MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ZooError(f"--device {device}: zoo runs on cpu, cuda or mps")
    return str(dev)


def check_writable(path: str | os.PathLike, what: str = "--out", *, file_ok: bool = False) -> None:
    """Raise a one-line ZooError unless ``path`` could be created: its nearest existing ancestor must
    be a writable folder (checked before any work starts, so no run is lost at the end).
    ``file_ok``: an existing file at ``path`` is the caller's to refuse or replace (its folder is checked)."""
    p = Path(path).absolute()
    anc = p.parent if file_ok and p.is_file() else (p if p.exists() else p.parent)
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ZooError(f"{what} {path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ZooError(f"{what} {path}: cannot write in {anc} (read-only or no permission)")


def check_positive(**values) -> None:
    """One-line ZooError for the first ``--name value`` that is not >= 1 (None values are skipped)."""
    for name, v in values.items():
        if v is not None and v < 1:
            raise ZooError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def check_guidance(guidance: float | None) -> None:
    """One-line ZooError unless ``guidance`` (a classifier-free guidance scale) is None or a finite
    number >= 0 (nan is refused too: it fails every comparison)."""
    if guidance is not None and not 0 <= guidance < float("inf"):
        raise ZooError(f"--guidance must be a finite number >= 0, got {guidance}")
