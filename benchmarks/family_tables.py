"""Per-seed rows of chosen families from a `zoo bench` results.json, as a markdown table.

  python benchmarks/family_tables.py --family gan --family vae_gan --family vae
  python benchmarks/family_tables.py --results results/standard/results.json --family diffusion --sweep

Every value is read from the file: this script only selects and formats.
"""
from __future__ import annotations

import argparse
import json
import math

from zoo.bench import _fmt, _mean_std

COLS = [("fid", "FID", ".2f"), ("kid_mean", "KID×1e3", "k"), ("precision", "precision", ".3f"),
        ("recall", "recall", ".3f"), ("density", "density", ".3f"), ("coverage", "coverage", ".3f"),
        ("classifier_score", "class. score", ".2f"), ("bpd", "bits/dim", ".3f"), ("steps", "steps", ".0f"),
        ("epochs", "epochs", ".2f"), ("train_wall_s", "train wall (s)", ".0f"), ("images_per_s", "images/s @256", ".0f")]


def fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v * 1e3:.2f}" if spec == "k" else format(v, spec)


def mean_std(vals: list[float]) -> str:
    return _fmt(*_mean_std(vals))  # the bench's own aggregation: sample std, no "±" for one seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/standard/results.json")
    ap.add_argument("--family", action="append", required=True)
    ap.add_argument("--sweep", action="store_true", help="also the FID-against-NFE sweep rows")
    args = ap.parse_args()
    doc = json.loads(open(args.results).read())
    cells = [c for c in doc["cells"] if c["family"] in args.family]
    cells.sort(key=lambda c: (args.family.index(c["family"]), c["seed"]))
    print(f"From `{args.results}` (profile {doc['profile']['name']}, {doc['profile']['tflops']:g} TFLOP per cell,"
          f" n={doc['profile']['n']:,}).\n")
    print("| family | seed | " + " | ".join(h for _, h, _ in COLS) + " |")
    print("|---|---|" + "---|" * len(COLS))
    for c in cells:
        print(f"| {c['family']} | {c['seed']} | " + " | ".join(fmt(c.get(k), f) for k, _, f in COLS) + " |")
    for fam in args.family:
        fids = [c["fid"] for c in cells if c["family"] == fam]
        if fids:
            print(f"\n{fam}: FID mean ± std over {len(fids)} seeds = {mean_std(fids)}")
    if args.sweep:
        print("\n| family | seed | NFE | FID | images/s (whole sample, incl. batching) | n |")
        print("|---|---|---|---|---|---|")
        for c in cells:
            for s in c.get("sweep", []):
                print(f"| {c['family']} | {c['seed']} | {s['nfe']} | {s['fid']:.2f} | {s['images_per_s']:.1f} | {s['n']} |")
        for fam in args.family:
            by: dict[int, list[float]] = {}
            for c in cells:
                if c["family"] == fam:
                    for s in c.get("sweep", []):
                        by.setdefault(s["nfe"], []).append(s["fid"])
            for nfe, v in sorted(by.items()):
                print(f"{fam}: NFE {nfe}: FID {mean_std(v)}")


if __name__ == "__main__":
    main()
