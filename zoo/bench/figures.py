"""The bench's figures, one function each, all written atomically under ``<out>/figures``:
sample grids, FID against sampling throughput, training curves, FID against NFE, interpolations.
Each returns the names (relative to ``out``) of what it wrote or kept, for RESULTS.md.

Sample grids, training curves and interpolations come from the cells' run folders, which are not
committed with the tables (a fresh clone has the cells but not ``runs/``). So what they need is kept
under ``figures/`` beside them while a run folder is there: the sample grid and interpolation strip
of each family's lowest seed (``samples-<family>.png``, ``interpolation-<family>.png``) and each
cell's loss curve (``curves/<cell>.json``). A merge draws from those when the run folder is gone.
Where neither is there (cells made before this was kept), a figure is kept as it was drawn unless
some cell was (re)made in this checkout: then it is redrawn with what there is, and says what is
missing, rather than show a replaced cell's old curve or strip."""
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


def _first_seed_run(out: Path, row: dict) -> Path:
    """The run folder of the row's lowest seed."""
    return run_dir(out, cell_name(row["family"], min(row["seeds"])))


def _first_seed_file(out: Path, row: dict, name: str) -> Path:
    return _first_seed_run(out, row) / name


def _keep_copy(out: Path, figdir: Path, row: dict, src_name: str, dst_name: str) -> tuple[Path | None, bool]:
    """Copy ``src_name`` of the row's lowest-seed run folder to ``figdir/dst_name`` when the folder
    has it. Returns (the copy, or None if there is none, new or kept; whether it was copied now)."""
    src, dst = _first_seed_file(out, row, src_name), figdir / dst_name
    fresh = src.exists()
    if fresh:
        tmp = dst.with_suffix(".tmp.png")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)
    return (dst if dst.exists() else None), fresh


def sample_grids(out: Path, figdir: Path, rows: list[dict]) -> list[str]:
    """Each family's sample grid from its lowest-seed run (identical sampling seeds across families)."""
    names = []
    for r in rows:
        grid, _ = _keep_copy(out, figdir, r, "samples.png", f"samples-{r['family']}.png")
        if grid is not None:  # copied now, or kept from when the run folder was there
            names.append(f"{FIGURES_DIR}/{grid.name}")
    return names


def _kept(figdir: Path, name: str) -> list[str]:
    """An existing figure kept as it is (its run folders are gone): its name, or nothing."""
    return [f"{FIGURES_DIR}/{name}"] if (figdir / name).exists() else []


def pareto_figure(figdir: Path, rows: list[dict], speeds: dict | None = None) -> list[str]:
    """FID against sampling throughput (log scale), with seed std error bars. With ``speeds`` (a
    speed.json of ``zoo bench speed``) the throughput of each family is the one measured there, one
    family after another; otherwise each cell's own, measured while the bench ran."""
    quiet = {r["family"]: r["images_per_s"] for r in (speeds or {}).get("rows", [])}
    pts = [r for r in rows if r["fid"] is not None and (quiet.get(r["family"]) or r["images_per_s"])]
    if not pts:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in pts:
        x, xerr = (quiet[r["family"]], 0) if r["family"] in quiet else (r["images_per_s"], r["images_per_s_std"] or 0)
        ax.errorbar(x, r["fid"], xerr=xerr, yerr=r["fid_std"] or 0, fmt="o", capsize=3)
        ax.annotate(r["family"], (x, r["fid"]), textcoords="offset points", xytext=(5, 4))
    ax.set_xscale("log")
    ax.set_xlabel("sampling throughput (images/s, batch 256, log scale" + ("; zoo bench speed)" if quiet else
                                                                           "; measured in each cell)"))
    ax.set_ylabel("FID (lower is better)")
    ax.set_title("Quality against sampling cost")
    ax.grid(alpha=0.3, which="both")
    return [save_figure(fig, figdir, "pareto.png")]


CURVES_DIR = "curves"
CURVE_POINTS = 400   # a kept curve's most points: enough for a 3 x 2.6 inch panel


def _loss_curve(log_file: Path) -> tuple[str, list[float], list[float]] | None:
    """(loss key, training TFLOP, loss) of the first logged key ending in 'loss', from a log.jsonl,
    thinned to at most CURVE_POINTS evenly spaced records (the last one always in)."""
    if not log_file.exists():
        return None
    recs = [json.loads(x) for x in log_file.read_text().splitlines() if x.strip()]
    key = next((k for k in recs[0] if k.endswith("loss")), None) if recs else None
    if not key:
        return None
    recs = [x for x in recs if key in x]
    if len(recs) > CURVE_POINTS:
        recs = [recs[round(i * (len(recs) - 1) / (CURVE_POINTS - 1))] for i in range(CURVE_POINTS)]
    return key, [x["flops"] / 1e12 for x in recs], [x[key] for x in recs]


def cell_curves(out: Path, figdir: Path, cells: list[dict]) -> tuple[dict, bool]:
    """{(family, seed): (key, TFLOP, loss) or None} from each run folder's log (kept then under
    figures/curves/) or, with the run folder gone, from what was kept; and whether any came from a
    run folder now."""
    kept_dir = figdir / CURVES_DIR
    curves, fresh = {}, False
    for c in cells:
        name = cell_name(c["family"], c["seed"])
        kept = kept_dir / f"{name}.json"
        curve = _loss_curve(run_dir(out, name) / "log.jsonl")
        if curve is not None:
            fresh = True
            kept_dir.mkdir(exist_ok=True)
            key, xs, ys = curve
            atomic_write_text(kept, json.dumps({"key": key, "tflops": xs, "loss": ys}) + "\n")
        elif kept.exists():
            doc = json.loads(kept.read_text())
            curve = doc["key"], doc["tflops"], doc["loss"]
        curves[(c["family"], c["seed"])] = curve
    return curves, fresh


def training_curves_figure(out: Path, figdir: Path, cells: list[dict]) -> list[str]:
    """One panel per family: the first logged loss against training TFLOP, one line per seed."""
    fams = sorted({c["family"] for c in cells})
    if not fams:
        return []
    curves, fresh = cell_curves(out, figdir, cells)
    if not fresh and not all(curves.values()) and (figdir / "training_curves.png").exists():
        return _kept(figdir, "training_curves.png")
    plt = _plt()
    cols = min(4, len(fams))
    nrows = math.ceil(len(fams) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    for ax, fam in zip(axes.flat, fams):
        missing = []
        for (f, seed), curve in sorted(curves.items()):
            if f != fam:
                continue
            if curve is None:
                missing.append(str(seed))
                continue
            key, xs, ys = curve
            ax.plot(xs, ys, label=f"seed {seed}", lw=1)
            ax.set_ylabel(key, fontsize=8)
        if missing and len(missing) == sum(f == fam for f, _ in curves):
            ax.set_xticks([])
            ax.set_yticks([])
        if missing:
            ax.text(0.5, 0.5, f"seed {', '.join(missing)}: curve not kept\n(run folder gone)", transform=ax.transAxes,
                    ha="center", va="center", fontsize=7, color="gray")
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


def _has_latent(family: str) -> bool:
    """Whether the family draws an interpolation strip (True for a family not registered here)."""
    from ..api import get_model_class
    from ..errors import ZooError
    try:
        return get_model_class(family).has_latent
    except ZooError:
        return True


def interpolations_figure(out: Path, figdir: Path, rows: list[dict]) -> list[str]:
    """The lowest-seed interpolation strips stacked, one row per family with a latent (named in
    interpolations.txt, with the families whose strip is unknown: run folder gone, nothing kept)."""
    from PIL import Image
    import torchvision.transforms.functional as TF
    from torchvision.utils import make_grid, save_image
    strips, unknown, fresh = [], [], False
    for r in rows:
        strip, copied = _keep_copy(out, figdir, r, "interpolation.png", f"interpolation-{r['family']}.png")
        fresh |= copied
        if strip is not None:
            strips.append((r["family"], strip))
        elif _has_latent(r["family"]) and not _first_seed_run(out, r).exists():
            unknown.append(r["family"])
    if unknown and not fresh and (figdir / "interpolations.png").exists():
        return _kept(figdir, "interpolations.png")
    if not strips:
        return []
    ims = [TF.pil_to_tensor(Image.open(p).convert("RGB")) for _, p in strips]
    w = max(i.shape[2] for i in ims)
    ims = [torch.nn.functional.pad(i, (0, w - i.shape[2])) for i in ims]
    tmp = figdir / "interpolations.tmp.png"
    save_image(make_grid([i.float() / 255 for i in ims], nrow=1, padding=4, pad_value=1.0), str(tmp))
    os.replace(tmp, figdir / "interpolations.png")
    note = f"; not kept (run folder gone): {', '.join(unknown)}" if unknown else ""
    atomic_write_text(figdir / "interpolations.txt", "rows, top to bottom: " + ", ".join(f for f, _ in strips)
                      + note + "\n")
    return [f"{FIGURES_DIR}/interpolations.png"]


def make_figures(out: Path, cells: list[dict], rows: list[dict], speeds: dict | None = None) -> list[str]:
    """Every figure of the bench folder ``out`` (``speeds``: its speed.json, for the pareto figure);
    returns their names relative to ``out``."""
    figdir = out / FIGURES_DIR
    figdir.mkdir(parents=True, exist_ok=True)
    return (sample_grids(out, figdir, rows) + pareto_figure(figdir, rows, speeds)
            + training_curves_figure(out, figdir, cells) + quality_vs_nfe_figure(figdir, cells)
            + interpolations_figure(out, figdir, rows))
