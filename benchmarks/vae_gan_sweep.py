"""The VAE-GAN's loss-weight / discriminator-width sweep behind its defaults, beside the plain VAE.

Each variant is one `zoo train vae_gan --tflops 10 --seed 0 --set ...` run (every swept field
set explicitly, so the rows do not move when the defaults do), scored by
`zoo eval RUN --n 5000 --metrics fid,pr` and by the mode-collapse check
(`zoo.metrics.collapse.collapse_report` of n samples, seed 0, against the first n test images).
Finished runs and evaluations are reused, so an interrupted
sweep picks up where it stopped. One job at a time; about 2.5 min per variant on 2 CPU cores.

  .venv/bin/python benchmarks/vae_gan_sweep.py --out runs/vae_gan_sweep --json results/vae_gan/sweep.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# name -> (family, {field: value}); the first vae_gan row is the defaults before this sweep
VARIANTS = {
    "vae": ("vae", {}),
    "d32-64_adv1_feat10": ("vae_gan", {"d_widths": "32,64", "adv_weight": 1, "feature_weight": 10}),
    "d32-64_adv0.3_feat10": ("vae_gan", {"d_widths": "32,64", "adv_weight": 0.3, "feature_weight": 10}),
    "d32-64_adv0.1_feat1": ("vae_gan", {"d_widths": "32,64", "adv_weight": 0.1, "feature_weight": 1}),
    "d32-64_adv1_feat10_lr1e-3_b0.9": ("vae_gan", {"d_widths": "32,64", "adv_weight": 1, "feature_weight": 10,
                                                   "lr": 0.001, "beta1": 0.9}),
    "d32-64_adv4_feat10": ("vae_gan", {"d_widths": "32,64", "adv_weight": 4, "feature_weight": 10}),
    "d16-32_adv1_feat10": ("vae_gan", {"d_widths": "16,32", "adv_weight": 1, "feature_weight": 10}),
    "d16-32_adv1_feat3": ("vae_gan", {"d_widths": "16,32", "adv_weight": 1, "feature_weight": 3}),
    "d16-32_adv1_feat10_lrd1e-3": ("vae_gan", {"d_widths": "16,32", "adv_weight": 1, "feature_weight": 10,
                                               "lr_d": 0.001}),
    "d16-32_adv2_feat10": ("vae_gan", {"d_widths": "16,32", "adv_weight": 2, "feature_weight": 10}),
    "d16-32_adv4_feat10": ("vae_gan", {"d_widths": "16,32", "adv_weight": 4, "feature_weight": 10}),
    "d16-32_adv4_feat30": ("vae_gan", {"d_widths": "16,32", "adv_weight": 4, "feature_weight": 30}),
    "d16-32_adv8_feat10": ("vae_gan", {"d_widths": "16,32", "adv_weight": 8, "feature_weight": 10}),
    "d8-16_adv4_feat10": ("vae_gan", {"d_widths": "8,16", "adv_weight": 4, "feature_weight": 10}),
}


def collapse(run_dir: Path, data: str, n: int) -> dict:
    """The mode-collapse report of a run, in the file format `zoo bench collapse` writes."""
    import zoo
    from zoo.data import load_dataset
    from zoo.metrics.collapse import collapse_report
    real = load_dataset(data, "test").images[:n]
    rep = collapse_report(zoo.load(run_dir).sample(n, seed=0), real)
    print(run_dir, json.dumps(rep), file=sys.stderr, flush=True)
    return {"n": n, "reference": f"{data} test[:{n}]", "runs": {str(run_dir): rep}}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # stdout carries only the table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/vae_gan_sweep", help="folder for the run directories")
    ap.add_argument("--tflops", type=float, default=10.0, help="training budget per variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=5000, help="samples scored per variant")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    ap.add_argument("--data", default="fashion-mnist", help="dataset spec to train and check on")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    bindir = Path(sys.executable).parent
    rows = []
    for name, (family, sets) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        d = Path(args.out) / name
        if not (d / "summary.json").exists():
            run([str(bindir / "zoo"), "train", family, "--data", args.data, "--tflops", str(args.tflops),
                 "--seed", str(args.seed), "--out", str(d), "--quiet",
                 *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]])
        if not (d / "eval.json").exists():
            run([str(bindir / "zoo"), "eval", str(d), "--data", args.data, "--n", str(args.n), "--metrics", "fid,pr",
                 "--quiet", "--json", str(d / "eval.json")])
        if not (d / "collapse.json").exists():
            tmp = d / "collapse.json.tmp"
            tmp.write_text(json.dumps(collapse(d, args.data, args.n), indent=2))
            tmp.replace(d / "collapse.json")
        ev = json.loads((d / "eval.json").read_text())
        col = json.loads((d / "collapse.json").read_text())["runs"][str(d)]
        summ = json.loads((d / "summary.json").read_text())
        rows.append({"name": name, "family": family, "sets": sets, "steps": summ.get("steps"),
                     "fid": ev["fid"], "precision": ev["precision"], "recall": ev["recall"],
                     "max_class_share": col.get("max_class_share"), "std_ratio": col["std_ratio"],
                     "collapsed": col["collapsed"], "git_commit": ev.get("provenance", {}).get("git_commit")})
    print("| variant | steps | FID n=%d | precision | recall | largest class share | std ratio |" % args.n)
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        flag = " (flagged)" if r["collapsed"] else ""
        print(f"| {r['name']} | {r['steps']} | {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['max_class_share']:.3f}{flag} | {r['std_ratio']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"tflops": args.tflops, "seed": args.seed, "n": args.n,
                                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
