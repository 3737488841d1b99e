"""RunState: the trainer's counters, saved as JSON in each checkpoint."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class RunState:
    """Where a run stands. ``stage_steps[s]`` is None until a FLOP budget has counted stage s."""
    step: int = 0                                        # optimizer steps, all stages
    flops: int = 0                                       # training FLOPs so far
    wall: float = 0.0                                    # seconds spent in steps
    started: list[str] = dataclasses.field(default_factory=list)   # stages whose begin_stage ran
    done: dict[str, int] = dataclasses.field(default_factory=dict)  # steps done per stage
    stage_steps: dict[str, int | None] = dataclasses.field(default_factory=dict)
    flops_per_step: dict[str, int] = dataclasses.field(default_factory=dict)  # "stage/phase" -> FLOPs

    def to_json(self) -> dict:
        """A JSON-able dict (the checkpoint's ``state`` entry)."""
        return dataclasses.asdict(self)

    def load_json(self, d: dict) -> None:
        """Inverse of :meth:`to_json`, in place (schedulers hold a reference to this object)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, d[f.name])

    def current_stage(self) -> str | None:
        """The first stage not finished yet, or None when training is done."""
        return next((s for s, n in self.stage_steps.items() if n is None or self.done[s] < n), None)
