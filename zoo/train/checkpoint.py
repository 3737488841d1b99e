"""Checkpoints: the full training state as safetensors tensors plus JSON metadata (no pickle).

Tensors: ``model.*`` and ``ema.*`` (state dicts), ``opt.<phase>.state.<pid>.<key>`` (optimizer
tensors), ``rng.torch``, ``rng.data`` (RNG states), ``data.perm`` (the epoch's order); where CUDA
is available ``rng.cuda`` (devices, state bytes: every visible device's RNG state); under
torchrun also ``rng.torch.<rank>`` and ``rng.cuda.<rank>`` for ranks >= 1 (rank 0's carry no suffix).
Metadata ``zoo`` (JSON): optimizer param groups and scalars, the lr schedulers' state (``sched``),
the sampler position, the :class:`RunState`, the model config record and the TrainConfig.
Files are written to a temp name and renamed, with the mode ``open()`` would give (the umask).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR

from .. import dist
from ..api import Generator, config_record, file_mode
from ..config import from_dict, to_dict
from ..errors import ZooError
from .config import TrainConfig
from .ema import EMA
from .sampler import BatchSampler
from .schedule import load_scheduler_state, scheduler_state
from .state import RunState

from ..files import CHECKPOINT_FILE  # noqa: F401  (re-exported)
_SCHEDULE_FIELDS = {"warmup_steps": 0, "lr_decay": "none", "min_lr_ratio": 0.0}  # and their defaults


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write a safetensors file: temp file, umask mode, rename."""
    from safetensors.torch import save_file
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().clone().contiguous()


def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{pid}.{k}"] = _cpu(v)
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


def save_checkpoint(path: Path, *, model: Generator, ema: EMA, optims: dict[str, torch.optim.Optimizer],
                    scheds: dict[str, LambdaLR], sampler: BatchSampler, state: RunState,
                    tcfg: TrainConfig) -> None:
    """Write everything needed to continue the run bitwise identically to ``path``.

    Under torchrun every rank must call this (their RNG states are gathered); only rank 0 writes.
    """
    rng_states = dist.all_gather_rows(torch.get_rng_state().unsqueeze(0))   # (world, state bytes)
    cuda = _cuda_rng_states()
    cuda_states = dist.all_gather_rows(cuda.flatten().unsqueeze(0)) if cuda is not None else None  # (world, ...)
    if not dist.is_main():
        return
    tensors = {f"model.{k}": _cpu(v) for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": _cpu(v) for k, v in ema.model.state_dict().items()})
    meta: dict = {}
    for p, opt in optims.items():
        _flatten_optimizer(opt, f"opt.{p}", tensors, meta)
    if scheds:
        meta["sched"] = {p: scheduler_state(s) for p, s in scheds.items()}
    tensors["rng.torch"] = rng_states[0].clone()
    tensors.update({f"rng.torch.{r}": rng_states[r].clone() for r in range(1, rng_states.shape[0])})
    if cuda_states is not None:
        for r in range(cuda_states.shape[0]):
            tensors["rng.cuda" + (f".{r}" if r else "")] = cuda_states[r].reshape(cuda.shape).cpu().clone()
    tensors["rng.data"] = sampler.gen.get_state().clone()
    tensors["data.perm"] = sampler.perm.clone()
    meta.update({"world_size": int(rng_states.shape[0]),
                 "data": {"pos": sampler.pos, "epoch": sampler.epoch}, "state": state.to_json(),
                 "config": config_record(model), "train": to_dict(tcfg)})
    write_safetensors(path, tensors, {"zoo": json.dumps(meta)})


def load_checkpoint(path: Path, *, model: Generator, optims: dict[str, torch.optim.Optimizer],
                    scheds: dict[str, LambdaLR], sampler: BatchSampler, state: RunState,
                    tcfg: TrainConfig) -> tuple[EMA, dict]:
    """Restore a checkpoint into the given objects; returns the EMA and the saved TrainConfig dict.

    Raises ZooError (before anything is written) for a corrupt file or one from another model,
    batch size or lr schedule.
    """
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["zoo"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ZooError(f"cannot read checkpoint {path}: corrupt or truncated ({str(e).splitlines()[0][:160]})") from None
    model.config = from_dict(type(model.config), meta["config"]["config"])  # stage hooks may have filled fields
    saved = meta["train"]
    if saved["batch_size"] != tcfg.batch_size:
        raise ZooError(f"checkpoint was trained with batch_size {saved['batch_size']}, not {tcfg.batch_size}")
    for k, default in _SCHEDULE_FIELDS.items():
        if saved.get(k, default) != getattr(tcfg, k):
            raise ZooError(f"checkpoint was trained with {k}={saved.get(k, default)!r}, not {getattr(tcfg, k)!r}")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema = EMA(model, tcfg.ema)
        ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        for p, opt in optims.items():
            _unflatten_optimizer(opt, f"opt.{p}", tensors, meta)
        for p, sched in scheds.items():
            load_scheduler_state(sched, meta["sched"][p])
    except (RuntimeError, KeyError, ValueError) as e:
        raise ZooError(f"checkpoint {path} does not match this model ({str(e).splitlines()[0][:160]})") from None
    _restore_rank_rng(tensors, meta, tcfg)
    sampler.gen.set_state(tensors["rng.data"])
    sampler.perm = tensors["data.perm"]
    sampler.pos, sampler.epoch = meta["data"]["pos"], meta["data"]["epoch"]
    state.load_json(meta["state"])
    return ema, saved


def _restore_rank_rng(tensors: dict, meta: dict, tcfg: TrainConfig) -> None:
    """This rank's global RNG state: its own saved one when the run resumes at the world size it
    was saved at (exact resume); otherwise rank 0 takes the saved rank 0 state and every other
    rank a fresh stream seeded from (seed, rank, step), so the run goes on at another size with
    independent noise per rank (statistically the same run, no longer bitwise)."""
    r, saved_world = dist.rank(), int(meta.get("world_size", 1))
    if r == 0:
        torch.set_rng_state(tensors["rng.torch"])
    elif saved_world == dist.world():
        torch.set_rng_state(tensors[f"rng.torch.{r}"])
    else:
        torch.manual_seed(dist.rank_seed(tcfg.seed) ^ (int(meta["state"]["step"]) + 1))
    cuda = tensors.get("rng.cuda" + (f".{r}" if r else ""))
    if cuda is not None and (r == 0 or saved_world == dist.world()):
        _set_cuda_rng_states(cuda)


def _cuda_rng_states() -> torch.Tensor | None:
    """Every visible CUDA device's RNG state as uint8 (devices, state bytes); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.stack([s.cpu() for s in torch.cuda.get_rng_state_all()])


def _set_cuda_rng_states(states: torch.Tensor) -> None:
    """Restore saved CUDA RNG states where this machine shows as many devices (else they stay as seeded)."""
    if torch.cuda.is_available() and len(torch.cuda.get_rng_state_all()) == states.shape[0]:
        torch.cuda.set_rng_state_all(list(states))
