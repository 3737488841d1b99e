"""FLOP accounting: each (stage, phase) step shape is counted once, then reused.

``torch.utils.flop_counter.FlopCounterMode`` counts the forward and backward of one optimizer
step; every later step of that shape costs the same (the sampler keeps batches equal), so a FLOP
budget becomes a step count: hardware-independent and stable across resume.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch.utils.flop_counter import FlopCounterMode


def flop_key(stage: str, phase: str) -> str:
    """The key of one step shape in ``RunState.flops_per_step``."""
    return f"{stage}/{phase}"


@contextlib.contextmanager
def count_once(per_step: dict[str, int], key: str) -> Iterator[None]:
    """Run the body; if ``key`` has no count yet, count the body's FLOPs into ``per_step[key]``."""
    if key in per_step:
        yield
        return
    with FlopCounterMode(display=False) as fc:
        yield
    per_step[key] = int(fc.get_total_flops())
