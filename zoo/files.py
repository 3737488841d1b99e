"""The names of the files zoo writes, and the few ways it writes and reads them. A leaf: it imports
only ``zoo.errors``.

Every writer and reader of a run folder, a bench folder or a statistics file names its files
through the constants here, so a name is spelled once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ZooError

if TYPE_CHECKING:
    from torch import nn

# ---- a run folder (`zoo train`, one bench cell) ----------------------------------------------------
CONFIG_FILE = "config.json"                # family, zoo version, model config: written before training
TRAIN_FILE = "train.json"                  # trainer config, data spec, stages: written before training
LOG_FILE = "log.jsonl"                     # one JSON object per log interval
CHECKPOINT_FILE = "checkpoint.safetensors" # full state for --resume
WEIGHTS_FILE = "model.safetensors"         # the EMA weights that sampling uses
SUMMARY_FILE = "summary.json"              # steps, FLOPs, wall-clock, machine, commit: written at the end
BPD_FILE = "bpd.json"                      # `zoo train --eval-bpd N`: test bits/dim
LOCK_FILE = ".lock"                        # held by the one process that writes into the folder

# ---- a bench folder (`zoo bench`) --------------------------------------------------------------------
RESULTS_FILE = "results.json"              # every cell, the rows and the provenance
SETTINGS_FILE = "bench_settings.json"      # the training settings the bench made a run with

# ---- a folder of sampled PNGs (`zoo sample --out DIR/`) ---------------------------------------------
INCOMPLETE_FILE = ".incomplete"            # present while the folder is being written; left by a kill


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to path via a temp file and rename, so readers never see half a file. The temp
    name holds the process id, so two processes writing the same file (bench shards) never share it."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_mode() -> int:
    """The mode a new file gets from ``open()``: 0o666 less the process umask (safetensors makes 0600).

    Linux reports the umask in /proc without changing it; elsewhere it is read by setting it and
    setting it back at once (a brief window in which another thread's new file gets 0o022).
    """
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def load_weights(module: "nn.Module", path: str | os.PathLike) -> None:
    """Load safetensors weights into module (strictly: every key, no other), turning a missing, corrupt
    or mismatched file into a one-line ZooError."""
    from safetensors.torch import load_model
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"missing weights file {path}")
    try:
        load_model(module, str(path), strict=True)
    except Exception as e:  # safetensors raises several types for truncated/corrupt headers
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"cannot load weights {path}: corrupt, truncated or from another model ({msg[:200]})") from None
