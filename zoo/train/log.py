"""log.jsonl: one JSON object per log interval, appended and flushed line by line."""
from __future__ import annotations

import json
from pathlib import Path

from ..api import atomic_write_text

from ..files import LOG_FILE  # noqa: F401  (re-exported)


def drop_after(path: Path, step: int) -> None:
    """Keep only lines with ``"step" <= step`` (and well-formed), rewriting ``path`` atomically.

    On resume from a checkpoint at ``step``, the interrupted run's later lines are dropped, since
    the resumed run logs those steps again.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if keep != lines:
        atomic_write_text(path, "".join(line + "\n" for line in keep))


def _step_of(line: str) -> int | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:  # a line cut short by a kill
        return None
    return rec.get("step") if isinstance(rec, dict) and isinstance(rec.get("step"), int) else None


class JsonlLog:
    """Appends records to ``path``; ``resume_step`` first drops lines after that step, else starts empty."""

    def __init__(self, path: Path, *, resume_step: int | None = None):
        if resume_step is not None:
            drop_after(path, resume_step)
        self.f = open(path, "a" if resume_step is not None else "w")

    def write(self, record: dict) -> None:
        """Append one record as a line and flush it."""
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()

    def __enter__(self) -> "JsonlLog":
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()
