"""The trainer: exact resume, budgets, FLOP counting, NaN handling, interruption, logs."""
import json

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.train import TrainConfig, TrainingDiverged, fit

from helpers import data, patch_loss, tiny


def _weights(run, name="checkpoint.safetensors"):
    from safetensors.torch import load_file
    return load_file(str(run / name))


def test_resume_is_exact(tmp_path):
    d = data()
    torch.manual_seed(0)
    straight = tiny("vae")
    fit(straight, d.images, None, tmp_path / "a", TrainConfig(steps=20, batch_size=16), progress=False)
    torch.manual_seed(0)
    first = tiny("vae")
    fit(first, d.images, None, tmp_path / "b", TrainConfig(steps=10, batch_size=16), progress=False)
    torch.manual_seed(999)  # resuming must not depend on the caller's RNG state
    again = tiny("vae")
    fit(again, d.images, None, tmp_path / "b", TrainConfig(steps=20, batch_size=16), resume=True, progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ma, mb = _weights(tmp_path / "a", "model.safetensors"), _weights(tmp_path / "b", "model.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 20


def test_flop_budget_counts_steps(tmp_path):
    d = data()
    m = tiny("vae")
    s = fit(m, d.images, None, tmp_path / "r", TrainConfig(tflops=0.002, batch_size=16), progress=False)
    per_step = s["flops_per_step"]["main/main"]
    assert per_step > 0
    assert s["steps"] == -(-int(0.002e12) // per_step)      # ceil(budget / step FLOPs)
    assert s["train_flops"] == s["steps"] * per_step
    assert s["train_flops"] >= 0.002e12 > s["train_flops"] - per_step
    # the count is FlopCounterMode's forward+backward: backward costs about twice the forward
    from zoo.perf import forward_flops_per_image
    from zoo.images import to_float
    fwd = forward_flops_per_image(m, to_float(d.images[:16]))
    assert 2.5 < per_step / (16 * fwd) < 3.5


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    d = data()
    m = tiny("vae")
    fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=5, batch_size=16), progress=False)
    before = _weights(tmp_path / "r")
    patch_loss(monkeypatch, m, after=lambda n, out: out.update(loss=out["loss"] * float("nan")) if n == 3 else None)
    with pytest.raises(TrainingDiverged, match=r"step 8,.*last good checkpoint \(step 7\) kept in"):
        fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=50, batch_size=16, ckpt_every=1),
            resume=True, progress=False)
    after = _weights(tmp_path / "r")  # checkpoints from steps 6 and 7 are good ones
    from safetensors import safe_open
    with safe_open(str(tmp_path / "r" / "checkpoint.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["zoo"])["state"]["step"] == 7  # the last finite step
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("model."))
    assert all(torch.isfinite(v).all() for k, v in after.items() if v.is_floating_point())


def test_refuses_to_overwrite_and_bad_budgets(tmp_path):
    d = data()
    m = tiny("vae")
    fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=2, batch_size=16), progress=False)
    with pytest.raises(ZooError, match="already holds a run"):
        fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=2, batch_size=16), progress=False)
    with pytest.raises(ZooError, match="exactly one budget"):
        fit(tiny("vae"), d.images, None, tmp_path / "s", TrainConfig(batch_size=16), progress=False)
    with pytest.raises(ZooError, match="nothing to resume"):
        fit(tiny("vae"), d.images, None, tmp_path / "t", TrainConfig(steps=2), resume=True, progress=False)
    with pytest.raises(ZooError, match="fewer than batch_size"):
        fit(tiny("vae"), d.images[:8], None, tmp_path / "u", TrainConfig(steps=2, batch_size=16), progress=False)
    assert not (tmp_path / "u").exists()  # refused before the run folder was made


def test_interrupt_checkpoints_and_resumes(tmp_path, monkeypatch):
    """A stop request (as from Ctrl-C) finishes the step, checkpoints, and resume continues."""
    import signal
    from zoo.train import StopRequested
    d = data()
    m = tiny("vae")
    orig = patch_loss(monkeypatch, m, before=lambda n: signal.raise_signal(signal.SIGINT) if n == 4 else None)
    with pytest.raises(StopRequested, match="step 4"):
        fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=30, batch_size=16), progress=False)
    monkeypatch.setattr(type(m), "loss", orig)
    s = fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=30, batch_size=16), resume=True,
            progress=False)
    assert s["steps"] == 30
    assert zoo.load(tmp_path / "r").sample(2).shape == (2, 1, 28, 28)


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    d = data()
    fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=2, batch_size=16), progress=False)
    p = tmp_path / "r" / "checkpoint.safetensors"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ZooError, match="corrupt or truncated"):
        fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=4, batch_size=16), resume=True,
            progress=False)


def test_log_and_records_written(tmp_path):
    d = data()
    fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=10, batch_size=16, log_every=5),
        progress=False, data_spec="synthetic")
    lines = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10]
    assert all({"loss", "flops", "wall", "epoch"} <= set(x) for x in lines)
    rec = json.loads((tmp_path / "r" / "train.json").read_text())
    assert rec["data"] == "synthetic" and rec["train"]["steps"] == 10
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["wall_s"] > 0
    import torch
    assert summary["machine"]["threads"] == torch.get_num_threads() and summary["machine"]["cpu"]


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, monkeypatch):
    """torch.compile changes kernels, not the maths: the same loss and gradients on one batch, the
    same FLOP count in the trainer, and a training curve that stays on the eager one."""
    import torch._inductor.config as inductor_config
    from zoo.images import to_float
    monkeypatch.setattr(inductor_config, "fallback_random", True)  # eager RNG streams, so the noise matches
    d = data()
    torch.manual_seed(0)
    m = tiny("vae")
    x = to_float(d.images[:16])
    grads = {}
    for name, fn in (("eager", m.loss), ("compiled", torch.compile(m.loss))):
        m.zero_grad()
        torch.manual_seed(1)
        loss = fn(x, None, phase="main")["loss"]
        loss.backward()
        grads[name] = (loss.detach(), [p.grad.clone() for p in m.parameters()])
    assert torch.allclose(grads["eager"][0], grads["compiled"][0], rtol=1e-5)
    for ge, gc in zip(grads["eager"][1], grads["compiled"][1]):
        assert torch.allclose(ge, gc, rtol=1e-3, atol=1e-6)
    runs = {}
    for name, comp in (("eager", False), ("compiled", True)):
        torch.manual_seed(0)
        runs[name] = fit(tiny("vae"), d.images, None, tmp_path / name,
                         TrainConfig(steps=6, batch_size=16, log_every=1), progress=False, compile=comp)
    assert runs["eager"]["flops_per_step"] == runs["compiled"]["flops_per_step"]
    curves = [[json.loads(line)["loss"] for line in (tmp_path / n / "log.jsonl").read_text().splitlines()]
              for n in ("eager", "compiled")]
    assert curves[0][0] == curves[1][0]  # the FLOP-counting first step runs eagerly in both
    assert all(abs(a - b) <= 1e-2 * abs(a) for a, b in zip(*curves)), curves


def test_zoo_train_writes_the_run_that_the_command_writes(tmp_path):
    """zoo.train from Python and the installed `zoo train` with the same arguments: the same weights, bit for bit."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    from safetensors.torch import load_file
    args = dict(data="synthetic", steps=3, batch_size=8, seed=1, sets=("train.log_every=1",))
    summary = zoo.train("vae", tmp_path / "py", progress=False, **args)
    cmd = [str(Path(sys.executable).parent / "zoo"), "train", "vae", "--data", "synthetic", "--steps", "3",
           "--batch-size", "8", "--seed", "1", "--set", "train.log_every=1", "--quiet", "--out", str(tmp_path / "cli")]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert summary["steps"] == 3 and "trained vae: 3 steps" in r.stdout
    for name in ("model.safetensors", "checkpoint.safetensors"):
        py, cli = load_file(str(tmp_path / "py" / name)), load_file(str(tmp_path / "cli" / name))
        assert py.keys() == cli.keys() and all(torch.equal(py[k], cli[k]) for k in py), name
    train_json = [json.loads((tmp_path / run / "train.json").read_text()) for run in ("py", "cli")]
    assert train_json[0] == train_json[1]


def test_zoo_train_refuses_a_mistake_before_writing(tmp_path):
    with pytest.raises(ZooError, match="give a budget: --steps N or --tflops F"):
        zoo.train("vae", tmp_path / "run", data="synthetic")
    with pytest.raises(ZooError, match="--text-encoder needs --conditional"):
        zoo.train("vae", tmp_path / "run", data="synthetic", steps=1, text_encoder="mlm-s")
    assert not (tmp_path / "run").exists()
    zoo.train("vae", tmp_path / "run", data="synthetic", steps=1, batch_size=8, progress=False)
    with pytest.raises(ZooError, match="already holds a run: use --resume"):
        zoo.train("vae", tmp_path / "run", data="synthetic", steps=1)
