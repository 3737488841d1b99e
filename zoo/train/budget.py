"""Budgets: how many optimizer steps each stage gets from a step or a FLOP budget."""
from __future__ import annotations

import math

from ..api import Generator
from ..errors import ZooError
from .config import TrainConfig
from .state import RunState


def stage_steps(model: Generator, tcfg: TrainConfig) -> dict[str, int | None]:
    """Steps per stage for a step budget; None where a FLOP budget decides after counting."""
    fr = model.stage_fractions()
    plan = model.stage_plan()
    if set(fr) != set(plan) or abs(sum(fr.values()) - 1) > 1e-6:
        raise ValueError(f"{model.name}: stage_fractions {fr} must cover stages {list(plan)} and sum to 1")
    if tcfg.steps is not None:
        return {s: max(1, round(tcfg.steps * fr[s])) for s in plan}
    return {s: None for s in plan}


def steps_for_flops(fraction: float, tflops: float, step_flops: int) -> int:
    """Steps that spend a stage's share of a FLOP budget: ceil(share / FLOPs per step), at least 1.
    A step that FlopCounterMode counts as 0 FLOPs (no matmul or convolution) cannot spend a FLOP
    budget: that is a ZooError rather than a run of billions of steps."""
    if step_flops <= 0:
        raise ZooError("one training step counts 0 FLOPs (torch.utils.flop_counter sees no matmul or "
                       "convolution in this model's loss): give the budget in --steps instead of --tflops")
    return max(1, math.ceil(fraction * tflops * 1e12 / step_flops))


def resume_stage_steps(model: Generator, tcfg: TrainConfig, state: RunState, saved_tflops: float | None) -> None:
    """On resume, apply the budget given now, which may extend the run (in place on ``state``)."""
    if tcfg.steps is not None:
        state.stage_steps = stage_steps(model, tcfg)
    elif tcfg.tflops != saved_tflops:  # a new FLOP budget: recount from the cached per-step FLOPs
        fr = model.stage_fractions()
        for s in state.stage_steps:
            fps = sum(v for k, v in state.flops_per_step.items() if k.startswith(s + "/"))
            state.stage_steps[s] = steps_for_flops(fr[s], tcfg.tflops, fps) if fps else None
