"""`zoo bench --profile isoflop`: every family at several sizes under each of several training
budgets, and the size that each budget deserves (the IsoFLOP method of Hoffmann et al. 2022).

Each (budget, parameter scale) is an ordinary bench folder, ``<out>/<T>tf/p<S>`` (cells, run
folders, locks, shards and resume exactly as for one profile), run from the cheapest budget and the
smallest size up. A parameter scale S trains every family at the width multiplier that gives it S
times its default parameter count (:func:`zoo.sizing.size_for_params`). With ``--depth D`` the block
counts are D times the default's and the widths give S at that depth, in ``p<S>-d<D>``: the way to a
size below a family's width floor (the flow's). The fits take every folder of a budget, at any depth,
as points on one curve of FID against parameters.

From every finished cell ``<out>`` gets isoflop.json, ISOFLOP.md and one figure per family (FID
against parameters, one curve per budget). At each budget, where a family's best size tried has a
smaller and a larger one beside it, the parabola in log10(parameters) through those three points
(numpy.polyfit) gives the best size at its vertex; otherwise the budget's minimum is at an edge and
the range has to grow (``--param-scales``). Through the interior minima of a family a line
log10 N_opt = c + a·log10 C is fitted (scipy.stats.linregress): ``a`` is the family's size
exponent, with its standard error from three budgets on.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Callable

import click

from ..api import atomic_write_text, get_model_class
from ..errors import RunFailed, ZooError
from .profiles import Profile, profile_record
from .speed import read_speeds
from .settings import trained_by
from .store import read_cells

POINT_KEYS = ("fid", "bpd", "coverage", "min_class_share", "params", "size", "steps", "epochs", "train_wall_s",
              "cell_wall_s", "images_per_s", "sample_flops_per_image")


def folder(out: Path, tflops: float, scale: float, depth: float = 1.0) -> Path:
    """Where one (budget, parameter scale, depth) folder lives: '<out>/10tf/p0.45', '<out>/1tf/p0.05-d0.25'."""
    return out / f"{tflops:g}tf" / (f"p{scale:g}" + (f"-d{depth:g}" if depth != 1 else ""))


def sub_profile(profile: Profile, tflops: float, scale: float, depth: float = 1.0) -> Profile:
    """The one-budget, one-size profile that a folder runs."""
    return dataclasses.replace(profile, tflops=float(tflops), budgets=(), param_scales=(), param_scale=float(scale),
                               depth=float(depth))


def check_families(families: list[str], depth: float = 1.0, fitted: bool = False) -> None:
    """One-line ZooError for a family without a size axis (``Generator.size_fields``), at a depth
    other than 1 without a depth axis (``Generator.depth_fields``), or with ``fitted`` (``--sizes
    fitted``) without a fitted size rule (``Generator.size_rule``)."""
    bare = [f for f in families if not get_model_class(f).size_fields]
    if bare:
        raise ZooError(f"a parameter scale needs a size axis; {', '.join(bare)} has none: leave it out of --families")
    flat = [f for f in families if depth != 1 and not get_model_class(f).depth_fields]
    if flat:
        raise ZooError(f"--depth needs a depth axis; {', '.join(flat)} has none: leave it out of --families")
    ruleless = [f for f in families if fitted and get_model_class(f).size_rule is None]
    if ruleless:
        raise ZooError(f"--sizes fitted needs a fitted size rule (results/isoflop/ISOFLOP.md); "
                       f"{', '.join(ruleless)} has none: leave it out of --families")


def run_isoflop(profile: Profile, families: list[str], data: str, out: Path, features, command: str, *,
                tiny: bool = False, force: bool = False, shard: tuple[int, int] | None = None,
                merge: bool = False, rebuild: bool = False, log: Callable[[str], None] = click.echo) -> Path:
    """Run (or resume) every (budget, size) folder, cheapest budget and smallest size first, then write
    the IsoFLOP tables and figures (also after each folder, so that an interrupted sweep has them).
    A folder whose cells fail does not stop the others; RunFailed at the end."""
    from .runner import run_bench
    check_families(families)
    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for b in sorted(profile.budgets):
        for s, d in (sizes_run(out, profile, b) if merge else [(s, profile.depth) for s in sorted(profile.param_scales)]):
            where = folder(out, b, s, d)
            if not merge:
                log(f"isoflop: {b:g} TFLOP, parameters {_size_label(s, d)} -> {where}")
            try:
                if not merge or (where / "cells").is_dir():
                    run_bench(sub_profile(profile, b, s, d), families, data, where, features, command, tiny=tiny,
                              force=force, shard=shard, merge=merge, rebuild=rebuild, log=log)
            except RunFailed as e:
                failed.append(f"{b:g} TFLOP at {_size_label(s, d)}: {e}")
            if not merge:
                write_isoflop(out, profile, families, command)
    write_isoflop(out, profile, families, command)
    log(f"isoflop: tables -> {out / 'ISOFLOP.md'}")
    if failed:
        raise RunFailed("; ".join(failed))
    return out


# ---- the points, the fits and the tables -------------------------------------------------------
def sizes_run(out: Path, profile: Profile, tflops: float) -> list[tuple[float, float]]:
    """The (parameter scale, depth) pairs of a budget: the profile's and every other one a run put in
    ``out`` (``--param-scales`` extending the range, ``--depth``), ascending."""
    found = {(s, profile.depth) for s in profile.param_scales}
    for p in (out / f"{tflops:g}tf").glob("p*"):
        m = re.fullmatch(r"p([0-9.e+-]+?)(?:-d([0-9.e+-]+))?", p.name)
        try:
            found.add((float(m[1]), float(m[2] or 1)))
        except (TypeError, ValueError):
            continue
    return sorted(found)


def collect_points(out: Path, profile: Profile, families: list[str]) -> list[dict]:
    """One point per finished (family, budget, scale) cell: the seed mean of POINT_KEYS."""
    from .tables import mean_std
    points = []
    for b in sorted(profile.budgets):
        for s, d in sizes_run(out, profile, b):
            where = folder(out, b, s, d)
            if not (where / "cells").is_dir():
                continue
            cells = read_cells(where)
            quiet = {r["family"]: r["images_per_s"] for r in (read_speeds(where) or {}).get("rows", [])}
            for fam in families:
                cs = [c for c in cells if c["family"] == fam]
                if not cs:
                    continue
                trained = trained_by(cs[0])
                p = {"family": fam, "tflops": b, "param_scale": s, "depth": d, "seeds": sorted(c["seed"] for c in cs),
                     "cpu": trained.get("cpu"), "threads": trained.get("threads")}
                for k in POINT_KEYS:
                    p[k] = mean_std([c.get(k, 1.0 if k == "size" else None) for c in cs])[0]
                if fam in quiet:   # measured one family after another by zoo bench speed, not under the bench's load
                    p["images_per_s"], p["speed_source"] = quiet[fam], "zoo bench speed"
                points.append(p)
    return points


def fit_minimum(points: list[dict]) -> dict | None:
    """The best size at one budget from a family's points there. Where the best size tried has a
    smaller and a larger one beside it (``interior``), the parabola FID = p0·x² + p1·x + p2 in
    x = log10(parameters) through those three points gives ``n_opt`` at its vertex, which then lies
    between them: a local fit, since over a 25x range of sizes FID is far from a parabola. Otherwise
    ``n_opt`` is the best point tried and ``edge`` says which end it is at. None with fewer than three
    points."""
    import numpy as np
    ps = sorted((p for p in points if p.get("fid") is not None and p.get("params")), key=lambda p: p["params"])
    if len(ps) < 3:
        return None
    i = int(np.argmin([p["fid"] for p in ps]))
    best, interior = ps[i], 0 < i < len(ps) - 1
    rec = {"interior": interior, "best_tried_params": best["params"], "best_tried_scale": best["param_scale"],
           "best_tried_depth": best.get("depth", 1.0),
           "best_tried_fid": best["fid"], "points": len(ps), "n_opt": float(best["params"]), "fid_opt": best["fid"],
           "fit_params": None, "fit_coef": None, "edge": None if interior else ("small" if i == 0 else "large")}
    if interior:
        near = ps[i - 1:i + 2]
        coef = np.polyfit(np.log10([p["params"] for p in near]), [p["fid"] for p in near], 2)
        xv = -coef[1] / (2 * coef[0])   # coef[0] > 0: the middle point is the lowest of the three
        rec.update(n_opt=float(10 ** xv), fid_opt=float(np.polyval(coef, xv)),
                   fit_params=[p["params"] for p in near], fit_coef=[float(c) for c in coef])
    return rec


def fit_size_rule(minima: dict[float, dict | None]) -> dict | None:
    """log10 N_opt = c + a·log10 C through the interior minima of a family's budgets; ``a_se`` from
    three budgets on (a line through two points has no spread). None with fewer than two."""
    from scipy.stats import linregress
    xs = [(math.log10(b), math.log10(m["n_opt"])) for b, m in sorted(minima.items()) if m and m["interior"]]
    if len(xs) < 2:
        return None
    r = linregress([x for x, _ in xs], [y for _, y in xs])
    exact = len(xs) == 2
    return {"a": float(r.slope), "a_se": None if exact else float(r.stderr), "c": float(r.intercept),
            "budgets": len(xs)}


def _size_label(scale: float, depth: float, unit: str = "x") -> str:
    """'0.45x', or '0.05x at depth 0.25'."""
    return f"{scale:g}{unit}" + (f" at depth {depth:g}" if depth != 1 else "")


def _num(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def isoflop_markdown(profile: Profile, families: list[str], points: list[dict], minima: dict, rules: dict,
                     command: str, figures: list[str]) -> str:
    budgets = sorted(profile.budgets)
    scales = sorted({(p["param_scale"], p["depth"]) for p in points} | {(s, 1.0) for s in profile.param_scales})
    lines = [f"# zoo bench — profile `{profile.name}`", "",
             f"Families trained at up to {len(scales)} sizes ({', '.join(_size_label(*sd, unit='') for sd in scales)} "
             f"times the family's default parameter count, through one width multiplier over all its networks, and "
             f"where a depth is given its block counts times that depth: `zoo.sizing`) at each of "
             f"{', '.join(f'{b:g}' for b in budgets)} TFLOP (the sizes each family ran at each budget are the rows of "
             f"the last table), seed {','.join(map(str, profile.seeds))}; "
             f"{profile.n:,} samples per cell against the first {profile.n:,} test images (`fmnist-cnn` features), "
             f"bits/dim on the first {profile.bpd_images:,} test images. Each (budget, size) is a bench folder of "
             f"its own (`<T>tf/p<S>/RESULTS.md` has every column and the provenance of its cells).", "",
             f"Produced by `{command}`.", "",
             "## The best size at each budget", "",
             "Where the best size tried has a smaller and a larger size beside it (interior), a parabola in "
             "log10(parameters) through those three points gives the best size at its vertex. Otherwise the best "
             "size tried is given and the "
             "minimum lies at or past the edge named (small or large: the best size tried is the smallest or the largest), so "
             "the range of sizes has to grow there.", "",
             "| family | TFLOP | best size tried (params) | its FID | parabola minimum (params) | its FID | interior | sizes |",
             "|---|---|---|---|---|---|---|---|"]
    for fam in families:
        for b in budgets:
            m = minima.get(fam, {}).get(b)
            if m is None:
                continue
            where = "yes" if m["interior"] else f"no ({m['edge']})"
            lines.append(f"| {fam} | {b:g} | {m['best_tried_params']:,.0f} ({_size_label(m['best_tried_scale'], m['best_tried_depth'])}) | "
                         f"{m['best_tried_fid']:.2f} | {m['n_opt']:,.0f} | {m['fid_opt']:.2f} | {where} | {m['points']} |")
    lines += ["", "## Size rule: log10 N_opt = c + a · log10 C (C in TFLOP)", "",
              "Fitted through the interior minima only; the standard error needs three budgets.", "",
              "| family | a | SE of a | c | budgets |", "|---|---|---|---|---|"]
    for fam in families:
        r = rules.get(fam)
        n_int = sum(1 for m in minima.get(fam, {}).values() if m and m["interior"])
        lines.append(f"| {fam} | {_num(r and r['a'], '.3f')} | {_num(r and r['a_se'], '.3f')} | "
                     f"{_num(r and r['c'], '.3f')} | {n_int} interior |")
    lines += ["", "## Every cell", "",
              "Sampling MFLOP/image counted with `torch.utils.flop_counter` (a bigger model samples more slowly); "
              "images/s at batch 256, marked † where `zoo bench speed` measured it one family after another "
              "(the folder's SPEED.md names the machine and its matmul rate), else as the cell measured it "
              "while the bench ran. CPU and threads are those that trained the cell.", "",
              "| family | TFLOP | scale | width × | depth × | params | FID | bits/dim | coverage | smallest class share | steps | "
              "epochs | sample MFLOP/image | images/s | train wall (s) | CPU, threads |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (families.index(p["family"]), p["tflops"], p["params"])):
        mf = p.get("sample_flops_per_image")
        lines.append(f"| {p['family']} | {p['tflops']:g} | {p['param_scale']:g} | {_num(p.get('size'), 'g')} | "
                     f"{p['depth']:g} | {p['params']:,.0f} | {_num(p.get('fid'), '.2f')} | {_num(p.get('bpd'), '.3f')} | "
                     f"{_num(p.get('coverage'), '.3f')} | {_num(p.get('min_class_share'), '.3f')} | "
                     f"{_num(p.get('steps'), '.0f')} | {_num(p.get('epochs'), '.2f')} | "
                     f"{_num(mf and mf / 1e6, '.2f')} | {_num(p.get('images_per_s'), '.1f')}{'†' if p.get('speed_source') else ''} | "
                     f"{_num(p.get('train_wall_s'), '.0f')} | {p.get('cpu') or '?'}, {p.get('threads') or '?'} |")
    walls = [p["cell_wall_s"] for p in points if p.get("cell_wall_s") is not None]
    lines += ["", f"Wall-clock of the {len(points)} cells: {sum(walls) / 3600:.2f} h (sum of cell times, as recorded "
                  f"by each cell).", ""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _plot_family(ax, fam: str, mine: list[dict], minima: dict) -> None:
    """One family's FID against parameters on ``ax``: a curve per budget, the local parabola of an
    interior minimum dashed, the minimum marked (a star where interior, a cross at an edge)."""
    import numpy as np
    from matplotlib.ticker import NullFormatter
    for i, b in enumerate(sorted({p["tflops"] for p in mine})):
        ps = sorted((p for p in mine if p["tflops"] == b), key=lambda p: p["params"])
        ax.plot([p["params"] for p in ps], [p["fid"] for p in ps], "o-", color=f"C{i}", label=f"{b:g} TFLOP")
        m = minima.get(fam, {}).get(b)
        if m is not None and m["fit_coef"]:   # the local parabola through the best size and its neighbours
            xs = np.linspace(*np.log10([m["fit_params"][0], m["fit_params"][-1]]), 30)
            ax.plot(10 ** xs, np.polyval(m["fit_coef"], xs), "--", color=f"C{i}", alpha=0.6)
        if m is not None:
            ax.plot([m["n_opt"]], [m["fid_opt"]], "*" if m["interior"] else "x", color=f"C{i}", markersize=12)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())   # a range under one decade would print overlapping minor labels
    ax.set_xlabel("parameters")
    ax.set_ylabel("FID (fmnist-cnn)")
    ax.set_title(fam)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def isoflop_figures(out: Path, families: list[str], points: list[dict], minima: dict) -> list[str]:
    """One figure per family (FID against parameters, log x, one curve per budget) and all of them on
    one page (isoflop.png)."""
    from .figures import FIGURES_DIR, _plt, save_figure
    plt = _plt()
    figdir = out / FIGURES_DIR
    figdir.mkdir(parents=True, exist_ok=True)
    have = [f for f in families if any(p["family"] == f and p.get("fid") is not None for p in points)]
    if not have:
        return []
    mine = {f: [p for p in points if p["family"] == f and p.get("fid") is not None] for f in have}
    cols = min(4, len(have))
    fig, axes = plt.subplots((len(have) + cols - 1) // cols, cols, figsize=(4 * cols, 3.3 * ((len(have) + cols - 1) // cols)),
                             squeeze=False)
    for ax, fam in zip(axes.flat, have):
        _plot_family(ax, fam, mine[fam], minima)
    for ax in list(axes.flat)[len(have):]:
        ax.set_visible(False)
    fig.suptitle("FID against parameters at fixed training compute (star: interior minimum; cross: at an edge)")
    fig.tight_layout()
    names = [save_figure(fig, figdir, "isoflop.png"), *_cost_figure(plt, figdir, have, mine)]
    for fam in have:
        fig, ax = plt.subplots(figsize=(5, 4))
        _plot_family(ax, fam, mine[fam], minima)
        ax.set_title(f"{fam}: FID against size at fixed compute")
        names.append(save_figure(fig, figdir, f"isoflop-{fam}.png"))
    return names


def _cost_figure(plt, figdir: Path, families: list[str], mine: dict[str, list[dict]]) -> list[str]:
    """FID against sampling images/s: a line per family and budget through its sizes, so that what
    a bigger model costs to sample sits beside what it gains."""
    from .figures import save_figure
    fig, ax = plt.subplots(figsize=(7, 5))
    marks = "osD^v"
    budgets = sorted({p["tflops"] for ps in mine.values() for p in ps})
    for i, fam in enumerate(families):
        for j, b in enumerate(budgets):
            ps = sorted((p for p in mine[fam] if p["tflops"] == b and p.get("images_per_s")), key=lambda p: p["params"])
            if ps:
                ax.plot([p["images_per_s"] for p in ps], [p["fid"] for p in ps], marker=marks[j % len(marks)],
                        color=f"C{i % 10}", label=f"{fam}, {b:g} TFLOP", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("sampling images/s at batch 256 (log; † in ISOFLOP.md: measured by zoo bench speed)")
    ax.set_ylabel("FID (fmnist-cnn)")
    ax.set_title("Quality against sampling cost, each line through a family's sizes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return [save_figure(fig, figdir, "isoflop-cost.png")]


def write_isoflop(out: Path, profile: Profile, families: list[str], command: str) -> None:
    """isoflop.json, ISOFLOP.md and figures/isoflop-<family>.png from every finished cell."""
    points = collect_points(out, profile, families)
    minima = {fam: {b: fit_minimum([p for p in points if p["family"] == fam and p["tflops"] == b])
                    for b in sorted(profile.budgets)} for fam in families}
    rules = {fam: fit_size_rule(minima[fam]) for fam in families}
    figs = isoflop_figures(out, families, points, minima)
    doc = {"command": command, "profile": profile_record(profile), "points": points,
           "minima": {f: {f"{b:g}": m for b, m in ms.items()} for f, ms in minima.items()}, "size_rules": rules}
    atomic_write_text(out / "isoflop.json", json.dumps(doc, indent=2, default=str))
    atomic_write_text(out / "ISOFLOP.md", isoflop_markdown(profile, families, points, minima, rules, command, figs))
