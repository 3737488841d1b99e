"""The trainer's parts: option validation, lr schedules, exact resume with a schedule, the log after
a resume, file modes, the divergence message and cleanup of a run that failed before it began."""
import json
import math
import os
import stat

import pytest
import torch

from zoo.errors import RunFailed, ZooError
from zoo.train import TrainConfig, TrainingDiverged, fit
from zoo.train.log import drop_after

from helpers import data, patch_loss, tiny


def _tensors(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def _meta(run):
    from safetensors import safe_open
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["zoo"])


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# ---- validation, before anything is written ------------------------------------------------
BAD = [({"batch_size": 0}, "batch_size"), ({"steps": 0}, "steps"), ({"steps": None, "tflops": 0.0}, "tflops"),
       ({"steps": None, "tflops": -1.0}, "tflops"), ({"steps": None, "tflops": math.inf}, "tflops"),
       ({"steps": None, "tflops": math.nan}, "tflops"), ({"ckpt_every": 0}, "ckpt_every"),
       ({"log_every": 0}, "log_every"), ({"ckpt_seconds": 0.0}, "ckpt_seconds"), ({"ema": 1.0}, "ema"),
       ({"ema": -0.1}, "ema"), ({"ema": math.nan}, "ema"), ({"grad_clip": -1.0}, "grad_clip"),
       ({"warmup_steps": -1}, "warmup_steps"), ({"lr_decay": "step"}, "lr_decay"),
       ({"min_lr_ratio": 1.5}, "min_lr_ratio"), ({"min_lr_ratio": -0.1}, "min_lr_ratio"), ({"seed": -1}, "seed"),
       ({"steps": None}, "exactly one budget"), ({"tflops": 1.0}, "exactly one budget"),
       ({"batch_size": 2.5}, "batch_size"), ({"lr_decay": None}, "lr_decay")]


@pytest.mark.parametrize("fields,word", BAD, ids=[str(f) for f, _ in BAD])
def test_validate_refuses_bad_options_in_one_line(fields, word):
    with pytest.raises(ZooError, match=word) as e:
        TrainConfig(**{"steps": 5, **fields}).validate()
    assert "\n" not in str(e.value)


def test_good_options_validate():
    TrainConfig(steps=1, batch_size=1, ema=0.0, grad_clip=0.0, min_lr_ratio=1.0, lr_decay="linear").validate()
    TrainConfig(tflops=1e-6, ckpt_seconds=math.inf, warmup_steps=10, lr_decay="cosine").validate()


@pytest.mark.parametrize("tcfg,images", [(TrainConfig(steps=0, batch_size=16), 512),
                                         (TrainConfig(tflops=math.nan, batch_size=16), 512),
                                         (TrainConfig(steps=2, batch_size=16), 8)])
def test_fit_refuses_before_making_the_run_folder(tmp_path, tcfg, images):
    d = data()
    with pytest.raises(ZooError):
        fit(tiny("vae"), d.images[:images], None, tmp_path / "r", tcfg, progress=False)
    assert not (tmp_path / "r").exists()


def test_user_error_found_while_training_leaves_no_half_made_run(tmp_path, monkeypatch):
    d = data()
    m = tiny("vae")

    def bad_stage(self, stage, images):
        raise ZooError("bad data for this model")
    monkeypatch.setattr(type(m), "begin_stage", bad_stage)
    with pytest.raises(ZooError, match="bad data"):
        fit(m, d.images, None, tmp_path / "new", TrainConfig(steps=2, batch_size=16), progress=False)
    assert not (tmp_path / "new").exists()  # fit made it, fit removed it
    (tmp_path / "mine").mkdir()
    with pytest.raises(ZooError, match="bad data"):
        fit(m, d.images, None, tmp_path / "mine", TrainConfig(steps=2, batch_size=16), progress=False)
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())  # the user's folder stays


# ---- the NaN stop --------------------------------------------------------------------------
def test_divergence_before_any_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch):
    d = data()
    m = tiny("vae")
    patch_loss(monkeypatch, m, after=lambda n, out: out.update(loss=out["loss"] * float("nan")))
    with pytest.raises(TrainingDiverged, match="step 1,.*no checkpoint was written, so nothing was saved") as e:
        fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=5, batch_size=16), progress=False)
    assert isinstance(e.value, RunFailed) and not isinstance(e.value, ZooError)  # exit 1, not 2
    assert "\n" not in str(e.value) and "last good" not in str(e.value)
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


# ---- learning-rate schedules ---------------------------------------------------------------
def _expected_factor(t, total, warm, decay, floor):
    if t < warm:
        return (t + 1) / warm
    q = (t - warm) / (total - warm)
    shape = 1 - q if decay == "linear" else 0.5 * (1 + math.cos(math.pi * q))
    return floor + (1 - floor) * shape


def _record_lrs():
    """lr of each optimizer at each of its steps, in the order the optimizers first step."""
    seen: dict[int, list[float]] = {}
    base: dict[int, float] = {}

    def hook(opt, args, kwargs):
        seen.setdefault(id(opt), []).append(opt.param_groups[0]["lr"])
        base[id(opt)] = opt.param_groups[0].get("initial_lr")
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    handle = register_optimizer_step_pre_hook(hook)
    return seen, base, handle


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_lr_follows_the_schedule_per_stage_with_a_flop_budget(tmp_path, monkeypatch, decay):
    """vqvae has two stages; a FLOP budget fixes each one's step count only after its first step."""
    d = data()
    seen, base, handle = _record_lrs()
    try:
        s = fit(tiny("vqvae"), d.images, None, tmp_path / "r",
                TrainConfig(tflops=0.001, batch_size=16, warmup_steps=2, lr_decay=decay, min_lr_ratio=0.1),
                progress=False)
    finally:
        handle.remove()
    assert len(seen) == 2  # one optimizer per stage
    for (key, lrs), stage in zip(seen.items(), ["ae", "prior"]):
        total = s["stage_steps"][stage]
        assert len(lrs) == total > 2
        assert lrs == [base[key] * _expected_factor(t, total, 2, decay, 0.1) for t in range(total)]
    groups = _meta(tmp_path / "r")
    for phase, key in zip(["ae", "prior"], seen):  # the lr ends on the floor
        assert groups[f"opt.{phase}.param_groups"][0]["lr"] == base[key] * 0.1


def test_default_options_leave_the_lr_alone(tmp_path, monkeypatch):
    d = data()
    m = tiny("vae")
    seen, base, handle = _record_lrs()
    try:
        fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=3, batch_size=16), progress=False)
    finally:
        handle.remove()
    assert list(seen.values()) == [[m.config.lr] * 3] and list(base.values()) == [None]  # no scheduler
    meta = _meta(tmp_path / "r")
    assert "sched" not in meta and "initial_lr" not in meta["opt.main.param_groups"][0]
    assert meta["opt.main.param_groups"][0]["lr"] == m.config.lr


def test_resume_after_a_kill_is_exact_with_a_cosine_schedule_and_the_log_has_no_repeats(tmp_path, monkeypatch):
    """Killed after step 6 with the last checkpoint at step 4: the resumed run redoes steps 5-6, ends
    bitwise identical to an uninterrupted run, and log.jsonl holds each step once."""
    d = data()
    tcfg = TrainConfig(steps=10, batch_size=16, warmup_steps=2, lr_decay="cosine", min_lr_ratio=0.1,
                       ckpt_every=4, log_every=1)
    torch.manual_seed(0)
    fit(tiny("vae"), d.images, None, tmp_path / "a", tcfg, progress=False)
    torch.manual_seed(0)
    m = tiny("vae")

    def kill_at_7(n):
        if n == 7:
            raise RuntimeError("killed")
    orig = patch_loss(monkeypatch, m, before=kill_at_7)
    with pytest.raises(RuntimeError, match="killed"):
        fit(m, d.images, None, tmp_path / "b", tcfg, progress=False)
    monkeypatch.setattr(type(m), "loss", orig)
    assert [x["step"] for x in _log(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]
    assert _meta(tmp_path / "b")["state"]["step"] == 4
    torch.manual_seed(999)  # resuming must not depend on the caller's RNG state
    fit(tiny("vae"), d.images, None, tmp_path / "b", tcfg, resume=True, progress=False)
    for name in ("checkpoint.safetensors", "model.safetensors"):
        wa, wb = _tensors(tmp_path / "a" / name), _tensors(tmp_path / "b" / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (name, k)
    ma, mb = _meta(tmp_path / "a"), _meta(tmp_path / "b")
    assert ma["sched"] == mb["sched"] and ma["opt.main.param_groups"] == mb["opt.main.param_groups"]
    la, lb = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [x["step"] for x in lb] == list(range(1, 11))
    for x in la + lb:
        x.pop("wall")
    assert la == lb


def test_resume_refuses_another_schedule(tmp_path):
    d = data()
    fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=2, batch_size=16), progress=False)
    with pytest.raises(ZooError, match="lr_decay"):
        fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=4, batch_size=16, lr_decay="cosine"),
            resume=True, progress=False)


def test_drop_after_keeps_earlier_lines_and_drops_a_torn_one(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 2, "loss": 1.0}\n{"step": 4, "loss": 0.5}\n{"step": 6, "loss": 0.25}\n{"step": 8, "lo')
    drop_after(p, 4)
    assert p.read_text() == '{"step": 2, "loss": 1.0}\n{"step": 4, "loss": 0.5}\n'


# ---- file modes ----------------------------------------------------------------------------
def test_run_files_follow_the_umask(tmp_path):
    d = data()
    old = os.umask(0o027)
    try:
        fit(tiny("vae"), d.images, None, tmp_path / "r", TrainConfig(steps=2, batch_size=16), progress=False)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "r").iterdir()}
    assert {"checkpoint.safetensors", "model.safetensors", "config.json", "log.jsonl"} <= set(modes)
    assert set(modes.values()) == {0o640}, modes
