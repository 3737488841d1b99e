"""fit(): the training loop, built from the pieces in this package. It knows no family.

Per step, for each phase of the current stage: zero that phase's optimizer, call
``model.loss(x, labels, phase=p)["loss"].backward()``, clip, step; then step the phase's lr
scheduler (if any) and update the EMA copy used for sampling.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..api import Generator
from ..config import to_dict
from ..errors import RunFailed, ZooError
from ..images import to_float
from .budget import resume_stage_steps, stage_steps, steps_for_flops
from .checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import EMA
from .flops import count_once, flop_key
from .log import LOG_FILE, JsonlLog
from .rundir import create_run, discard_run, write_results
from .sampler import BatchSampler, check_images
from .schedule import make_schedulers
from .signals import StopSignal
from .state import RunState


class TrainingDiverged(RunFailed):
    """A non-finite loss. The message says which checkpoint (if any) was kept."""


class StopRequested(Exception):
    """Raised after SIGINT/SIGTERM once the current step finished and a checkpoint is written."""


def fit(model: Generator, images: torch.Tensor, labels: torch.Tensor | None, out_dir: str | os.PathLike,
        tcfg: TrainConfig, *, resume: bool = False, progress: bool = True, data_spec: str = "",
        extra_record: dict | None = None, device: str = "cpu", amp: bool = False,
        compile: bool = False) -> dict:
    """Train ``model`` on uint8 ``images`` (N,C,H,W) into ``out_dir``; returns the summary dict.

    Options and data are checked before anything is written (ZooError). ``device`` moves the
    model and each batch (the data stays in CPU memory); ``amp`` runs the losses under bf16
    autocast and ``compile`` runs them through ``torch.compile``. The one step per stage and
    phase that counts FLOPs always runs eagerly, so the budget is the same either way.
    """
    tcfg.validate()
    check_images(images, tcfg.batch_size)
    out = Path(out_dir)
    t = _Trainer(model, images, labels, tcfg, out, device=device, amp=amp, compile=compile)
    made = None  # for a new run: whether fit made the folder
    if resume:
        t.resume()
    else:
        record = {"train": to_dict(tcfg), "data": data_spec, "stages": {s: list(v) for s, v in t.plan.items()},
                  "stage_fractions": model.stage_fractions(), **(extra_record or {})}
        made = create_run(out, model, record)
        t.ema = EMA(model, tcfg.ema)
    try:
        with StopSignal() as stop, JsonlLog(out / LOG_FILE, resume_step=t.state.step if resume else None) as log:
            t.last_ckpt_time = time.time()
            while (stage := t.state.current_stage()) is not None:
                _train_stage(t, stage, log, stop, progress)
            return t.finish()
    except ZooError:  # a user mistake found only now: leave no half-made run behind
        if made is not None and t.ckpt_step is None:
            discard_run(out, made)
        raise


def _train_stage(t: "_Trainer", stage: str, log: JsonlLog, stop: StopSignal, progress: bool) -> None:
    """Run ``stage`` to its step count, logging every ``log_every`` and checkpointing on schedule."""
    from tqdm.auto import tqdm
    st, tcfg = t.state, t.tcfg
    t.begin_stage(stage)
    desc = f"{t.model.name}:{stage}" if len(t.plan) > 1 else t.model.name
    with tqdm(total=st.stage_steps[stage], initial=st.done[stage], disable=not progress, dynamic_ncols=True,
              desc=desc, unit="step") as bar:
        sums: dict[str, float] = {}
        count, t0 = 0, time.time()
        while st.stage_steps[stage] is None or st.done[stage] < st.stage_steps[stage]:
            for k, v in t.step(stage).items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            now = time.time()
            st.wall += now - t0
            t0 = now
            if bar.total != st.stage_steps[stage]:  # a FLOP budget just fixed the step count
                bar.reset(total=st.stage_steps[stage])
                bar.update(st.done[stage])
            else:
                bar.update(1)
            if st.step % tcfg.log_every == 0 or st.done[stage] == st.stage_steps[stage]:
                means = {k: v / count for k, v in sums.items()}
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:4]}, refresh=False)
                log.write({"step": st.step, "stage": stage, "epoch": round(t.sampler.epochs, 4),
                           "flops": st.flops, "wall": round(st.wall, 3), **means})
                sums, count = {}, 0
            if stop.requested or st.step % tcfg.ckpt_every == 0 or now - t.last_ckpt_time > tcfg.ckpt_seconds:
                t.save_checkpoint()
                if stop.requested:
                    raise StopRequested(f"interrupted at step {st.step}; resume with --resume")


class _Trainer:
    """The parts of one run (model, optimizers, schedulers, sampler, EMA, state) and one step."""

    def __init__(self, model: Generator, images: torch.Tensor, labels: torch.Tensor | None, tcfg: TrainConfig,
                 out: Path, *, device: str, amp: bool, compile: bool):
        self.model, self.images, self.labels, self.tcfg, self.out, self.device = model, images, labels, tcfg, out, device
        self.plan = model.stage_plan()
        model.to(device)
        self.autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp)
        self.groups = model.param_groups()
        phases = [p for ps in self.plan.values() for p in ps]
        if set(self.groups) != set(phases):
            raise ValueError(f"{model.name}: param_groups keys {sorted(self.groups)} != phases {phases}")
        self.optims = {p: model.configure_optimizer(p, self.groups[p]) for p in phases}
        self.loss_fn = torch.compile(model.loss) if compile else model.loss
        torch.manual_seed(tcfg.seed)
        self.sampler = BatchSampler(images.shape[0], tcfg.batch_size, tcfg.seed + 1)
        self.state = RunState(done={s: 0 for s in self.plan}, stage_steps=stage_steps(model, tcfg))
        self.scheds = make_schedulers(self.optims, self.plan, self.state, tcfg)
        self.ema: EMA | None = None       # set by resume() or by fit for a new run
        self.ckpt_step: int | None = None  # step of the last checkpoint written or resumed from
        self.last_ckpt_time = time.time()

    def resume(self) -> None:
        """Restore the checkpoint in ``out`` (ZooError if there is none or it does not fit)."""
        path = self.out / CHECKPOINT_FILE
        if not path.is_file():
            raise ZooError(f"{self.out}: nothing to resume (no {CHECKPOINT_FILE})")
        self.ema, saved = load_checkpoint(path, model=self.model, optims=self.optims, scheds=self.scheds,
                                          sampler=self.sampler, state=self.state, tcfg=self.tcfg)
        resume_stage_steps(self.model, self.tcfg, self.state, saved.get("tflops"))
        self.ckpt_step = self.state.step

    def begin_stage(self, stage: str) -> None:
        """The model's stage hook, once per run; the EMA copy restarts from what the hook left."""
        if stage not in self.state.started:
            self.model.begin_stage(stage, self.images)
            # stage hooks may change weights/buffers; the EMA copy starts from them so that
            # a frozen earlier stage is identical in the trained and the sampling weights
            self.ema.model.load_state_dict(self.model.state_dict())
            self.state.started.append(stage)

    def step(self, stage: str) -> dict[str, float]:
        """One optimizer step of every phase of ``stage`` on the next batch; returns the losses."""
        st, phases = self.state, self.plan[stage]
        idx = self.sampler.next()
        x = to_float(self.images[idx]).to(self.device)
        y = self.labels[idx].to(self.device) if self.labels is not None else None
        out: dict[str, float] = {}
        step_flops = 0
        for p in phases:
            key = flop_key(stage, p)
            counting = key not in st.flops_per_step
            self.optims[p].zero_grad(set_to_none=True)
            with count_once(st.flops_per_step, key):
                with self.autocast:
                    losses = (self.model.loss if counting else self.loss_fn)(x, y, phase=p)
                if not torch.isfinite(losses["loss"]):
                    raise self._diverged(losses["loss"], stage, p)
                losses["loss"].backward()
            step_flops += st.flops_per_step[key]
            if self.tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.groups[p], self.tcfg.grad_clip)
            self.optims[p].step()
            for k, v in losses.items():
                out[f"{p}/{k}" if len(phases) > 1 else k] = float(v.detach() if torch.is_tensor(v) else v)
        if st.stage_steps[stage] is None:  # FLOP budget: now that one step is counted, fix the step count
            st.stage_steps[stage] = steps_for_flops(self.model.stage_fractions()[stage], self.tcfg.tflops, step_flops)
        st.step += 1
        st.done[stage] += 1
        st.flops += step_flops
        for p in phases:
            if p in self.scheds:
                self.scheds[p].step()
        self.ema.update(self.model, st.step)
        return out

    def _diverged(self, loss: torch.Tensor, stage: str, phase: str) -> TrainingDiverged:
        where = f"non-finite loss ({loss.item()}) at step {self.state.step + 1}, stage {stage!r}, phase {phase!r}"
        if self.ckpt_step is None:
            return TrainingDiverged(f"{where}; no checkpoint was written, so nothing was saved "
                                    f"(delete {self.out} or use another --out to start again)")
        return TrainingDiverged(f"{where}; last good checkpoint (step {self.ckpt_step}) kept in {self.out}; "
                                f"resume with --resume after changing the settings (unchanged, it diverges "
                                f"again at step {self.state.step + 1})")

    def save_checkpoint(self) -> None:
        """Write checkpoint.safetensors (atomically) with everything needed for an exact resume."""
        save_checkpoint(self.out / CHECKPOINT_FILE, model=self.model, ema=self.ema, optims=self.optims,
                        scheds=self.scheds, sampler=self.sampler, state=self.state, tcfg=self.tcfg)
        self.ckpt_step = self.state.step
        self.last_ckpt_time = time.time()

    def finish(self) -> dict:
        """Final checkpoint, sampling weights and summary.json; returns the summary."""
        self.save_checkpoint()
        st = self.state
        summary = {"family": self.model.name, "steps": st.step, "train_flops": st.flops,
                   "train_tflops": st.flops / 1e12, "epochs": round(self.sampler.epochs, 4),
                   "wall_s": round(st.wall, 2), "stage_steps": st.stage_steps,
                   "flops_per_step": st.flops_per_step, "batch_size": self.tcfg.batch_size,
                   "params": self.model.num_params()}
        write_results(self.out, self.ema.model, summary)
        return summary
