"""TrainConfig: the trainer's options, and their validation before anything is built or written."""
from __future__ import annotations

import dataclasses
import math
import typing

from ..errors import ZooError
from ..rng import MAX_SEED

LR_DECAYS = ("none", "cosine", "linear")


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
    warmup_steps: int = 0           # linear lr warm-up over each optimizer's first steps; 0: none
    lr_decay: str = "none"          # "none" | "cosine" | "linear": lr decay over each stage's steps
    min_lr_ratio: float = 0.0       # the decay ends at this fraction of the base lr

    @property
    def lr_schedule(self) -> bool:
        """Whether the options ask for any learning-rate schedule (default: none)."""
        return self.warmup_steps > 0 or self.lr_decay != "none"

    def validate(self) -> None:
        """Raise a one-line ZooError for the first bad option. Call before building or writing anything."""
        _check_types(self)
        if (self.steps is None) == (self.tflops is None):
            raise ZooError("give exactly one budget: steps or tflops")
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.tflops is None or (math.isfinite(self.tflops) and self.tflops > 0),
             f"tflops must be a finite number > 0, got {self.tflops}"),
            (self.ckpt_every >= 1, f"ckpt_every must be >= 1, got {self.ckpt_every}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.ckpt_seconds > 0, f"ckpt_seconds must be > 0, got {self.ckpt_seconds}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.lr_decay in LR_DECAYS, f"unknown lr_decay {self.lr_decay!r} (choose {', '.join(LR_DECAYS)})"),
            (0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be an integer from 0 to 2**64-1, got {self.seed}"),
        ]
        for ok, message in checks:  # comparisons with nan are False, so nan fails every range check
            if not ok:
                raise ZooError(message)


def _check_types(cfg: TrainConfig) -> None:
    """Fields built in code (not parsed by ``zoo.config``) may hold the wrong type: refuse it in one line."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        base = hints[f.name]
        allowed = tuple(a for a in (typing.get_args(base) or (base,)) if a is not type(None))
        if v is None and f.default is None:
            continue
        ok = (isinstance(v, (int, float)) if allowed == (float,) else isinstance(v, allowed))
        if not ok or isinstance(v, bool):
            raise ZooError(f"train.{f.name} must be {' or '.join(a.__name__ for a in allowed)}, got {v!r}")
