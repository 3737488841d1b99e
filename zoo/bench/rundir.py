"""A cell's run folder (``runs/<family>-s<seed>``): what zoo writes there, and what the bench may remove.

The bench deletes only the files that zoo itself writes into a run folder, never anything else,
and refuses a run folder that is a symbolic link (it would otherwise write into, or clear, the
link's target). Files it does not know are left where they are and the folder is still used:
they cannot change what is trained or measured.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..files import (CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, LOG_FILE, SETTINGS_FILE, SUMMARY_FILE, TRAIN_FILE,
                     WEIGHTS_FILE, atomic_write_text)
from ..errors import ZooError
from ..provenance import REPEAT_KEYS

RUNS_DIR = "runs"
_WRITTEN = (CONFIG_FILE, TRAIN_FILE, LOG_FILE, CHECKPOINT_FILE, WEIGHTS_FILE, SUMMARY_FILE, SETTINGS_FILE,
            "samples.png", "interpolation.png")
# each of them, the run-folder lock, and the temporary names of their atomic writes (name.tmp;
# images: .name.tmp.png)
ZOO_FILES = frozenset(_WRITTEN) | {LOCK_FILE} | {f + ".tmp" for f in _WRITTEN} | {
    f".{f}.tmp.png" for f in _WRITTEN if f.endswith(".png")}


def run_dir(out: Path, name: str) -> Path:
    """The run folder of cell ``name`` ('vae-s0') in bench folder ``out``."""
    return out / RUNS_DIR / name


def refuse_symlink(path: Path) -> None:
    """One-line ZooError when the run folder ``path`` is a symbolic link."""
    if path.is_symlink():
        raise ZooError(f"{path} is a symbolic link: the bench does not follow linked run folders "
                       "(remove the link, or use another --out)")


def foreign_files(path: Path) -> list[str]:
    """Names in run folder ``path`` that zoo does not write there."""
    return sorted(p.name for p in path.iterdir() if p.name not in ZOO_FILES) if path.is_dir() else []


def has_training(path: Path) -> bool:
    """Whether the run folder holds training worth keeping: a finished run or a checkpoint."""
    return (path / SUMMARY_FILE).exists() or (path / CHECKPOINT_FILE).exists()


def is_trained(path: Path) -> bool:
    """Whether the run folder holds a finished run (its summary and weights)."""
    return (path / SUMMARY_FILE).exists() and (path / WEIGHTS_FILE).exists()


def train_provenance(summary: dict) -> dict:
    """A cell's ``train_provenance`` from its run folder's summary: the commit and machine of training."""
    return {"git_commit": summary.get("git_commit"), **summary.get("machine", {})}


def trained_as_recorded(path: Path, cell: dict) -> bool:
    """Whether the finished run in ``path`` is the one ``cell`` records: the commit, CPU, GPU, thread
    count and torch of its training are those of the cell's ``train_provenance`` (a run folder trained
    again, by ``zoo bench --rebuild``, differs at least in its commit or is checked as if it did)."""
    try:
        here = train_provenance(json.loads((path / SUMMARY_FILE).read_text()))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    recorded = cell.get("train_provenance", {})
    return all(here.get(k) == recorded.get(k) for k in ("git_commit", *REPEAT_KEYS))


def recorded_settings(path: Path) -> dict | None:
    """The training settings the bench recorded in the run folder; None if absent or unreadable."""
    try:
        rec = json.loads((path / SETTINGS_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def clear_run(path: Path) -> list[str]:
    """Delete the files zoo writes into run folder ``path`` (only regular files and links with those
    names; never a folder, never anything else); returns the names left in place."""
    refuse_symlink(path)
    for name in ZOO_FILES:
        p = path / name
        if p.is_file() or p.is_symlink():
            p.unlink()
    return foreign_files(path)


def start_run(path: Path, settings: dict) -> str:
    """Get run folder ``path`` ready to train with ``settings`` (already checked against it by the
    runner): 'trained' (reuse it), 'resume' (continue from its checkpoint) or 'fresh' (start over,
    after removing what a run killed before its first checkpoint left)."""
    refuse_symlink(path)
    if is_trained(path):
        return "trained"
    if (path / CHECKPOINT_FILE).exists():
        return "resume"
    if path.exists():
        clear_run(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / SETTINGS_FILE, json.dumps(settings, indent=2))
    return "fresh"
