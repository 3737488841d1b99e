"""fit(): the training loop. It knows the Generator contract and nothing of any family.

Per step, for each phase of the current stage: zero that phase's optimizer, call
``model.loss(x, labels, phase=p)["loss"].backward()``, clip, step. Then update the EMA copy
(used for sampling). Budgets are in steps or in training FLOPs; FLOPs are counted once per
(stage, phase) step shape with ``torch.utils.flop_counter.FlopCounterMode`` and converted to a
step count for the stage, so a FLOP budget is hardware-independent and resume-stable.

Run directory:
  config.json         family, package version, model config (written before training)
  train.json          trainer config, data spec, seed (written before training)
  log.jsonl           one JSON object per log interval (appended)
  checkpoint.safetensors   full state for --resume (weights, EMA, optimizers, RNG, counters)
  model.safetensors   EMA weights, what `zoo.load` and sampling use
  summary.json        steps, FLOPs, epochs, wall-clock at the end
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .api import (CONFIG_FILE, WEIGHTS_FILE, Generator, atomic_write_text, config_record,
                  load_weights, save)
from .config import to_dict
from .errors import ZooError
from .images import to_float

CHECKPOINT_FILE = "checkpoint.safetensors"


@dataclasses.dataclass
class TrainConfig:
    """Trainer options (``--set train.KEY=VALUE`` on the command line)."""
    batch_size: int = 128
    steps: int | None = None        # budget in optimizer steps (all stages together)
    tflops: float | None = None     # budget in training TFLOP (forward + backward, all phases)
    ema: float = 0.999              # EMA decay of the sampling weights (warmed up early on)
    grad_clip: float = 1.0          # max global grad norm per phase; 0 disables
    ckpt_every: int = 1000          # steps between checkpoints
    ckpt_seconds: float = 300.0     # also checkpoint at least this often (seconds)
    log_every: int = 50             # steps between log.jsonl lines
    seed: int = 0


class TrainingDiverged(ZooError):
    """A non-finite loss; the last good checkpoint is kept."""


class StopRequested(Exception):
    """Raised after SIGINT/SIGTERM once the current step finished and a checkpoint is written."""


# ---- state (de)serialization: safetensors tensors + JSON metadata, no pickle -------------
def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{pid}.{k}"] = v.detach().cpu().clone().contiguous()
            else:
                meta.setdefault(f"{prefix}.scalars", {})[f"{pid}.{k}"] = v
    meta[f"{prefix}.param_groups"] = sd["param_groups"]


def _unflatten_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + ".state."):
            pid, k = key[len(prefix) + 7:].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta.get(f"{prefix}.scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta[f"{prefix}.param_groups"]})


def _rng_tensor(gen: torch.Generator | None = None) -> torch.Tensor:
    return (gen.get_state() if gen is not None else torch.get_rng_state()).clone()


class _BatchSampler:
    """Random batches without replacement, reshuffled each epoch, from a seeded generator."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise ZooError(f"dataset has {n} images, fewer than batch_size {batch_size}")
        self.n, self.bs = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.bs > self.n:  # drop the remainder: every step has the same shape
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return idx

    @property
    def epochs(self) -> float:
        return self.epoch + self.pos / self.n


class EMA:
    """Exponential moving average of all floating parameters and buffers of a model."""

    def __init__(self, model: Generator, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: Generator, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm-up: early weights are not frozen in
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p, 1.0 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)
        self.model.config = model.config  # configs may be filled in by begin_stage (e.g. latent scale)


def _budget_steps(model: Generator, tcfg: TrainConfig) -> dict[str, int | None]:
    """Steps per stage for a step budget; None where a FLOP budget decides after counting."""
    fr = model.stage_fractions()
    plan = model.stage_plan()
    if set(fr) != set(plan) or abs(sum(fr.values()) - 1) > 1e-6:
        raise ValueError(f"{model.name}: stage_fractions {fr} must cover stages {list(plan)} and sum to 1")
    if tcfg.steps is not None:
        return {s: max(1, round(tcfg.steps * fr[s])) for s in plan}
    return {s: None for s in plan}


def fit(model: Generator, images: torch.Tensor, labels: torch.Tensor | None, out_dir: str | os.PathLike,
        tcfg: TrainConfig, *, resume: bool = False, progress: bool = True, data_spec: str = "",
        extra_record: dict | None = None, device: str = "cpu", amp: bool = False,
        compile: bool = False) -> dict:
    """Train ``model`` on uint8 ``images`` (N,C,H,W) into ``out_dir``; returns the summary dict.

    ``device`` moves the model and each batch (the data stays in CPU memory); ``amp`` runs the
    losses under bf16 autocast and ``compile`` runs them through ``torch.compile`` (the ``gpu``
    bench profile). The one step per stage and phase that counts FLOPs always runs eagerly, so the
    budget is the same with or without compilation.
    """
    if (tcfg.steps is None) == (tcfg.tflops is None):
        raise ZooError("give exactly one budget: steps or tflops")
    if tcfg.steps is not None and tcfg.steps < 1:
        raise ZooError(f"steps must be >= 1, got {tcfg.steps}")
    if tcfg.tflops is not None and not tcfg.tflops > 0:
        raise ZooError(f"tflops must be > 0, got {tcfg.tflops}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ZooError(f"training images must be uint8 (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_FILE
    plan = model.stage_plan()
    stage_names = list(plan)
    model.to(device)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp)
    groups = model.param_groups()
    phases_all = [p for ps in plan.values() for p in ps]
    if set(groups) != set(phases_all):
        raise ValueError(f"{model.name}: param_groups keys {sorted(groups)} != phases {phases_all}")
    optims = {p: model.configure_optimizer(p, groups[p]) for p in phases_all}
    compiled_loss = torch.compile(model.loss) if compile else model.loss

    torch.manual_seed(tcfg.seed)
    sampler = _BatchSampler(images.shape[0], tcfg.batch_size, tcfg.seed + 1)
    st = {"step": 0, "flops": 0, "wall": 0.0, "started": [], "done": {s: 0 for s in stage_names},
          "stage_steps": _budget_steps(model, tcfg), "flops_per_step": {}}

    if resume:
        if not ckpt_path.is_file():
            raise ZooError(f"{out}: nothing to resume (no {CHECKPOINT_FILE})")
        ema = _load_checkpoint(ckpt_path, model, optims, sampler, st, tcfg)
    else:
        if (out / CONFIG_FILE).exists():
            raise ZooError(f"{out} already holds a run: use --resume, or another --out")
        out.mkdir(parents=True, exist_ok=True)
        ema = EMA(model, tcfg.ema)
        atomic_write_text(out / CONFIG_FILE, json.dumps(config_record(model), indent=2))
        rec = {"train": to_dict(tcfg), "data": data_spec, "stages": {s: list(v) for s, v in plan.items()},
               "stage_fractions": model.stage_fractions(), **(extra_record or {})}
        atomic_write_text(out / "train.json", json.dumps(rec, indent=2))

    stop = {"flag": False}
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        def _request_stop(signum, frame):
            if stop["flag"]:  # second Ctrl-C: give up immediately
                raise KeyboardInterrupt
            stop["flag"] = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, _request_stop)

    log_f = open(out / "log.jsonl", "a")
    bar = None
    try:
        from tqdm.auto import tqdm
        t_last_ckpt = time.time()
        while True:
            stage = next((s for s in stage_names if st["stage_steps"][s] is None
                          or st["done"][s] < st["stage_steps"][s]), None)
            if stage is None:
                break
            phases = plan[stage]
            if stage not in st["started"]:
                model.begin_stage(stage, images)
                # stage hooks may change weights/buffers; the EMA copy starts from them so that
                # a frozen earlier stage is identical in the trained and the sampling weights
                ema.model.load_state_dict(model.state_dict())
                st["started"].append(stage)
            total = st["stage_steps"][stage]
            bar = tqdm(total=total, initial=st["done"][stage], disable=not progress, dynamic_ncols=True,
                       desc=f"{model.name}:{stage}" if len(plan) > 1 else model.name, unit="step")
            sums: dict[str, float] = {}
            count = 0
            t0 = time.time()
            while total is None or st["done"][stage] < total:
                idx = sampler.next()
                x = to_float(images[idx]).to(device)
                y = labels[idx].to(device) if labels is not None else None
                step_flops = 0
                for p in phases:
                    key = f"{stage}/{p}"
                    counting = key not in st["flops_per_step"]
                    optims[p].zero_grad(set_to_none=True)
                    with (FlopCounterMode(display=False) if counting else _nullcontext()) as fc:
                        with autocast:
                            losses = (model.loss if counting else compiled_loss)(x, y, phase=p)
                        loss = losses["loss"]
                        if not torch.isfinite(loss):
                            raise TrainingDiverged(
                                f"non-finite loss ({loss.item()}) at step {st['step'] + 1}, stage {stage!r}, "
                                f"phase {p!r}; last good checkpoint kept in {out}")
                        loss.backward()
                    if counting:
                        st["flops_per_step"][key] = int(fc.get_total_flops())
                    step_flops += st["flops_per_step"][key]
                    if tcfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(groups[p], tcfg.grad_clip)
                    optims[p].step()
                    for k, v in losses.items():
                        name = f"{p}/{k}" if len(phases) > 1 else k
                        sums[name] = sums.get(name, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                if total is None:  # FLOP budget: now that one step is counted, fix the step count
                    share = model.stage_fractions()[stage] * tcfg.tflops * 1e12
                    total = max(1, math.ceil(share / max(1, step_flops)))
                    st["stage_steps"][stage] = total
                    bar.reset(total=total)
                    bar.update(st["done"][stage])
                st["step"] += 1
                st["done"][stage] += 1
                st["flops"] += step_flops
                count += 1
                ema.update(model, st["step"])
                now = time.time()
                st["wall"] += now - t0
                t0 = now
                bar.update(1)
                if st["step"] % tcfg.log_every == 0 or st["done"][stage] == total:
                    means = {k: v / count for k, v in sums.items()}
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:4]}, refresh=False)
                    log_f.write(json.dumps({"step": st["step"], "stage": stage, "epoch": round(sampler.epochs, 4),
                                            "flops": st["flops"], "wall": round(st["wall"], 3), **means}) + "\n")
                    log_f.flush()
                    sums, count = {}, 0
                if stop["flag"] or st["step"] % tcfg.ckpt_every == 0 or now - t_last_ckpt > tcfg.ckpt_seconds:
                    _save_checkpoint(ckpt_path, model, ema, optims, sampler, st, tcfg)
                    t_last_ckpt = time.time()
                    if stop["flag"]:
                        raise StopRequested(f"interrupted at step {st['step']}; resume with --resume")
            bar.close()
            bar = None
        _save_checkpoint(ckpt_path, model, ema, optims, sampler, st, tcfg)
        save(copy.deepcopy(ema.model).cpu(), out, weights_name=WEIGHTS_FILE)
        summary = {"family": model.name, "steps": st["step"], "train_flops": st["flops"],
                   "train_tflops": st["flops"] / 1e12, "epochs": round(sampler.epochs, 4),
                   "wall_s": round(st["wall"], 2), "stage_steps": st["stage_steps"],
                   "flops_per_step": st["flops_per_step"], "batch_size": tcfg.batch_size,
                   "params": model.num_params()}
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
        return summary
    finally:
        if bar is not None:
            bar.close()
        log_f.close()
        for sig, h in handlers.items():
            signal.signal(sig, h)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _save_checkpoint(path: Path, model, ema: EMA, optims, sampler: _BatchSampler, st: dict, tcfg: TrainConfig) -> None:
    from safetensors.torch import save_file
    tensors: dict[str, torch.Tensor] = {}
    meta: dict = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().clone().contiguous()
    for k, v in ema.model.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().cpu().clone().contiguous()
    for p, opt in optims.items():
        _flatten_optimizer(opt, f"opt.{p}", tensors, meta)
    tensors["rng.torch"] = _rng_tensor()
    tensors["rng.data"] = _rng_tensor(sampler.gen)
    tensors["data.perm"] = sampler.perm.clone()
    meta["data"] = {"pos": sampler.pos, "epoch": sampler.epoch}
    meta["state"] = st
    meta["config"] = config_record(model)
    meta["train"] = to_dict(tcfg)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"zoo": json.dumps(meta)})
    os.replace(tmp, path)


def _load_checkpoint(path: Path, model, optims, sampler: _BatchSampler, st: dict, tcfg: TrainConfig) -> EMA:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["zoo"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ZooError(f"cannot read checkpoint {path}: corrupt or truncated ({str(e).splitlines()[0][:160]})") from None
    from .config import from_dict
    model.config = from_dict(type(model.config), meta["config"]["config"])  # stage hooks may have filled fields
    if meta["train"]["batch_size"] != tcfg.batch_size:
        raise ZooError(f"checkpoint was trained with batch_size {meta['train']['batch_size']}, not {tcfg.batch_size}")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema = EMA(model, tcfg.ema)
        ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        for p, opt in optims.items():
            _unflatten_optimizer(opt, f"opt.{p}", tensors, meta)
    except (RuntimeError, KeyError, ValueError) as e:
        raise ZooError(f"checkpoint {path} does not match this model ({str(e).splitlines()[0][:160]})") from None
    torch.set_rng_state(tensors["rng.torch"])
    sampler.gen.set_state(tensors["rng.data"])
    sampler.perm = tensors["data.perm"]
    sampler.pos, sampler.epoch = meta["data"]["pos"], meta["data"]["epoch"]
    saved = meta["state"]
    # a FLOP/step budget given on resume may extend the run: recompute unfixed/extended stage steps
    st.update(saved)
    if tcfg.steps is not None:
        st["stage_steps"] = _budget_steps(model, tcfg)
    elif tcfg.tflops is not None and tcfg.tflops != meta["train"].get("tflops"):
        # a new FLOP budget: recount from the cached per-step FLOPs
        fr = model.stage_fractions()
        for s in st["stage_steps"]:
            fps = sum(v for k, v in st["flops_per_step"].items() if k.startswith(s + "/"))
            st["stage_steps"][s] = max(1, math.ceil(fr[s] * tcfg.tflops * 1e12 / fps)) if fps else None
    return ema
