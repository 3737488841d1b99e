"""Does a bench folder rebuilt from scratch reproduce a committed one? Cell by cell, every figure
that training and sampling decide (FID, KID, precision/recall, density/coverage, class shares,
bits/dim, steps, the NFE sweep's FIDs) is compared for exact equality; timings and provenance are
not (they depend on the machine's load), but each side's git commit and thread count are shown,
since training is deterministic only at a fixed thread count on one kind of CPU.

  zoo bench --profile standard --families vae --out runs/rebuild       # train the cells again
  .venv/bin/python benchmarks/reproduce_cells.py results/standard runs/rebuild

Prints a markdown table, one row per cell present in both folders, with the largest relative
difference of any measured figure, then the names of the figures that differ at all in any cell;
exits 1 when a difference exceeds --rtol or the folders share no cell, so it can gate a script.

With --weights, where both folders still hold the cells' run folders (``runs/<cell>/``), each
cell's sampling weights (model.safetensors, tensor by tensor) and its sample and interpolation
grids (samples.png, interpolation.png, byte by byte) must be identical too:

  .venv/bin/python benchmarks/reproduce_cells.py runs/quick-before runs/quick-after --weights --rtol 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.bench.settings import difference
from zoo.bench.store import CorruptFile, cell_files, read_record

# not compared as figures: what depends on the machine's load or the moment (timings, provenance),
# the record format's version, and the settings, which are compared apart, as the bench does (an older cell lacks later keys)
NOT_FIGURES = {"train_wall_s", "sample_wall_s", "cell_wall_s", "images_per_s", "latency_s", "peak_mem_mb", "time_s",
               "metrics_provenance", "provenance", "settings", "schema_version"}


def cells(folder: Path) -> dict[str, dict]:
    """The (family, seed) cell records of a bench folder, by file stem ('vae-s0')."""
    out = {}
    for p in cell_files(folder):
        try:
            out[p.stem] = read_record(p)
        except (OSError, CorruptFile) as e:
            sys.exit(f"{p}: unreadable cell ({e})")
    return out


def measured(rec: dict) -> dict:
    """The figures of a cell record that the trained model and the sampling seeds decide, flattened."""
    m = {k: v for k, v in rec.items() if k not in NOT_FIGURES}
    m["sweep"] = [{k: v for k, v in row.items() if k != "images_per_s"} for row in rec.get("sweep") or []]
    return _flat(m)


def _flat(x, prefix: str = "") -> dict:
    """Nested dicts and lists as one {'sweep.0.fid': value} mapping."""
    if isinstance(x, dict):
        return {k2: v for k, v in x.items() for k2, v in _flat(v, f"{prefix}{k}.").items()}
    if isinstance(x, list):
        return {k2: v for i, v in enumerate(x) for k2, v in _flat(v, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): x}


def differing(fa: dict, fb: dict) -> list[str]:
    """The keys whose values differ at all between two flattened measured records."""
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def largest_difference(fa: dict, fb: dict, keys: list[str]) -> tuple[float, str]:
    """The largest relative difference among ``keys`` of two flattened measured records, and where
    it is: 0.0 when there is none, inf where a non-number or a missing key differs."""
    worst, where = 0.0, ""
    for key in keys:
        va, vb = fa.get(key), fb.get(key)
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            rel = abs(va - vb) / max(abs(va), abs(vb))
        else:
            rel = float("inf")
        if rel > worst:
            worst, where = rel, key
    return worst, where


GRIDS = ("samples.png", "interpolation.png")


def run_artifacts_differ(a: Path, b: Path) -> list[str]:
    """What differs between two run folders of one cell: weight tensors of model.safetensors (by
    name) and the sample/interpolation grids (by bytes); a file on one side only counts as differing."""
    from safetensors.torch import load_file
    from zoo.files import WEIGHTS_FILE
    wa, wb = a / WEIGHTS_FILE, b / WEIGHTS_FILE
    if not (wa.is_file() and wb.is_file()):
        return [WEIGHTS_FILE + " missing"]
    ta, tb = load_file(str(wa)), load_file(str(wb))
    out = sorted(k for k in set(ta) | set(tb) if k not in ta or k not in tb or not torch_equal(ta[k], tb[k]))
    for name in GRIDS:
        ga, gb = a / name, b / name
        if ga.is_file() != gb.is_file() or (ga.is_file() and ga.read_bytes() != gb.read_bytes()):
            out.append(name)
    return out


def torch_equal(x, y) -> bool:
    import torch
    return x.shape == y.shape and x.dtype == y.dtype and bool(torch.equal(x, y))


def origin(rec: dict) -> str:
    p = rec.get("provenance") or {}
    return f"{str(p.get('git_commit', '?'))[:8]}, {p.get('threads', '?')} thr"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("committed", type=Path, help="bench folder of record (e.g. results/standard)")
    ap.add_argument("rebuilt", type=Path, help="bench folder trained again with the same profile")
    ap.add_argument("--rtol", type=float, default=1e-6,
                    help="largest relative difference still counted as reproduced (default 1e-6: the "
                         "printed digits of every table)")
    ap.add_argument("--weights", action="store_true",
                    help="also require identical weights and sample grids in the cells' run folders")
    args = ap.parse_args()
    a, b = cells(args.committed), cells(args.rebuilt)
    common = sorted(set(a) & set(b))
    if not common:
        print(f"no cell is in both {args.committed} and {args.rebuilt}", file=sys.stderr)
        return 1
    print("| cell | FID committed | FID rebuilt | largest relative difference | in | committed made at | "
          "rebuilt made at |" + (" weights and grids |" if args.weights else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if args.weights else ""))
    exact = differ = 0
    moved: set[str] = set()
    for name in common:
        fa, fb = measured(a[name]), measured(b[name])
        keys = differing(fa, fb)
        moved.update(keys)
        rel, where = largest_difference(fa, fb, keys)
        made_with = difference(a[name].get("settings"), b[name].get("settings") or {})
        if made_with:   # not the same cell: its figures are not comparable
            rel, where = float("inf"), f"settings: {made_with}"
            moved.add("settings")
        artifacts = ""
        if args.weights:
            bad = run_artifacts_differ(args.committed / "runs" / name, args.rebuilt / "runs" / name)
            artifacts = f" {'identical' if not bad else 'differ: ' + ', '.join(bad[:4])} |"
            if bad:
                rel, where = float("inf"), where or "weights/grids"
                moved.add("weights/grids")
        exact += rel == 0
        differ += rel > args.rtol
        print(f"| {name} | {a[name].get('fid', float('nan')):.4f} | {b[name].get('fid', float('nan')):.4f} | "
              f"{rel:.1e} | {where or '—'} | {origin(a[name])} | {origin(b[name])} |{artifacts}")
    print(f"\n{len(common)} cells in both: {exact} identical in every measured figure, "
          f"{len(common) - exact - differ} within a relative {args.rtol:g}, {differ} beyond it.")
    print(f"Figures that differ at all, in any cell: {', '.join(sorted(moved)) or 'none'}.")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
