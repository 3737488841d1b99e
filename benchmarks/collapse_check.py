"""Mode-collapse check of trained runs: pixel-std ratio against test images and, where the
fmnist-cnn classifier is available, the predicted class histogram of the samples.

  .venv/bin/python benchmarks/collapse_check.py results/standard/runs/gan-s{0,1,2} --n 5000 --json results/gan/collapse.json

Uses zoo.models.gan.collapse_report (the helper the tests exercise).
"""
from __future__ import annotations

import argparse
import json

import zoo
from zoo.data import load_dataset
from zoo.models.gan import collapse_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="trained run directories")
    ap.add_argument("--n", type=int, default=1000, help="samples per run (seed 0) and test images")
    ap.add_argument("--json", default=None, help="also write the reports to this JSON file")
    args = ap.parse_args()
    real = load_dataset("fashion-mnist", "test").images[:args.n]
    out = {}
    for run in args.runs:
        samples = zoo.load(run).sample(args.n, seed=0)
        out[run] = collapse_report(samples, real)
        print(run, json.dumps(out[run]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "reference": f"fashion-mnist test[:{args.n}]", "runs": out}, f, indent=2)


if __name__ == "__main__":
    main()
