"""The small recipe sweeps behind each family's budget rule (``Generator.recipe``, issue 15).

Each row is one `zoo train FAMILY --tflops T --seed S --set ...` run (every swept field given
explicitly, so a row does not move when the recipe does; ``--no-recipe`` keeps the family's own
rule out of it), then `zoo eval RUN --n N --metrics fid,pr,dc --json ...`, and test bits/dim
on the first --bpd test images for a family with a likelihood (`zoo train --eval-bpd`).
Finished runs and evaluations are reused, so an interrupted sweep picks up where it stopped.
One job at a time.

  .venv/bin/python benchmarks/recipe_sweep.py pixel_gpt --tflops 1,3 \
      --variant b16:train.batch_size=16 --variant b32:train.batch_size=32 \
      --out runs/sweep --json results/pixel_gpt/recipe_sweep.json

The table (markdown) goes to stdout; progress to stderr.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ZOO = str(Path(sys.executable).with_name("zoo"))


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # stdout carries only the table


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'name:key=v,key=v' -> (name, ['key=v', ...]); 'name:' is the family's config as it is."""
    name, _, sets = text.partition(":")
    return name, [s for s in sets.split(",") if s]


def one(family: str, tflops: float, seed: int, name: str, sets: list[str], args) -> dict:
    sized = args.size != "1"
    rd = Path(args.out) / (f"{family}-{name}-{tflops:g}tf" + (f"-size{args.size}" if sized else "") + f"-s{seed}")
    if not (rd / "summary.json").exists():
        cmd = [ZOO, "train", family, "--tflops", str(tflops), "--seed", str(seed), "--out", str(rd), "--quiet",
               "--no-recipe", "--eval-bpd", str(args.bpd)] + (["--size", args.size] if sized else [])
        for s in sets:
            cmd += ["--set", s]
        if (rd / "config.json").exists():
            cmd.append("--resume")
        run(cmd)
    ev = rd / f"eval-n{args.n}.json"
    if not ev.exists():
        run([ZOO, "eval", str(rd), "--n", str(args.n), "--metrics", "fid,pr,dc", "--quiet", "--json", str(ev)])
    summary = json.loads((rd / "summary.json").read_text())
    metrics = json.loads(ev.read_text())
    bpd_file = rd / "bpd.json"
    bpd = json.loads(bpd_file.read_text()) if bpd_file.exists() else {}
    made_on = summary.get("machine", {})   # runs finished before summaries named their machine: {}
    return {"family": family, "variant": name, "sets": sets, "tflops": tflops, "seed": seed, "run": str(rd),
            "size": args.size, "params": summary.get("params"),
            "steps": summary.get("steps"), "train_wall_s": summary.get("wall_s"),
            "fid": metrics.get("fid"), "precision": metrics.get("precision"), "recall": metrics.get("recall"),
            "coverage": metrics.get("coverage"), "bpd": bpd.get("bpd"), "n": args.n,
            "threads": made_on.get("threads"), "cpu": made_on.get("cpu")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family")
    ap.add_argument("--tflops", default="1,3", help="comma-separated budgets")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME:KEY=V,KEY=V (model fields, or train.KEY for the trainer); repeatable")
    ap.add_argument("--n", type=int, default=2000, help="samples scored against the first n test images")
    ap.add_argument("--bpd", type=int, default=1000, help="test images for bits/dim (0: skip)")
    ap.add_argument("--size", default="1", help="zoo train --size: a width multiplier, or 'fitted' (the size "
                                                "the family's size rule gives for each budget)")
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--json", help="write the rows here (merged with the rows already in it)")
    args = ap.parse_args()
    rows = []
    for t in [float(x) for x in args.tflops.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name, sets in map(parse_variant, args.variant):
                rows.append(one(args.family, t, seed, name, sets, args))
    if args.json:
        path = Path(args.json)
        old = json.loads(path.read_text())["rows"] if path.exists() else []
        key = lambda r: (r["variant"], r["tflops"], r["seed"], r.get("size", "1"))  # noqa: E731
        keep = {key(r) for r in rows}
        rows = [r for r in old if key(r) not in keep] + rows
        path.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    print("| variant | settings | size | params | TFLOP | seed | steps | FID | precision | recall | coverage | bits/dim |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    for r in sorted(rows, key=lambda r: (r["tflops"], r["variant"], r["seed"])):
        print(f"| {r['variant']} | {' '.join(r['sets']) or 'defaults'} | {r.get('size', '1')} | {fmt(r.get('params'), ',')} | "
              f"{r['tflops']:g} | {r['seed']} | {r['steps']} | "
              f"{fmt(r['fid'], '.2f')} | {fmt(r['precision'], '.3f')} | {fmt(r['recall'], '.3f')} | "
              f"{fmt(r['coverage'], '.3f')} | {fmt(r['bpd'], '.3f')} |")


if __name__ == "__main__":
    main()
