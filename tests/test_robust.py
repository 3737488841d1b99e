"""Two commands meeting, interrupted writes, huge numbers: the installed `zoo` loses nothing.

Each test runs `zoo` in a subprocess, as scripts, job arrays and torchrun meet it.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ZOO = str(Path(sys.executable).parent / "zoo")
TESTS = Path(__file__).resolve().parent
TINY = ["--data", "synthetic", "--batch-size", "16", "--quiet", "--set", "widths=8,16,16", "--set", "latent_dim=4"]


def zoo(*args, env=None, timeout=300):
    return subprocess.run([ZOO, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in stderr


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    t = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t < seconds, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("robust") / "run"
    r = zoo("train", "vae", *TINY, "--steps", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_second_writer_is_refused_and_the_run_stays_whole(tmp_path):
    out = tmp_path / "R"
    first = subprocess.Popen([ZOO, "train", "vae", *TINY, "--steps", str(10 ** 6), "--out", str(out),
                              "--set", "train.ckpt_every=5", "--set", "train.log_every=1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out / "checkpoint.safetensors", first)
        r = zoo("train", "vae", *TINY, "--steps", 10 ** 6 + 1, "--resume", "--out", out)
        assert r.returncode == 2 and one_line(r.stderr), r.stderr
        assert f"PID {first.pid}" in r.stderr and "in use" in r.stderr
        r = zoo("train", "vae", *TINY, "--steps", 5, "--out", out)   # a new run into it: refused too
        assert r.returncode == 2 and one_line(r.stderr), r.stderr
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    step = json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"]
    r = zoo("train", "vae", *TINY, "--steps", step + 2, "--resume", "--out", out)
    assert r.returncode == 0, r.stderr
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, step + 3))   # every line parses, none twice
    assert not (out / ".lock").exists()   # removed on a normal exit


def test_lock_is_released_by_kill_9(tmp_path):
    out = tmp_path / "R"
    p = subprocess.Popen([ZOO, "train", "vae", *TINY, "--steps", str(10 ** 6), "--out", str(out),
                          "--set", "train.ckpt_every=3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(out / "checkpoint.safetensors", p)
    p.kill()
    p.wait()
    assert (out / ".lock").exists()   # left by the kill, but not held
    from safetensors import safe_open
    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        step = json.loads(f.metadata()["zoo"])["state"]["step"]
    r = zoo("train", "vae", *TINY, "--steps", step + 1, "--resume", "--out", out)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_sample_folder_is_one_whole_set(run, tmp_path):
    d = tmp_path / "D"
    assert zoo("sample", run, "--n", 6, "--out", f"{d}/").returncode == 0
    r = zoo("sample", run, "--n", 3, "--seed", 5, "--out", f"{d}/")
    assert r.returncode == 2 and one_line(r.stderr) and "not empty" in r.stderr and "--force" in r.stderr
    assert len(list(d.glob("*.png"))) == 6
    r = zoo("sample", run, "--n", 3, "--seed", 5, "--out", f"{d}/", "--force")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in d.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    for target in (f"{run}/", f"{run}/inside/", f"{run}/x.npz"):
        r = zoo("sample", run, "--n", 2, "--out", target)
        assert r.returncode == 2 and one_line(r.stderr) and "inside the run folder" in r.stderr
    (tmp_path / "x.npz").write_bytes(b"mine")
    r = zoo("sample", run, "--n", 2, "--out", tmp_path / "x.npz")
    assert r.returncode == 2 and one_line(r.stderr) and "exists" in r.stderr and "--force" in r.stderr
    assert (tmp_path / "x.npz").read_bytes() == b"mine"
    assert zoo("sample", run, "--n", 2, "--out", tmp_path / "x.npz", "--force").returncode == 0
    assert (tmp_path / "x.npz").read_bytes() != b"mine"


def test_temp_files_are_skipped_and_an_incomplete_folder_refused(run, tmp_path):
    from zoo.images import read_images
    d = tmp_path / "D"
    assert zoo("sample", run, "--n", 4, "--out", f"{d}/").returncode == 0
    (d / ".000004.png.tmp.png").write_bytes(b"\x89PNG half")   # what a kill mid-write leaves
    assert read_images(d).shape[0] == 4
    (d / ".incomplete").write_text("")
    r = zoo("eval", d, "--n", 4)
    assert r.returncode == 2 and one_line(r.stderr) and "incomplete" in r.stderr and "--force" in r.stderr


def test_sigterm_mid_sample_exits_130_and_leaves_the_folder_marked(run, tmp_path):
    d = tmp_path / "D"
    p = subprocess.Popen([ZOO, "sample", str(run), "--n", "20000", "--out", f"{d}/"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_for(d / "000010.png", p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert (d / ".incomplete").exists()
    r = zoo("sample", run, "--n", 2, "--out", f"{d}/", "--force")
    assert r.returncode == 0 and sorted(x.name for x in d.iterdir()) == ["000000.png", "000001.png"]


@pytest.mark.parametrize("sets,field", [(["cond_drop=1.5"], "cond_drop"), (["cond_drop=nan"], "cond_drop"),
                                        (["cond_drop=-0.1"], "cond_drop")])
def test_probabilities_are_checked(tmp_path, sets, field):
    r = zoo("train", "vae", *TINY, "--steps", 1, "--out", tmp_path / "r", *[a for s in sets for a in ("--set", s)])
    assert r.returncode == 2 and one_line(r.stderr) and field in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_probability_fields_of_families():
    from zoo import ZooError, get_model
    for family, field, bad in (("pixel_gpt", "dropout", 1.0), ("vqvae", "prior_dropout", float("nan")),
                               ("vqvae", "ema_decay", 1.5), ("diffusion", "cond_drop", float("inf"))):
        with pytest.raises(ZooError, match=field):
            get_model(family, **{field: bad})


@pytest.mark.parametrize("args", [
    ["train", "diffusion", "--data", "synthetic", "--steps", 1, "--conditional", "--text-encoder", "clip"],
    ["train", "cascade", "--data", "synthetic", "--steps", 1, "--set", "base_set=cond_dim=16"],
    ["train", "vae", *TINY, "--steps", 1, "--seed", 2 ** 64],
    ["bench", "--tiny", "--seeds", f"0,{2 ** 64}"],
    ["bench", "--tiny", "--seeds", f"0-{10 ** 12}"],
])
def test_one_line_refusals_leave_no_folder(tmp_path, args):
    r = zoo(*args, "--out", tmp_path / "out")
    assert r.returncode == 2 and one_line(r.stderr), r.stderr
    assert "clip" not in r.stderr.split("encoders:")[-1]
    assert not (tmp_path / "out").exists()


def test_largest_seed_trains_and_samples(run, tmp_path):
    r = zoo("train", "vae", *TINY, "--steps", 1, "--seed", 2 ** 64 - 1, "--out", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    r = zoo("sample", run, "--n", 2, "--seed", 2 ** 64 - 1, "--out", tmp_path / "s.npz")
    assert r.returncode == 0, r.stderr
    for cmd in (["sample", run, "--n", 2, "--out", tmp_path / "t.npz"], ["eval", tmp_path / "s.npz", "--n", 2]):
        r = zoo(*cmd, "--seed", 2 ** 64)
        assert r.returncode == 2 and one_line(r.stderr) and "2**64-1" in r.stderr, r.stderr


@pytest.mark.parametrize("n", [10 ** 9, 2 ** 70])
def test_huge_n_is_refused_with_the_memory_it_needs(run, tmp_path, n):
    r = zoo("sample", run, "--n", n, "--out", tmp_path / "x.npz")
    assert r.returncode == 2 and one_line(r.stderr) and "GB" in r.stderr, r.stderr
    assert not (tmp_path / "x.npz").exists()


def test_a_family_that_raises_leaves_a_folder_it_can_retry(tmp_path):
    (tmp_path / "toy_raise.py").write_text(
        "import zoo\nfrom zoo_test_family import ToyMean\n\n\n@zoo.register_model('toy_raise')\n"
        "class ToyRaise(ToyMean):\n    def loss(self, x, labels=None, *, phase='main'):\n"
        "        raise RuntimeError('the family is broken')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    args = ["train", "toy_raise", "--data", "synthetic", "--steps", 3, "--batch-size", 8, "--quiet",
            "--out", tmp_path / "r", "--import", "toy_raise"]
    r = zoo(*args, env=env)
    assert r.returncode == 1 and "the family is broken" in r.stderr
    assert not (tmp_path / "r").exists()
    # records without a checkpoint (a kill before the first one) do not block a new run
    ok = ["train", "vae", *TINY, "--steps", 1, "--out", tmp_path / "k"]
    assert zoo(*ok).returncode == 0
    for name in ("checkpoint.safetensors", "model.safetensors", "summary.json"):
        (tmp_path / "k" / name).unlink()
    assert zoo(*ok).returncode == 0


def test_other_ranks_keep_quiet(run, tmp_path):
    for rank, quiet in (("1", True), ("0", False)):
        r = zoo("sample", run, "--opt", "novalue", "--out", tmp_path / "g.png",
                env={"WORLD_SIZE": "2", "RANK": rank, "LOCAL_RANK": rank})
        assert r.returncode == 2 and (r.stderr.strip() == "") == quiet, r.stderr


def test_cuda_rng_states_are_saved_and_restored(tmp_path, monkeypatch):
    """A fake CUDA machine with two devices, while checkpoints are written and read: the checkpoint
    carries both states and resume sets them."""
    import zoo.train.loop as loop
    from zoo import get_model
    from zoo.train import TrainConfig, fit
    from zoo.train.checkpoint import CHECKPOINT_FILE
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored = []

    def on_fake_gpu(fn):
        def call(*args, **kwargs):
            with monkeypatch.context() as m:
                m.setattr(torch.cuda, "is_available", lambda: True)
                m.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
                m.setattr(torch.cuda, "set_rng_state_all", lambda new: restored.extend(new))
                return fn(*args, **kwargs)
        return call
    monkeypatch.setattr(loop, "save_checkpoint", on_fake_gpu(loop.save_checkpoint))
    monkeypatch.setattr(loop, "load_checkpoint", on_fake_gpu(loop.load_checkpoint))
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    model = get_model("vae", widths=(8, 16, 16), latent_dim=4)
    fit(model, images, None, tmp_path / "r", TrainConfig(steps=2, batch_size=16), progress=False)
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "r" / CHECKPOINT_FILE))
    assert torch.equal(saved["rng.cuda"], torch.stack(states))
    states[0] = torch.zeros(16, dtype=torch.uint8)   # the machine's state moves on; resume restores the saved one
    fit(get_model("vae", widths=(8, 16, 16), latent_dim=4), images, None, tmp_path / "r",
        TrainConfig(steps=3, batch_size=16), resume=True, progress=False)
    assert len(restored) == 2 and torch.equal(restored[0], torch.arange(16, dtype=torch.uint8))
