"""The installed `zoo` command as scripts meet it: exit status, one line on stderr, nothing half-made.

0 done; 2 a user's mistake (one line, no folder created); 1 the run failed (one line); 130 interrupted.
Families from outside the package come in through `--import` (tests/zoo_test_family.py).
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import signal_once_logging

ZOO = str(Path(sys.executable).parent / "zoo")
TESTS = Path(__file__).resolve().parent


def zoo(*args, cwd=None, env=None, timeout=180):
    e = {**os.environ, **(env or {})}
    return subprocess.run([ZOO, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=e, timeout=timeout)


def one_line(stderr: str) -> bool:
    lines = [l for l in stderr.splitlines() if l.strip()]
    return len(lines) == 1 and "Traceback" not in stderr


TRAIN = ["train", "vae", "--data", "synthetic", "--quiet", "--set", "widths=8,16,16"]


@pytest.mark.parametrize("extra,msg", [
    (["--steps", "0"], "--steps must be >= 1"),
    (["--steps", "2", "--batch-size", "-5"], "--batch-size must be >= 1"),
    (["--steps", "2", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["--tflops", "inf"], "--tflops must be a finite number"),
    (["--tflops", "nan"], "--tflops must be a finite number"),
    (["--steps", "2", "--set", "train.ckpt_every=0"], "ckpt_every"),
    (["--steps", "2", "--set", "train.log_every=0"], "log_every"),
    (["--steps", "2", "--set", "widths="], "bad config for vae"),
    (["--steps", "2", "--set", "latent_dim=-3"], "bad config for vae"),
    (["--steps", "2", "--batch-size", "100000"], "batch_size"),
    (["--steps", "2", "--device", "cuda:7"], "--device"),
    (["--steps", "2", "--bogus-option"], "No such option"),
])
def test_train_mistakes_exit_2_and_leave_nothing(tmp_path, extra, msg):
    out = tmp_path / "run"
    r = zoo(*TRAIN, "--out", out, *extra)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) and msg in r.stderr, r.stderr
    assert not out.exists(), "a user mistake must not leave a run folder behind"


def test_success_is_0_and_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "run"
    assert zoo(*TRAIN, "--out", out, "--steps", 2, "--batch-size", 16).returncode == 0
    r = zoo(*TRAIN, "--out", out, "--steps", 2)
    assert r.returncode == 2 and "already holds a run" in r.stderr and one_line(r.stderr)
    r = zoo(*TRAIN, "--out", out, "--steps", 3, "--resume", "--batch-size", 32)
    assert r.returncode == 2 and "batch_size" in r.stderr and one_line(r.stderr)
    r = zoo(*TRAIN, "--out", out, "--steps", 3, "--resume", "--set", "train.ema=0.5")
    assert r.returncode == 2 and "ema" in r.stderr and one_line(r.stderr)
    r = zoo(*TRAIN, "--out", out, "--steps", 3, "--resume", "--batch-size", 16)   # the run's own value: fine
    assert r.returncode == 0, r.stderr
    (out / "train.json").write_text("{trunc")
    r = zoo(*TRAIN, "--out", out, "--steps", 4, "--resume")
    assert r.returncode == 2 and "corrupt" in r.stderr and one_line(r.stderr)
    (out / "train.json").unlink()
    r = zoo(*TRAIN, "--out", out, "--steps", 4, "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr and one_line(r.stderr)


def test_sample_mistakes(tmp_path):
    out = tmp_path / "run"
    assert zoo(*TRAIN, "--out", out, "--steps", 1, "--batch-size", 16).returncode == 0
    for args, msg in ((["--n", 0], "--n must be >= 1"), (["--frames", 0, "--trajectory"], "--frames must be >= 1"),
                      (["--out", tmp_path / "x.jpg"], "must end in"), (["--seed", -1], "--seed")):
        kw = {"--out": tmp_path / "g.png"}
        a = list(args)
        if "--out" not in a:
            a += ["--out", kw["--out"]]
        r = zoo("sample", out, *a)
        assert r.returncode == 2 and msg in r.stderr and one_line(r.stderr), (args, r.stderr)
    r = zoo("sample", out, "--n", 3, "--out", f"{tmp_path}/pngs/")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_read_only_out(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders, and no read-only mount could be made here")
        ro.chmod(0o555)
    try:
        r = zoo(*TRAIN, "--out", ro / "run", "--steps", 1)
        assert r.returncode == 2 and one_line(r.stderr) and "--out" in r.stderr, r.stderr
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], capture_output=True)


def test_outside_family_trains_samples_and_nan_stop_exits_1(tmp_path):
    env = {"PYTHONPATH": str(TESTS)}
    r = zoo("list", "--import", "zoo_test_family", env=env)
    assert r.returncode == 0 and "toy_mean" in r.stdout
    r = zoo("train", "toy_mean", "--data", "synthetic", "--steps", 5, "--batch-size", 8, "--out", tmp_path / "t",
            "--quiet", "--import", "zoo_test_family", env=env)
    assert r.returncode == 0, r.stderr
    r = zoo("sample", tmp_path / "t", "--n", 4, "--out", tmp_path / "t.npz", env=env)
    assert r.returncode == 2 and "--import" in r.stderr and one_line(r.stderr)   # unknown family: a hint, no import
    r = zoo("--import", "zoo_test_family", "sample", tmp_path / "t", "--n", 4, "--out", tmp_path / "t.npz", env=env)
    assert r.returncode == 0 and (tmp_path / "t.npz").exists(), r.stderr
    r = zoo("train", "toy_nan", "--data", "synthetic", "--steps", 20, "--batch-size", 8, "--out", tmp_path / "n",
            "--quiet", "--import", "zoo_test_family", env=env)
    assert r.returncode == 1 and one_line(r.stderr) and "non-finite" in r.stderr, r.stderr
    r = zoo("train", "toy_mean", "--steps", 1, "--out", tmp_path / "m", "--import", "no_such_module_xyz", env=env)
    assert r.returncode == 2 and one_line(r.stderr) and "no_such_module_xyz" in r.stderr


def test_ctrl_c_exits_130_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    out = tmp_path / "run"
    p = subprocess.Popen([ZOO, "train", "toy_mean", "--data", "synthetic", "--steps", "200000", "--batch-size", "8",
                          "--out", str(out), "--quiet", "--import", "zoo_test_family"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, err = signal_once_logging(p, out, signal.SIGINT, timeout=60, poll=0.2, settle=0.5)
    assert p.returncode == 130, err
    assert "resume" in err and (out / "checkpoint.safetensors").exists()
    step = json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"]
    assert step >= 1


@pytest.mark.parametrize("setting, message", [
    ("loss_weight=snr", "unknown loss_weight 'snr'"),
    ("spacing=even", "unknown timestep spacing 'even'"),   # a sampler setting fails before training, too
    ("variance=tiny", "unknown variance 'tiny'"),
    ("steps=5000", "steps must be between 1 and 1000"),
])
def test_bad_diffusion_setting_exits_2_in_one_line_before_training(tmp_path, setting, message):
    out = tmp_path / "run"
    r = zoo("train", "diffusion", "--data", "synthetic", "--quiet", "--steps", 2, "--set", "widths=4,8,8",
            "--set", setting, "--out", out)
    assert r.returncode == 2 and one_line(r.stderr) and message in r.stderr, r.stderr
    assert not out.exists()
