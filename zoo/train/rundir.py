"""The run directory: its records written before training, its results after, and cleanup."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ..api import Generator, config_record, save
from ..files import (CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE, SUMMARY_FILE, TRAIN_FILE, WEIGHTS_FILE,
                     atomic_write_text)
from ..errors import ZooError
from . import lock

def refuse_run(out: Path) -> None:
    """One-line ZooError when ``out`` already holds a run (see :func:`holds_run`): a new run never
    writes over one."""
    if holds_run(out):
        raise ZooError(f"{out} already holds a run: use --resume, or another --out")


def read_train_record(out: Path) -> dict:
    """The run's train.json, or a one-line ZooError (missing, corrupt, or not a zoo run)."""
    path = out / TRAIN_FILE
    if not path.is_file():
        raise ZooError(f"{out}: nothing to resume (no train.json: not a zoo run folder, or not started)")
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ZooError(f"{path}: corrupt (not valid JSON); this run cannot be resumed") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("train"), dict):
        raise ZooError(f"{path}: corrupt (no 'train' record); this run cannot be resumed")
    return rec


def create_run(out: Path, model: Generator, record: dict) -> bool:
    """Refuse a folder that holds a run; else write config.json and train.json. True if it made ``out``."""
    refuse_run(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, json.dumps(config_record(model), indent=2))
    atomic_write_text(out / TRAIN_FILE, json.dumps(record, indent=2))
    return made


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run: its records with a checkpoint or weights, or with a process still
    writing there. Records alone are what a run killed before its first checkpoint left, and a new
    run may replace them."""
    if not (out / CONFIG_FILE).exists():
        return False
    return ((out / CHECKPOINT_FILE).exists() or (out / WEIGHTS_FILE).exists()
            or (not lock.held(out) and lock.in_use(out)))


def discard_run(out: Path, made: bool) -> None:
    """Remove what :func:`create_run` and the log wrote (and ``out`` itself if it made it and it is
    empty), and give up the run-folder lock."""
    lock.release(out)
    for name in (CONFIG_FILE, TRAIN_FILE, LOG_FILE):
        (out / name).unlink(missing_ok=True)
    if made and not any(out.iterdir()):
        out.rmdir()


def write_results(out: Path, ema_model: Generator, summary: dict) -> None:
    """The sampling weights (model.safetensors, with config.json) and summary.json."""
    save(copy.deepcopy(ema_model).cpu(), out, weights_name=WEIGHTS_FILE)
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2))
