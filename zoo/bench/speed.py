"""`zoo bench speed RESULTS...`: every family's sampling speed measured again, one family after
another in one run on this machine, so that the speeds compare with each other.

A bench cell times its sampler while the bench runs, often beside other jobs, so its images/s
column carries the load of that moment. Sampling time does not depend on the trained weights, only
on the architecture, so this needs no run folder: each family's model is rebuilt from the config its
lowest-seed cell recorded (its recipe, widths included), saved with fresh weights to a temporary
folder and timed in a fresh process by the same probe as the bench (``zoo.perf.probe_run``). The
machine's fp32 matmul rate is measured before and after, to show how quiet the machine was.

Each folder gets speed.json and SPEED.md; its FID-against-images/s figure (pareto.png) then uses
these speeds, and says so.
"""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import click

from ..api import atomic_write_text, build_model, split_recipe
from ..errors import ZooError
from ..provenance import describe_machine, git_commit, machine
from ..version import __version__
from .store import read_cells

SPEED_FILE = "speed.json"


def read_speeds(out: Path) -> dict | None:
    """The folder's speed.json (``zoo bench speed``), or None where there is none or it is unreadable."""
    try:
        doc = json.loads((Path(out) / SPEED_FILE).read_text())
        return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None
    except (OSError, ValueError):
        return None


def _family_cells(out: Path, families: str) -> dict[str, dict]:
    cells = read_cells(out)
    if not cells:
        raise ZooError(f"{out} has no bench cells (cells/*.json): run zoo bench there first")
    have = sorted({c["family"] for c in cells})
    fams = have if families == "all" else list(dict.fromkeys(f.strip() for f in families.split(",") if f.strip()))
    missing = [f for f in fams if f not in have]
    if missing or not fams:
        raise ZooError(f"{out} has no cells of {', '.join(missing) or 'those families'} (it has {', '.join(have)})")
    return {f: min((c for c in cells if c["family"] == f), key=lambda c: c["seed"]) for f in fams}


def _model_of(cell: dict):
    """The cell's architecture with fresh weights: its family, recorded recipe and tiny flag."""
    from ..data import load_dataset
    settings = cell.get("settings") or {}
    if settings.get("conditional"):
        raise ZooError(f"{cell['family']}: a conditional cell; zoo bench speed times unconditional sampling")
    shape = load_dataset(settings.get("data", "fashion-mnist"), "test").shape
    return build_model(cell["family"], shape, split_recipe(settings.get("recipe") or {})[0],
                       tiny=bool(settings.get("tiny")))


def measure_speeds(out: str | Path, families: str = "all", *, batch: int = 256, min_time: float = 3.0,
                   command: str | None = None, log: Callable[[str], None] = click.echo) -> dict:
    """Time every chosen family of the bench folder ``out`` in turn (see the module docstring); write
    speed.json and SPEED.md there and return the record. ``zoo.bench.outputs.rewrite_outputs(out)``
    then redraws the folder's figures with these speeds (`zoo bench speed` does both)."""
    import torch
    from ..perf import matmul_gflops, probe_run
    out = Path(out)
    chosen = _family_cells(out, families)
    models = {f: _model_of(c) for f, c in chosen.items()}   # every config checked before any timing
    before = matmul_gflops()
    rows = []
    for fam, model in models.items():
        log(f"speed: {fam}")
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            from ..api import save
            save(model, tmp)
            r = probe_run(tmp, batch=batch, min_time=min_time)
        rows.append({"family": fam, "params": model.num_params(), "images_per_s": r["images_per_s"],
                     "latency_s": r["latency_s"], "nfe": r["nfe"], "sample_flops_per_image": r["flops_per_image"],
                     "achieved_gflops": r["achieved_gflops"], "peak_mem_mb": r["peak_mem_mb"],
                     "probe_threads": r["threads"], "cell_images_per_s": chosen[fam].get("images_per_s")})
    after = matmul_gflops()
    doc = {"command": command or f"zoo bench speed {out}", "zoo_version": __version__,
           "git_commit": git_commit() or "unknown", "machine": machine(), "batch": batch, "min_time_s": min_time,
           "matmul_gflops_before": before, "matmul_gflops_after": after,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": rows}
    atomic_write_text(out / SPEED_FILE, json.dumps(doc, indent=2))
    atomic_write_text(out / "SPEED.md", speed_markdown(doc))
    return doc


def speed_note(doc: dict) -> str:
    """One sentence on where a speed.json's images/s come from."""
    return (f"images/s measured by `{doc['command']}` on {describe_machine(doc['machine'])} (fp32 matmul "
            f"{doc['matmul_gflops_before']:.0f} GFLOP/s before, {doc['matmul_gflops_after']:.0f} after), one family "
            f"after another, {doc['date'][:10]}")


def speed_markdown(doc: dict) -> str:
    lines = ["# Sampling speed, measured one family after another", "",
             f"Produced by `{doc['command']}` (zoo {doc['zoo_version']}, commit `{doc['git_commit'][:12]}`) on "
             f"{describe_machine(doc['machine'])}, {doc['date']}. fp32 matmul {doc['matmul_gflops_before']:.1f} "
             f"GFLOP/s before and {doc['matmul_gflops_after']:.1f} after (a drop means the machine was not quiet).", "",
             "Each family's architecture as its lowest-seed cell recorded it, with fresh weights (sampling time does "
             f"not depend on them), timed at batch {doc['batch']} for at least {doc['min_time_s']:g} s in a fresh "
             "process; latency is one image at batch 1. The last column is what the cell itself measured while the "
             "bench ran, for comparison.", "",
             "| family | params | NFE | sample MFLOP/image | images/s | latency (s) | achieved GFLOP/s | share of matmul "
             "| images/s in the cell |", "|---|---|---|---|---|---|---|---|---|"]
    mm = (doc["matmul_gflops_before"] + doc["matmul_gflops_after"]) / 2
    for r in doc["rows"]:
        cell = r.get("cell_images_per_s")
        lines.append(f"| {r['family']} | {r['params']:,} | {r['nfe']} | {r['sample_flops_per_image'] / 1e6:.2f} | "
                     f"{r['images_per_s']:.1f} | {r['latency_s']:.4f} | {r['achieved_gflops']:.1f} | "
                     f"{r['achieved_gflops'] / mm:.0%} | {'—' if cell is None else f'{cell:.1f}'} |")
    return "\n".join(lines) + "\n"
