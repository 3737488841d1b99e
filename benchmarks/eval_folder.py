"""Time `zoo eval` on a folder of PNG files and on a .npz of the same images, against saved statistics.

Writes N fashion-mnist train images (default 2,000) as one PNG per image and as a .npz, saves the
statistics of the fashion-mnist test split once (`zoo eval --save-stats`), then times

    zoo eval FOLDER --ref stats.npz --metrics fid
    zoo eval IMAGES.npz --ref stats.npz --metrics fid

with the installed `zoo` command (wall-clock of the whole command, Python start-up included; the
samples' feature time as the command's --json records it) and prints both FIDs, which must be
identical. FID alone by default, so that the table shows the cost of reading the input; --metrics
adds the others (KID's 100 subsets dominate then). Uses only the public API and the command line.

Usage: python benchmarks/eval_folder.py [--n 2000] [--features fmnist-cnn] [--metrics fid] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.data import load_dataset
from zoo.images import write_images
from zoo.provenance import describe_machine, git_commit, machine

ZOO = Path(sys.executable).parent / "zoo"


def timed(args: list[str], cwd: Path) -> float:
    """Run `zoo ARGS` in ``cwd``; seconds of wall-clock. Exits with its stderr if it fails."""
    t = time.perf_counter()
    r = subprocess.run([str(ZOO), *args], cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"zoo {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images to write and score")
    ap.add_argument("--features", default="fmnist-cnn", choices=["fmnist-cnn", "inception"])
    ap.add_argument("--metrics", default="fid", help="passed to zoo eval (comma-separated)")
    ap.add_argument("--keep", default=None, help="write the files here and keep them (default: a temporary folder)")
    a = ap.parse_args()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="zoo-eval-folder-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        images = load_dataset("fashion-mnist", "train").images[:a.n]          # (n, 1, 28, 28) uint8
        t = time.perf_counter()
        write_images(images, f"{work / 'pngs'}/")
        t_png = time.perf_counter() - t
        t = time.perf_counter()
        write_images(images, work / "images.npz")
        t_npz = time.perf_counter() - t
        feat = ["--features", a.features, "--quiet"]
        t_stats = timed(["eval", "fashion-mnist", "--save-stats", "stats.npz", *feat], work)
        rows = [("write PNG folder (write_images)", t_png, None, None),
                ("write .npz (write_images)", t_npz, None, None),
                ("zoo eval fashion-mnist --save-stats stats.npz", t_stats, None, None)]
        for src in ("pngs", "images.npz"):
            out = f"{Path(src).stem}.json"
            dt = timed(["eval", src, "--ref", "stats.npz", "--metrics", a.metrics, "--json", out, *feat], work)
            rec = json.loads((work / out).read_text())
            rows.append((f"zoo eval {src} --ref stats.npz", dt, rec["time_s"].get("fake_features"), rec["fid"]))
        fids = [r[3] for r in rows if r[3] is not None]
        print(f"# {a.n} fashion-mnist train images vs saved statistics of the 10,000 test images, "
              f"{a.features} features, --metrics {a.metrics}")
        print(f"# {describe_machine(machine())}; load average {os.getloadavg()[0]:.1f}; commit {git_commit()}")
        print(f"{'step':<48}{'wall s':>8}{'features s':>12}  {'FID':>20}")
        for name, dt, ft, fid in rows:
            print(f"{name:<48}{dt:>8.2f}{'' if ft is None else f'{ft:.2f}':>12}  {'' if fid is None else repr(fid):>20}")
        print(f"FIDs identical: {len(set(fids)) == 1}")
        if len(set(fids)) != 1:
            sys.exit(1)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
