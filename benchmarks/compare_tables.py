"""Two `zoo bench` tables side by side, family by family: each column's seed mean ± std before and
after, the change, and the change in units of the seed std (the root mean square of the two stds).

  .venv/bin/python benchmarks/compare_tables.py results/standard/before-issue15 results/standard

Reads only the two folders' results.json (their per-family aggregates); prints markdown.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# (key, label, digits, direction: +1 higher is better, -1 lower is better)
COLUMNS = [("fid", "FID", 2, -1), ("coverage", "coverage", 3, 1), ("min_class_share", "smallest class share", 3, 1),
           ("bpd", "bits/dim", 3, -1)]


def families(folder: Path) -> dict[str, dict]:
    doc = json.loads((folder / "results.json").read_text())
    return {r["family"]: r for r in doc["families"]}


def cell(r: dict | None, key: str, digits: int) -> str:
    if r is None or r.get(key) is None:
        return "—"
    s = r.get(key + "_std")
    return f"{r[key]:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None else "")


def change(a: dict | None, b: dict | None, key: str, digits: int, sign: int) -> tuple[str, str]:
    if a is None or b is None or a.get(key) is None or b.get(key) is None:
        return "—", "—"
    d = b[key] - a[key]
    sa, sb = a.get(key + "_std"), b.get(key + "_std")
    if sa is None or sb is None or (sa == 0 and sb == 0):
        return f"{d:+.{digits}f}", "—"
    units = d / math.sqrt((sa ** 2 + sb ** 2) / 2)
    better = "better" if d * sign > 0 else "worse"
    return f"{d:+.{digits}f}", f"{units:+.1f} ({better})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    args = ap.parse_args()
    a, b = families(Path(args.before)), families(Path(args.after))
    for key, label, digits, sign in COLUMNS:
        if not any(r.get(key) is not None for r in list(a.values()) + list(b.values())):
            continue
        print(f"### {label}\n")
        print("| family | before | after | change | change / seed std |")
        print("|---|---|---|---|---|")
        for fam in sorted(set(a) | set(b)):
            d, u = change(a.get(fam), b.get(fam), key, digits, sign)
            print(f"| {fam} | {cell(a.get(fam), key, digits)} | {cell(b.get(fam), key, digits)} | {d} | {u} |")
        print()


if __name__ == "__main__":
    main()
