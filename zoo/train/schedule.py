"""Learning-rate warm-up and decay: one ``torch.optim.lr_scheduler.LambdaLR`` per phase optimizer.

The multiplier for an optimizer's step ``t`` (0-based, counted by the scheduler) is
``(t + 1) / warmup_steps`` during warm-up, then ``min_lr_ratio + (1 - min_lr_ratio) * shape(q)``
with ``q`` running from 0 after warm-up to 1 at the end of the stage's steps (the lr reaches
the floor as the stage ends): ``shape`` is 1 (none), ``1 - q`` (linear) or ``(1 + cos(pi q)) / 2``
(cosine). ``LambdaLR`` with this closed form, rather than ``CosineAnnealingLR``/``LinearLR``
chained in ``SequentialLR``: the horizon is read at each step, so a FLOP budget (whose step count is
known only after the stage's first counted step) and a budget extended on resume both work, and
the lr is a pure function of ``t`` (no recursive update accumulating rounding), so resume is exact.

With the default options there is no scheduler at all: the optimizers' lr floats are untouched.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..errors import ZooError
from .config import TrainConfig
from .state import RunState


def lr_factor(t: int, total: int | None, tcfg: TrainConfig) -> float:
    """Multiplier of the base lr for optimizer step ``t`` (0-based) of a stage of ``total`` steps."""
    warm = tcfg.warmup_steps
    if t < warm:
        return (t + 1) / warm
    if tcfg.lr_decay == "none" or total is None:  # None: not counted yet, only possible at q = 0
        return 1.0
    q = min(1.0, (t - warm) / max(1, total - warm))
    shape = 1.0 - q if tcfg.lr_decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * q))
    return tcfg.min_lr_ratio + (1.0 - tcfg.min_lr_ratio) * shape


def make_schedulers(optims: dict[str, torch.optim.Optimizer], plan: dict[str, tuple[str, ...]],
                    state: RunState, tcfg: TrainConfig) -> dict[str, LambdaLR]:
    """One scheduler per phase optimizer, or none when ``tcfg`` asks for no schedule.

    ``state`` is read at each step (not copied), so the horizon follows ``state.stage_steps``.
    Create them before loading optimizer state on resume (a new scheduler sets the lr).
    """
    if not tcfg.lr_schedule:
        return {}
    stage_of: dict[str, str] = {}
    for s, phases in plan.items():
        for p in phases:
            if stage_of.setdefault(p, s) != s:
                raise ZooError(f"an lr schedule needs each phase in one stage; phase {p!r} runs in "
                               f"{stage_of[p]!r} and {s!r}")

    def factor_for(stage: str):
        return lambda t: lr_factor(t, state.stage_steps[stage], tcfg)
    return {p: LambdaLR(opt, factor_for(stage_of[p])) for p, opt in optims.items()}


def scheduler_state(sched: LambdaLR) -> dict:
    """JSON-able state of a scheduler (its lambda is code, rebuilt from the config, not saved)."""
    sd = sched.state_dict()
    sd.pop("lr_lambdas")
    return sd


def load_scheduler_state(sched: LambdaLR, sd: dict) -> None:
    """Inverse of :func:`scheduler_state`."""
    sched.load_state_dict({**sd, "lr_lambdas": [None] * len(sched.lr_lambdas)})
