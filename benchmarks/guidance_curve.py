"""FID against CLIP score over classifier-free guidance scales, for conditional runs of the families
that have guidance (diffusion, latent diffusion; also the pixel GPT and the VQ-VAE prior).

Each run samples n images prompted by the test split's own captions (image i by test caption i, as
`zoo bench --conditional` does) at every guidance scale, with the same seeds; FID is against the test
split (fmnist-cnn features), CLIP score by the committed evaluator pair. Lower right is better.

    python benchmarks/guidance_curve.py runs/ldm-mlm-s runs/ldm-mlm-m runs/ldm-mlm-l \
        --labels mlm-s,mlm-m,mlm-l --out results/conditional/encoder_size

Writes OUT.json, OUT.md (a table with the command) and OUT.png (one line per run).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from zoo.api import atomic_write_text, load
from zoo.data import load_dataset
from zoo.metrics.evaluate import evaluate
from zoo.provenance import git_commit, machine
from zoo.text.clip import load_clip
from zoo.text.encoder import caption_embeddings


def curve(run: str, scales: list[float], n: int, batch_size: int) -> list[dict]:
    model = load(run)
    if not (model.is_conditional and model.guidance):
        sys.exit(f"error: {run} is not a conditional run of a family with guidance")
    test = load_dataset("fashion-mnist", "test")
    prompts, cond = caption_embeddings(model.config.text_encoder, test.images[:n], test.labels[:n])
    clip = load_clip()
    out = []
    for w in tqdm(scales, desc=Path(run).name, unit="scale"):
        t0 = time.time()
        images = model.sample(n, seed=0, cond=cond, guidance=w, batch_size=batch_size)
        wall = time.time() - t0
        fid = evaluate(images, data="fashion-mnist", features="fmnist-cnn", metrics=("fid",), split="test", n=n)["fid"]
        cs = clip.clip_score(images, prompts)
        out.append({"guidance": w, "fid": fid, "clip_score": float(cs.mean()),
                    "clip_score_sem": float(cs.std() / len(cs) ** 0.5), "nfe": model.nfe(guidance=w),
                    "sample_wall_s": round(wall, 1)})
    return out


def figure(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, pts in results.items():
        xs, ys = [p["clip_score"] for p in pts], [p["fid"] for p in pts]
        ax.plot(xs, ys, marker="o", label=label)
        for p in pts:
            ax.annotate(f"{p['guidance']:g}", (p["clip_score"], p["fid"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    ax.set_xlabel("CLIP score (evaluator pair) →")
    ax.set_ylabel("FID (fmnist-cnn) ↓")
    ax.set_title("FID against CLIP score over guidance scales (labels: w)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="conditional run folders")
    ap.add_argument("--labels", default=None, help="comma-separated legend labels [default: the folder names]")
    ap.add_argument("--guidance", default="0,1,2,3,5,8", help="guidance scales")
    ap.add_argument("--n", type=int, default=1000, help="samples per point (test captions 0..n-1)")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--out", required=True, help="output path without suffix")
    a = ap.parse_args()
    labels = a.labels.split(",") if a.labels else [Path(r).name for r in a.runs]
    if len(labels) != len(a.runs):
        sys.exit("error: one label per run")
    scales = [float(s) for s in a.guidance.split(",")]
    torch.set_num_threads(torch.get_num_threads())
    results = {lab: curve(run, scales, a.n, a.batch_size) for lab, run in zip(labels, a.runs)}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"command": cmd, "git_commit": git_commit(), "machine": machine(), "n": a.n, "runs": dict(zip(labels, a.runs)),
         "results": results}, indent=2))
    lines = [f"Command: `{cmd}`", "", f"n = {a.n} samples per point, prompted by test captions 0..{a.n - 1}; "
             "FID against the test split (fmnist-cnn), CLIP score by the committed evaluator pair.", "",
             "| run | guidance | FID ↓ | CLIP score ↑ | NFE | sample wall (s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {lab} | {p['guidance']:g} | {p['fid']:.2f} | {p['clip_score']:.2f} ± {p['clip_score_sem']:.2f} | "
              f"{p['nfe']} | {p['sample_wall_s']} |" for lab, pts in results.items() for p in pts]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    figure(results, out.with_suffix(".png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
