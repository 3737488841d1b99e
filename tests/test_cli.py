"""The command line, through click's CliRunner: happy paths and one-line errors (exit 2)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from zoo.cli import cli


@pytest.fixture()
def runner():
    return CliRunner()


def run(runner, *args):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_everywhere(runner):
    for cmd in ([], ["list"], ["data"], ["train"], ["sample"]):
        r = run(runner, *cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.output
    assert "[default: 0]" in run(runner, "train", "--help").output


def test_list(runner):
    r = run(runner, "list")
    assert r.exit_code == 0 and "vae" in r.output and "bound" in r.output
    rows = json.loads(run(runner, "list", "--json").output)
    vae = next(x for x in rows if x["family"] == "vae")
    assert vae["likelihood"] == "bound" and vae["params"] > 0 and vae["phases"] == ["main"]


def test_data(runner):
    r = run(runner, "data", "synthetic")
    assert r.exit_code == 0 and "512 images" in r.output and "(1, 28, 28)" in r.output


def test_train_sample_interpolate(runner, tmp_path):
    out = tmp_path / "run"
    r = run(runner, "train", "vae", "--data", "synthetic", "--steps", 3, "--batch-size", 16, "--out", out,
            "--set", "widths=8,16,16", "--set", "latent_dim=4", "--set", "train.log_every=1", "--quiet",
            "--eval-bpd", 20)
    assert r.exit_code == 0, r.output
    assert "3 steps" in r.output and "bits/dim" in r.output
    assert json.loads((out / "config.json").read_text())["config"]["latent_dim"] == 4
    r = run(runner, "sample", out, "--n", 9, "--out", tmp_path / "g.png")
    assert r.exit_code == 0 and (tmp_path / "g.png").stat().st_size > 0
    r = run(runner, "sample", out, "--n", 5, "--out", tmp_path / "s.npz", "--batch-size", 2)
    imgs = np.load(tmp_path / "s.npz")["images"]
    assert imgs.shape == (5, 1, 28, 28) and imgs.dtype == np.uint8
    r = run(runner, "sample", out, "--n", 2, "--interpolate", "--frames", 4, "--out", tmp_path / "i.png")
    assert r.exit_code == 0, r.output
    r = run(runner, "train", "vae", "--data", "synthetic", "--steps", 5, "--batch-size", 16, "--out", out,
            "--resume", "--quiet")
    assert r.exit_code == 0 and "5 steps" in r.output


@pytest.mark.parametrize("args,msg", [
    (["train", "nope", "--out", "{tmp}/x", "--steps", "1"], "unknown model 'nope'"),
    (["train", "vae", "--out", "{tmp}/x", "--steps", "1", "--set", "bogus=1", "--data", "synthetic"], "unknown key 'bogus'"),
    (["train", "vae", "--out", "{tmp}/x", "--steps", "1", "--set", "latent_dim=x", "--data", "synthetic"], "expected an integer"),
    (["train", "vae", "--out", "{tmp}/x", "--steps", "1", "--set", "novalue"], "expected key=value"),
    (["train", "vae", "--out", "{tmp}/x"], "give a budget"),
    (["train", "vae", "--out", "{tmp}/x", "--steps", "1", "--data", "idx:/no/such/dir"], "does not exist"),
    (["train", "vae", "--out", "{tmp}/x", "--steps", "1", "--data", "synthetic", "--resume"], "not a run directory"),
    (["sample", "{tmp}/missing", "--out", "{tmp}/a.png"], "not a run directory"),
    (["data", "mystery"], "unknown dataset"),
])
def test_user_mistakes_exit_2_one_line(runner, tmp_path, args, msg):
    r = runner.invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    assert msg in r.output
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_sample_bad_suffix_and_option(runner, tmp_path):
    out = tmp_path / "run"
    run(runner, "train", "vae", "--data", "synthetic", "--steps", 1, "--batch-size", 16, "--out", out,
        "--set", "widths=8,16,16", "--quiet")
    r = runner.invoke(cli, ["sample", str(out), "--out", str(tmp_path / "a.jpg")])
    assert r.exit_code == 2 and "must end in .png (a grid), .npz, or /" in r.output
    r = runner.invoke(cli, ["sample", str(out), "--out", str(tmp_path / "a.png"), "--opt", "mode=weird"])
    assert r.exit_code == 2 and "unknown VAE sample mode" in r.output
    r = runner.invoke(cli, ["sample", str(out), "--out", str(tmp_path / "a.png"), "--trajectory"])
    assert r.exit_code == 2 and "no trajectory" in r.output
