"""Where a number came from: the code's git commit and the machine that computed it.

Every benchmark cell and every ``zoo eval`` record carries this, so a cited figure names the
commit, the CPU (and GPU), the torch version and the thread count behind it.
"""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

# what counts as the code that makes numbers: results/ and docs do not, so moving an old results
# folder aside before re-running a benchmark does not taint its provenance
CODE_PATHS = ("zoo", "benchmarks", "setup.cfg", "setup.sh")
_ROOT = Path(__file__).resolve().parent.parent   # zoo/provenance.py -> the checkout


@functools.cache
def git_commit() -> str | None:
    """The git commit of the zoo checkout's code: the last commit that changed zoo/, benchmarks/ or the
    setup files (so committing results alone does not change it), '+dirty' when those have uncommitted
    changes; None outside a git checkout (an installed wheel).

    Read once per process: a long run names the code it started with (the code it imported), not a
    commit made in the checkout while it ran. The CLI and the trainer read it when they start."""
    try:
        code = subprocess.run(["git", "log", "-1", "--format=%H", "HEAD", "--", *CODE_PATHS], cwd=_ROOT,
                              capture_output=True, text=True, timeout=10)
        if code.returncode != 0 or not code.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=_ROOT, capture_output=True, text=True, timeout=10)
        return code.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_id(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The x86 CPU's family, model and stepping from /proc/cpuinfo ('family 26, model 2, stepping 0'),
    None where there are none (written by hand: neither platform nor torch reports them). Under a
    hypervisor the model name is often generic ('AMD EPYC') for hosts of different generations, and
    a fixed-seed run repeats bit for bit on one generation, not across them."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model", "stepping") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:   # the first processor's block is enough
                break
    except OSError:
        return None
    if "cpu family" not in fields or "model" not in fields:
        return None
    return f"family {fields['cpu family']}, model {fields['model']}" + (
        f", stepping {fields['stepping']}" if "stepping" in fields else "")


# the fields of machine() a fixed-seed training run must share to repeat bit for bit
REPEAT_KEYS = ("cpu", "cpu_id", "gpu", "threads", "torch")


def machine() -> dict:
    """The machine and software behind a measurement: CPU (its model name and, on x86 Linux, its
    family, model and stepping), GPU (or None), threads, torch, python."""
    import torch
    return {"cpu": cpu_model(), "cpu_id": cpu_id(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def describe_machine(m: dict) -> str:
    """One phrase for a machine record: 'CPU + GPU, N threads'."""
    gpu = f" + {m['gpu']}" if m.get("gpu") else ""
    cpu = m.get("cpu", "?") + (f" ({m['cpu_id']})" if m.get("cpu_id") else "")
    n = m.get("threads", "?")
    return f"{cpu}{gpu}, {n} thread{'' if n == 1 else 's'}"
