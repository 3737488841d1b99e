"""`zoo bench collapse`: the mode-collapse check (zoo.metrics.collapse.collapse_report) of a bench
folder's trained runs: pixel-std ratio against test images and the fmnist-cnn class histogram."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from ..errors import ZooError
from .rundir import run_dir
from .store import CELLS_DIR, cell_name, read_cells


def cells_data(cells: list[dict]) -> str:
    """The dataset the cells were made on (from their settings, or an older cell's provenance)."""
    specs = {(c.get("settings") or c.get("provenance") or {}).get("data") for c in cells}
    specs.discard(None)
    if len(specs) != 1:
        raise ZooError(f"cannot tell the cells' dataset ({', '.join(sorted(specs)) or 'not recorded'}): give --data")
    return specs.pop()


def collapse_runs(results_dir: Path, families: list[str] | None = None, seeds: tuple[int, ...] | None = None,
                  *, n: int = 1000, data: str | None = None) -> tuple[list[Path], str]:
    """The trained run folders of ``results_dir``'s cells (of ``families`` and ``seeds`` if given)
    and the dataset to compare with; one-line ZooError when there are none or n does not fit."""
    from ..data import load_dataset
    cells = read_cells(results_dir)
    if not cells:
        raise ZooError(f"{results_dir}: no bench cells in {results_dir / CELLS_DIR}")
    have = sorted({c["family"] for c in cells})
    for f in families or []:
        if f not in have:
            raise ZooError(f"{results_dir} has no cells of family {f!r} (it has {', '.join(have)})")
    chosen = [c for c in cells if (not families or c["family"] in families) and (not seeds or c["seed"] in seeds)]
    if not chosen:
        raise ZooError(f"{results_dir}: no cells of those families and seeds")
    if families:
        chosen.sort(key=lambda c: (families.index(c["family"]), c["seed"]))
    data = data or cells_data(chosen)
    if n < 2:
        raise ZooError(f"--n must be >= 2, got {n}")
    size = len(load_dataset(data, "test"))
    if n > size:
        raise ZooError(f"--n {n} exceeds the {size} images of the {data} test split")
    runs = [run_dir(results_dir, cell_name(c["family"], c["seed"])) for c in chosen]
    for r in runs:
        if not (r / "model.safetensors").is_file():
            raise ZooError(f"{r}: no trained model (model.safetensors) to sample")
    return runs, data


def collapse_check(runs: list[Path], data: str, *, n: int = 1000,
                   log: Callable[[str], None] = click.echo) -> dict:
    """Sample n images (seed 0) from each run and compare them with the first n test images of ``data``:
    {"n", "reference", "runs": {run folder: collapse_report}}."""
    from ..api import load
    from ..data import load_dataset
    from ..metrics.collapse import collapse_report
    real = load_dataset(data, "test").images[:n]
    reports = {}
    for run in runs:
        samples = load(run).sample(n, seed=0)
        reports[str(run)] = collapse_report(samples, real)
        log(f"{run} {json_line(reports[str(run)])}")
    return {"n": n, "reference": f"{data} test[:{n}]", "runs": reports}


def collapse(results: str | Path, families: str = "all", seeds: str | None = None, *, n: int = 1000,
             data: str | None = None, json_out: str | Path | None = None,
             log: Callable[[str], None] = click.echo) -> dict:
    """What `zoo bench collapse` does: the mode-collapse check of the trained runs of the bench folder
    ``results`` (of ``families``, comma-separated or 'all', and ``seeds`` as '0-2' if given), each
    logged as one line; the reports are returned and, with ``json_out``, written there as JSON."""
    import json
    from ..checks import check_writable
    from ..files import atomic_write_text
    from .profiles import parse_seeds
    fams = None if families == "all" else [f.strip() for f in families.split(",") if f.strip()]
    if json_out:
        check_writable(Path(json_out).parent, "--json")
    runs, data = collapse_runs(Path(results), fams, parse_seeds(seeds) if seeds else None, n=n, data=data)
    doc = collapse_check(runs, data, n=n, log=log)
    if json_out:
        atomic_write_text(json_out, json.dumps(doc, indent=2) + "\n")
    return doc


def json_line(rec: dict) -> str:
    """A record as one line of JSON."""
    import json
    return json.dumps(rec)
