"""The bench's figures, one function each, all written atomically under ``<out>/figures``:
sample grids, FID against sampling throughput, training curves, FID against NFE, interpolations.
Each returns the names (relative to ``out``) of what it wrote or kept, for RESULTS.md.

Sample grids, training curves and interpolations are drawn from the cells' run folders, which are
not committed with the tables (a fresh clone has the cells but not ``runs/``). A figure that needs
a run folder that is gone is therefore kept as it was drawn when the folder was there, not redrawn
with less in it: a merge in a fresh clone must not lose figures."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..api import atomic_write_text
from .rundir import run_dir
from .store import cell_name
from .tables import mean_std

FIGURES_DIR = "figures"


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, figdir: Path, name: str) -> str:
    """Save a matplotlib figure as ``figdir/name`` atomically, close it; returns 'figures/<name>'."""
    plt = _plt()
    tmp = figdir / (name + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, figdir / name)
    return f"{FIGURES_DIR}/{name}"


def _first_seed_file(out: Path, row: dict, name: str) -> Path:
    return run_dir(out, cell_name(row["family"], min(row["seeds"]))) / name


def sample_grids(out: Path, figdir: Path, rows: list[dict]) -> list[str]:
    """Copy each family's sample grid from its lowest-seed run (identical sampling seeds across families)."""
    names = []
    for r in rows:
        src, dst = _first_seed_file(out, r, "samples.png"), figdir / f"samples-{r['family']}.png"
        if src.exists():
            tmp = figdir / f"samples-{r['family']}.tmp.png"
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, dst)
        if dst.exists():  # copied now, or kept from when the run folder was there
            names.append(f"{FIGURES_DIR}/samples-{r['family']}.png")
    return names


def _kept(figdir: Path, name: str) -> list[str]:
    """An existing figure kept as it is (its run folders are gone): its name, or nothing."""
    return [f"{FIGURES_DIR}/{name}"] if (figdir / name).exists() else []


def pareto_figure(figdir: Path, rows: list[dict]) -> list[str]:
    """FID against sampling throughput (log scale), with seed std error bars."""
    pts = [r for r in rows if r["fid"] is not None and r["images_per_s"]]
    if not pts:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in pts:
        ax.errorbar(r["images_per_s"], r["fid"], xerr=r["images_per_s_std"] or 0, yerr=r["fid_std"] or 0,
                    fmt="o", capsize=3)
        ax.annotate(r["family"], (r["images_per_s"], r["fid"]), textcoords="offset points", xytext=(5, 4))
    ax.set_xscale("log")
    ax.set_xlabel("sampling throughput (images/s, batch 256, log scale)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title("Quality against sampling cost")
    ax.grid(alpha=0.3, which="both")
    return [save_figure(fig, figdir, "pareto.png")]


def _loss_curve(log_file: Path) -> tuple[str, list[float], list[float]] | None:
    """(loss key, training TFLOP, loss) of the first logged key ending in 'loss', from a log.jsonl."""
    if not log_file.exists():
        return None
    recs = [json.loads(x) for x in log_file.read_text().splitlines() if x.strip()]
    key = next((k for k in recs[0] if k.endswith("loss")), None) if recs else None
    if not key:
        return None
    return key, [x["flops"] / 1e12 for x in recs if key in x], [x[key] for x in recs if key in x]


def training_curves_figure(out: Path, figdir: Path, cells: list[dict]) -> list[str]:
    """One panel per family: the first logged loss against training TFLOP, one line per seed."""
    fams = sorted({c["family"] for c in cells})
    if not fams:
        return []
    logs = {(c["family"], c["seed"]): run_dir(out, cell_name(c["family"], c["seed"])) / "log.jsonl" for c in cells}
    if not all(p.exists() for p in logs.values()) and (figdir / "training_curves.png").exists():
        return _kept(figdir, "training_curves.png")
    plt = _plt()
    cols = min(4, len(fams))
    nrows = math.ceil(len(fams) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    for ax, fam in zip(axes.flat, fams):
        for c in cells:
            if c["family"] != fam:
                continue
            curve = _loss_curve(logs[(fam, c["seed"])])
            if curve:
                key, xs, ys = curve
                ax.plot(xs, ys, label=f"seed {c['seed']}", lw=1)
                ax.set_ylabel(key, fontsize=8)
        ax.set_title(fam, fontsize=9)
        ax.set_xlabel("training TFLOP", fontsize=8)
    for ax in list(axes.flat)[len(fams):]:
        ax.axis("off")
    fig.tight_layout()
    return [save_figure(fig, figdir, "training_curves.png")]


def quality_vs_nfe_figure(figdir: Path, cells: list[dict]) -> list[str]:
    """FID against network evaluations per sample for the families with an NFE sweep (seed mean ± std)."""
    sw = [c for c in cells if c.get("sweep")]
    if not sw:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for fam in sorted({c["family"] for c in sw}):
        by_nfe: dict[int, list[float]] = {}
        for c in sw:
            if c["family"] == fam:
                for s in c["sweep"]:
                    by_nfe.setdefault(s["nfe"], []).append(s["fid"])
        xs = sorted(by_nfe)
        ms = [mean_std(by_nfe[x]) for x in xs]
        ax.errorbar(xs, [m for m, _ in ms], yerr=[s or 0 for _, s in ms], marker="o", capsize=3, label=fam)
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per sample (log scale)")
    ax.set_ylabel("FID")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return [save_figure(fig, figdir, "quality_vs_nfe.png")]


def interpolations_figure(out: Path, figdir: Path, rows: list[dict]) -> list[str]:
    """The lowest-seed interpolation strips stacked, one row per family with a latent (named in
    interpolations.txt)."""
    from PIL import Image
    import torchvision.transforms.functional as TF
    from torchvision.utils import make_grid, save_image
    if not all(run_dir(out, cell_name(r["family"], min(r["seeds"]))).exists() for r in rows) \
            and (figdir / "interpolations.png").exists():
        return _kept(figdir, "interpolations.png")
    strips = [(r["family"], _first_seed_file(out, r, "interpolation.png")) for r in rows]
    strips = [(f, p) for f, p in strips if p.exists()]
    if not strips:
        return []
    ims = [TF.pil_to_tensor(Image.open(p).convert("RGB")) for _, p in strips]
    w = max(i.shape[2] for i in ims)
    ims = [torch.nn.functional.pad(i, (0, w - i.shape[2])) for i in ims]
    tmp = figdir / "interpolations.tmp.png"
    save_image(make_grid([i.float() / 255 for i in ims], nrow=1, padding=4, pad_value=1.0), str(tmp))
    os.replace(tmp, figdir / "interpolations.png")
    atomic_write_text(figdir / "interpolations.txt", "rows, top to bottom: " + ", ".join(f for f, _ in strips) + "\n")
    return [f"{FIGURES_DIR}/interpolations.png"]


def make_figures(out: Path, cells: list[dict], rows: list[dict]) -> list[str]:
    """Every figure of the bench folder ``out``; returns their names relative to ``out``."""
    figdir = out / FIGURES_DIR
    figdir.mkdir(parents=True, exist_ok=True)
    return (sample_grids(out, figdir, rows) + pareto_figure(figdir, rows)
            + training_curves_figure(out, figdir, cells) + quality_vs_nfe_figure(figdir, cells)
            + interpolations_figure(out, figdir, rows))
