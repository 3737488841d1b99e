"""zoo.evaluate, the one call behind `zoo eval`: the same record as the command for the same images,
the n it states, the dataset-spec test shared with zoo.data, and statistics writes that leave no
temporary file when interrupted. Features come from a randomly initialised fmnist-cnn."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.data import is_dataset_spec, load_dataset
from zoo.errors import ZooError
from zoo.images import write_images
from zoo.metrics.inputs import source_kind
from zoo.metrics.reference import images_reference, save_stats

from helpers import data, random_cnn

ZOO = Path(sys.executable).parent / "zoo"
METRIC_KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "classifier_score",
               "min_class_share", "memorization")


def run_zoo(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZOO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(ZOO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_evaluate_on_a_tensor_equals_zoo_eval_on_the_same_images_as_npz(tmp_path, tmp_cache):
    ext = random_cnn(tmp_path / "cnn.safetensors")
    images = data("synthetic", "train").images[:40].flip(-1)        # (40, 1, 28, 28) uint8, not test images
    res = zoo.evaluate(images, ref="synthetic", n=40, weights=tmp_path / "cnn.safetensors")
    for k in METRIC_KEYS:
        assert isinstance(res[k], float) and math.isfinite(res[k]), k
    assert res["fid"] > 0 and res["provenance"]["n"] == res["provenance"]["n_fake"] == 40
    assert res["provenance"]["weights_sha256"] == ext.weights_sha256 and res["ref"] == "synthetic"

    write_images(images, tmp_path / "s.npz")
    r = run_zoo(tmp_path, tmp_cache, "eval", "s.npz", "--ref", "synthetic", "--n", "40", "--weights", "cnn.safetensors",
                "--json", "cli.json", "--quiet")
    assert r.returncode == 0, r.stderr
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert cli["command"].startswith("zoo eval s.npz") and "command" not in res
    for k in METRIC_KEYS:
        assert cli[k] == res[k], k                                       # identical, not merely close
    prov, cli_prov = res["provenance"], cli["provenance"]
    for k in ("n", "n_fake", "reference", "metrics", "extractor", "weights_sha256", "data", "kid_subset_size"):
        assert cli_prov[k] == prov[k], k
    assert set(cli) - {"command"} == set(res)                           # the same record, less the command
    # the result line states n on each side, the table header too
    assert "s.npz (n=40): n=40 images scored against n=40 reference images (first 40 images of the synthetic " \
           "test split)" in r.stdout
    assert "FID" in r.stdout and "(n=40)" in r.stdout.splitlines()[1]


def test_evaluate_takes_the_same_sources_as_zoo_eval(tmp_path, tmp_cache):
    random_cnn(tmp_path / "cnn.safetensors")
    w = {"weights": str(tmp_path / "cnn.safetensors"), "data": "synthetic", "metrics": "fid,kid"}
    fake, real = data("synthetic", "train").images[:30], data("synthetic", "test").images[:30]
    write_images(fake, tmp_path / "fake.npz")
    write_images(real, f"{tmp_path / 'real'}/")                         # a folder of PNGs
    by_tensor = zoo.evaluate(fake, ref=real, **w)
    by_files = zoo.evaluate(tmp_path / "fake.npz", ref=str(tmp_path / "real"), **w)
    assert by_tensor["fid"] == by_files["fid"] and by_tensor["kid_mean"] == by_files["kid_mean"]
    assert by_files["ref"] == str(tmp_path / "real") and by_files["samples"] == str(tmp_path / "fake.npz")
    notes = []
    res = zoo.evaluate(fake, ref=real, weights=w["weights"], data="synthetic", log=notes.append)
    assert "memorization" not in res and any(n.startswith("note: skipping mem") for n in notes)
    with pytest.raises(ZooError, match="--n 31 is more than the 30 images"):
        zoo.evaluate(fake, ref=real, n=31, **w)
    with pytest.raises(ZooError, match="two datasets"):
        zoo.evaluate(fake, weights=w["weights"], data="synthetic")     # ref defaults to fashion-mnist


@pytest.mark.parametrize("text", ["fashion-mnist", "synthetic", "synthetic:16", "synthetic:16:3", "synthetic:x",
                                  "idx:/no/such/folder", "folder:/no/such/folder", "mnist", "cifar10", "Synthetic",
                                  "synthetic16", "./synthetic", "runs/vae", "s.npz", ""])
def test_is_dataset_spec_agrees_with_load_dataset(text, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_FASHION_MNIST", str(tmp_path))          # fashion-mnist may be absent: still a spec
    try:
        load_dataset(text, "test")
        accepted = True
    except ZooError as e:
        accepted = not str(e).startswith("unknown dataset")
    assert is_dataset_spec(text) == accepted


def test_source_kind_reaches_a_folder_named_like_a_spec_as_dot_slash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("synthetic").mkdir()
    assert source_kind("synthetic") == "dataset" and source_kind("./synthetic") == "folder"
    assert source_kind(data().images[:2]) == "tensor"


def test_interrupted_stats_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    ext = random_cnn(tmp_path / "cnn.safetensors")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ref = images_reference(data().images[:8], "8 images")

    def killed(fh, **arrays):
        fh.write(b"x" * 1000)                                           # part of the file is written
        raise KeyboardInterrupt                                         # as SIGTERM or Ctrl-C would
    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        save_stats(out_dir / "ref.npz", ref, ext)
    assert list(out_dir.iterdir()) == []
    monkeypatch.undo()
    save_stats(out_dir / "ref.npz", ref, ext)                           # and a normal write leaves only the file
    assert [p.name for p in out_dir.iterdir()] == ["ref.npz"]


def test_features_train_refuses_a_bad_out_before_training(tmp_path):
    r = run_zoo(tmp_path, tmp_path / "cache", "features", "train", "--data", "synthetic", "--out", "w.pt")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.strip() == "error: --out must end in .safetensors, got 'w.pt'"
