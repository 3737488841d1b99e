"""`zoo eval` as a user meets it: the installed `zoo` command in a subprocess, on the synthetic dataset
with a randomly initialised fmnist-cnn (--weights) and $ZOO_CACHE in a temporary folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.images import write_images

from helpers import data, random_cnn

ZOO = Path(sys.executable).parent / "zoo"
KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "classifier_score")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder holding fmnist-cnn weights, 40 synthetic images as a .npz and the same images as RGB PNGs."""
    root = tmp_path_factory.mktemp("eval_cli")
    random_cnn(root / "cnn.safetensors")
    images = data("synthetic", "train").images[:40]                      # (40, 1, 28, 28) gray
    write_images(images, root / "s.npz")
    write_images(images.expand(-1, 3, -1, -1).contiguous(), f"{root / 'pngs'}/")   # gray saved as RGB PNGs
    return root


def zoo_eval(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`zoo eval ARGS --weights cnn.safetensors --quiet`, run in ``root``."""
    # one thread: on a busy small machine OpenMP's spinning threads make KID's 100 tiny subsets take
    # seconds instead of milliseconds; the numbers compared here all come from the same setting
    env = {**os.environ, "ZOO_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(ZOO), "eval", *args, "--weights", "cnn.safetensors", "--quiet"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr
    return r


def test_png_folder_npz_and_saved_stats_give_identical_numbers(work):
    mets = ["--metrics", "fid,kid,pr,dc,cs", "--data", "synthetic"]
    ok(zoo_eval(work, "s.npz", *mets, "--json", "npz.json"))
    ok(zoo_eval(work, "pngs", *mets, "--json", "pngs.json"))
    ok(zoo_eval(work, "--save-stats", "ref.npz", "--data", "synthetic", "--n", "40"))
    saved = ok(zoo_eval(work, "s.npz", "--ref", "ref.npz", "--json", "saved.json"))   # --data from the file
    npz, pngs, from_stats = (json.loads((work / f"{k}.json").read_text()) for k in ("npz", "pngs", "saved"))
    assert 0 < npz["fid"] and npz["provenance"]["n"] == 40
    for k in KEYS:
        assert npz[k] == pngs[k] == from_stats[k], k                      # identical, not merely close
    assert "memorization" not in from_stats and "note: skipping mem" in saved.stderr
    assert from_stats["provenance"]["reference_stats"]["data"] == "synthetic"


def test_empty_npz_exits_2_with_one_line(work):
    (work / "empty.npz").write_bytes(b"")
    r = zoo_eval(work, "empty.npz", "--data", "synthetic")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: empty.npz: ")


def test_n_not_above_k_exits_2_with_one_line(work):
    r = zoo_eval(work, "s.npz", "--data", "synthetic", "--n", "3")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "precision/recall (k=3) need at least 4 images" in r.stderr
