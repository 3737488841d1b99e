"""The quick profile's cells without bits/dim, to check that a change leaves training, sampling and FID alone.

bits/dim does not feed FID, and the full 1000-term diffusion bound dominates the quick profile's time
on a loaded machine, so this runs the same cells with ``bpd_images=0``. Run it at two commits (e.g. a
git worktree of the old one with PYTHONPATH pointing at it) into two folders and compare the cells'
FIDs and the runs' model.safetensors and samples.png byte for byte.

    python benchmarks/quick_fid_check.py OUT
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import zoo
from zoo.bench import PROFILES, run_bench

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    profile = dataclasses.replace(PROFILES["quick"], bpd_images=0, probe_seconds=0.2)
    run_bench(profile, zoo.list_models(), "fashion-mnist", Path(sys.argv[1]), "fmnist-cnn", "quick-fid-check", log=print)
