"""fit(): the training loop, built from the pieces in this package. It knows no family.

Per step, for each phase of the current stage: zero that phase's optimizer, call
``model.loss(x, cond, phase=p)["loss"].backward()``, clip, step; then step the phase's lr
scheduler (if any) and update the EMA copy used for sampling.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch

from .. import dist
from ..api import Generator
from ..config import from_dict, to_dict
from ..errors import RunFailed, ZooError
from ..images import to_float
from ..provenance import git_commit, machine
from ..rng import MAX_SEED
from .budget import resume_stage_steps, stage_steps, steps_for_flops
from .checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ddp import wrap_phase
from .ema import EMA
from . import lock
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


def fit(model: Generator, images: torch.Tensor, cond: torch.Tensor | None, out_dir: str | os.PathLike,
        tcfg: TrainConfig, *, resume: bool = False, progress: bool = True, data_spec: str = "",
        extra_record: dict | None = None, device: str = "cpu", amp: bool = False,
        compile: bool = False) -> dict:
    """Train ``model`` on uint8 ``images`` (N,C,H,W) into ``out_dir``; returns the summary dict.

    Options and data are checked before anything is written (ZooError). ``device`` moves the
    model and each batch (the data stays in CPU memory); ``amp`` runs the losses under bf16
    autocast and ``compile`` runs them through ``torch.compile``. The one step per stage and
    phase that counts FLOPs always runs eagerly, so the budget is the same either way.

    Under torchrun (``zoo.dist``), every rank calls fit with the same arguments: each step's
    batch of ``batch_size`` images is split into equal, disjoint shares, gradients are averaged
    by DistributedDataParallel, and only rank 0 writes into ``out_dir``.
    """
    tcfg.validate()
    check_images(images, tcfg.batch_size)
    if tcfg.batch_size % dist.world():
        raise ZooError(f"batch_size {tcfg.batch_size} does not split over {dist.world()} processes: "
                       f"use a multiple of {dist.world()}")
    out = Path(out_dir)
    t = _Trainer(model, images, cond, tcfg, out, device=device, amp=amp, compile=compile,
                 progress=progress and dist.is_main())
    made_by_lock = _lock_run(out)  # before anything is read or written; rank 0 alone writes
    dist.barrier()  # every rank has checked the run folder before rank 0 writes into it
    made = None  # for a new run: whether fit made the folder
    try:
        if resume:
            t.resume()
        else:
            record = {"train": to_dict(tcfg), "data": data_spec, "stages": {s: list(v) for s, v in t.plan.items()},
                      "stage_fractions": model.stage_fractions(), "world_size": dist.world(), **(extra_record or {})}
            made = (create_run(out, model, record) or made_by_lock) if dist.is_main() else False
            t.ema = EMA(model, tcfg.ema)
    except ZooError:
        if made_by_lock:  # refused before writing: leave no folder behind
            discard_run(out, True)
        raise
    log_file = (JsonlLog(out / LOG_FILE, resume_step=t.state.step if resume else None) if dist.is_main()
                else contextlib.nullcontext(None))
    try:
        with StopSignal() as stop, log_file as log:
            t.last_ckpt_time = time.time()
            while (stage := t.state.current_stage()) is not None:
                _train_stage(t, stage, log, stop)
            return t.finish()
    except BaseException:  # a new run that ends before its first checkpoint leaves nothing behind
        if made is not None and t.ckpt_step is None and dist.is_main():
            discard_run(out, made)
        raise


def _lock_run(out: Path) -> bool:
    """Take the run folder's lock (:mod:`zoo.train.lock`) on rank 0 for the rest of the process;
    every rank raises the same one-line ZooError when another process holds it. True when taking
    it made the folder."""
    made, err = False, ""
    if dist.is_main():
        made = not out.exists()
        try:
            lock.acquire(out)
        except ZooError as e:
            err = str(e)
    if dist.active():
        err = dist.broadcast_json(err)
    if err:
        raise ZooError(err)
    return made


def _train_stage(t: "_Trainer", stage: str, log: JsonlLog | None, stop: StopSignal) -> None:
    """Run ``stage`` to its step count, logging every ``log_every`` and checkpointing on schedule
    (``log`` is None on ranks other than 0: they log nothing)."""
    from tqdm.auto import tqdm
    st, tcfg = t.state, t.tcfg
    t.begin_stage(stage)
    desc = f"{t.model.name}:{stage}" if len(t.plan) > 1 else t.model.name
    with tqdm(total=st.stage_steps[stage], initial=st.done[stage], dynamic_ncols=True,
              desc=desc, unit="step", disable=not t.progress) as bar:
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
                means = _mean_over_ranks({k: v / count for k, v in sums.items()})
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:4]}, refresh=False)
                if log is not None:
                    log.write({"step": st.step, "stage": stage, "epoch": round(t.sampler.epochs, 4),
                               "flops": st.flops, "wall": round(st.wall, 3), **means})
                sums, count = {}, 0
            # ranks agree on stopping and on a timed checkpoint (signals and clocks are per process)
            stopping, timed = _any_rank(stop.requested, now - t.last_ckpt_time > tcfg.ckpt_seconds)
            if stopping or st.step % tcfg.ckpt_every == 0 or timed:
                t.save_checkpoint()
                if stopping:
                    raise StopRequested(f"interrupted at step {st.step}; resume with --resume")


def _any_rank(*flags: bool) -> list[bool]:
    """Each flag OR-ed over the ranks (the flags themselves in one process)."""
    if not dist.active():
        return list(flags)
    return [bool(v) for v in dist.all_reduce(torch.tensor([float(f) for f in flags]), "max")]


def _mean_over_ranks(means: dict[str, float]) -> dict[str, float]:
    """Logged loss means averaged over the ranks (each rank saw its share of the batch)."""
    if not dist.active() or not means:
        return means
    avg = dist.all_reduce(torch.tensor(list(means.values()), dtype=torch.float64), "mean")
    return dict(zip(means, avg.tolist()))


class _Trainer:
    """The parts of one run (model, optimizers, schedulers, sampler, EMA, state) and one step."""

    def __init__(self, model: Generator, images: torch.Tensor, cond: torch.Tensor | None, tcfg: TrainConfig,
                 out: Path, *, device: str, amp: bool, compile: bool, progress: bool):
        self.model, self.images, self.cond, self.tcfg, self.out, self.device = model, images, cond, tcfg, out, device
        self.progress = progress
        git_commit()   # pin the commit this run starts from; the summary written at the end names it
        self.plan = model.stage_plan()
        model.to(device)
        self.autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp)
        self.groups = model.param_groups()
        phases = [p for ps in self.plan.values() for p in ps]
        if set(self.groups) != set(phases):
            raise ValueError(f"{model.name}: param_groups keys {sorted(self.groups)} != phases {phases}")
        self.optims = {p: model.configure_optimizer(p, self.groups[p]) for p in phases}
        self.loss_fn = torch.compile(model.loss) if compile else model.loss
        self.ddp: dict = {}   # phase -> DDP wrapper (or None), made at the phase's first step under torchrun
        torch.manual_seed(dist.rank_seed(tcfg.seed))
        self.sampler = BatchSampler(images.shape[0], tcfg.batch_size, (tcfg.seed + 1) % (MAX_SEED + 1))
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
            if dist.active():  # hooks draw random subsets: every rank takes rank 0's result
                dist.broadcast_state(self.model)
                cfg = from_dict(type(self.model.config), dist.broadcast_json(to_dict(self.model.config)))
                for k, v in vars(cfg).items():
                    setattr(self.model.config, k, v)
            # stage hooks may change weights/buffers; the EMA copy starts from them so that
            # a frozen earlier stage is identical in the trained and the sampling weights
            self.ema.model.load_state_dict(self.model.state_dict())
            self.state.started.append(stage)

    def step(self, stage: str) -> dict[str, float]:
        """One optimizer step of every phase of ``stage`` on the next batch; returns the losses."""
        st, phases = self.state, self.plan[stage]
        idx = self.sampler.next()
        if dist.active():  # this rank's share of the global batch: disjoint, together the whole batch
            share = self.tcfg.batch_size // dist.world()
            idx = idx[dist.rank() * share:(dist.rank() + 1) * share]
        x = to_float(self.images[idx]).to(self.device)
        y = self.cond[idx].to(self.device) if self.cond is not None else None   # the images' conditions
        out: dict[str, float] = {}
        step_flops = 0
        for p in phases:
            key = flop_key(stage, p)
            counting = key not in st.flops_per_step
            self.optims[p].zero_grad(set_to_none=True)
            with count_once(st.flops_per_step, key):
                with self.autocast:
                    losses = self._loss(p, x, y, eager=counting)
                if _any_rank(not torch.isfinite(losses["loss"]))[0]:
                    raise self._diverged(losses["loss"], stage, p)
                losses["loss"].backward()
            if counting and dist.active():  # the FLOPs of the whole batch: every rank's share
                st.flops_per_step[key] = int(dist.all_reduce(torch.tensor([st.flops_per_step[key]]))[0])
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

    def _loss(self, phase: str, x: torch.Tensor, y: torch.Tensor | None, *, eager: bool) -> dict:
        """The phase's losses on this batch: directly in one process, through its DDP wrapper under torchrun."""
        if not dist.active():
            return (self.model.loss if eager else self.loss_fn)(x, y, phase=phase)
        if phase not in self.ddp:
            self.ddp[phase] = wrap_phase(self.model, phase, self.groups[phase], self.loss_fn, self.device)
        wrapper = self.ddp[phase]
        return wrapper(x, y, eager) if wrapper is not None else self.model.loss(x, y, phase=phase)

    def _diverged(self, loss: torch.Tensor, stage: str, phase: str) -> TrainingDiverged:
        value = f"{loss.item()}" if not torch.isfinite(loss) else "on another process"
        where = f"non-finite loss ({value}) at step {self.state.step + 1}, stage {stage!r}, phase {phase!r}"
        if self.ckpt_step is None:
            return TrainingDiverged(f"{where}; no checkpoint was written, so nothing was saved "
                                    f"(start again with other settings)")
        return TrainingDiverged(f"{where}; last good checkpoint (step {self.ckpt_step}) kept in {self.out}; "
                                f"resume with --resume after changing the settings (unchanged, it diverges "
                                f"again at step {self.state.step + 1})")

    def save_checkpoint(self) -> None:
        """Write checkpoint.safetensors (atomically) with everything needed for an exact resume.

        Under torchrun every rank calls this: rank 0 writes (with every rank's RNG state) and the
        others wait until the file is there."""
        if not dist.replicas_agree(self.model):
            raise RunFailed(f"at step {self.state.step} the {dist.world()} processes hold different weights: "
                            f"{self.model.name} changes weights or buffers outside its gradients in a way that "
                            f"zoo.dist does not synchronise; the last agreeing checkpoint is kept")
        save_checkpoint(self.out / CHECKPOINT_FILE, model=self.model, ema=self.ema, optims=self.optims,
                        scheds=self.scheds, sampler=self.sampler, state=self.state, tcfg=self.tcfg)
        dist.barrier()
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
                   "params": self.model.num_params(),
                   # the same seed trains differently at another thread count or on another CPU: say which
                   "machine": machine(), "git_commit": git_commit()}
        if dist.is_main():
            write_results(self.out, self.ema.model, summary)
        dist.barrier()
        return summary
