"""`zoo bench --profile scaling`: every family at several training budgets, and how its quality
scales with training compute.

Each budget is an ordinary bench folder, ``<out>/<T>tf`` (its cells, run folders, locks and
resume exactly as for one profile), run from the cheapest budget up. With ``reuse``, the budget
of that folder's profile (the standard table's 10 TFLOP) is read from it instead of trained
again, once its cells are checked to have been made with this profile's settings.

From every finished point ``<out>`` gets scaling.json, SCALING.md and figures/scaling.png: FID
(and coverage, bits/dim and the smallest class share) against training TFLOP, a power law
``FID - floor = a * C^(-b)`` fitted per family (least squares in log-log, ``scipy.stats.linregress``),
the winner at each budget and the budgets between which two families change places. With
``beside``, another scaling folder's FID (for example the fixed-size curve beside the fitted sizes)
is set beside this one's in the table, the fits and the figure.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable

import click

from ..api import atomic_write_text
from ..errors import RunFailed, ZooError
from .profiles import Profile, profile_record
from .settings import cell_settings, difference
from .store import read_cells, read_reference
from .tables import fmt, inside_seed_std, mean_std

# settings that only decide what else is measured on a cell: a reused cell may differ in these (a
# cell that also carries an Inception FID, inception_n, has the same points as one without)
REUSE_FREE = ("profile", "seed", "sweep_steps", "sweep_n", "inception_n")
POINT_COLS = ("fid", "coverage", "bpd", "min_class_share", "precision", "recall", "train_wall_s", "cell_wall_s",
              "images_per_s", "train_tflops", "params")


def budget_folder(out: Path, tflops: float) -> Path:
    """Where the cells of one budget live: '<out>/10tf'."""
    return out / f"{tflops:g}tf"


def budget_profile(profile: Profile, tflops: float) -> Profile:
    """The single-budget profile that one budget's folder runs."""
    return dataclasses.replace(profile, tflops=float(tflops), budgets=())


def reused_budget(reuse: Path | None) -> float | None:
    """The budget of the bench folder ``reuse`` (from its bench.json), or None without one."""
    if reuse is None:
        return None
    try:
        doc = json.loads((reuse / "bench.json").read_text())
        return float(doc["profile"]["tflops"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ZooError(f"--reuse {reuse}: not a `zoo bench` folder (no readable bench.json)") from None


def _reuse_bound(settings):
    """A cell's settings less those a reused cell may differ in (``REUSE_FREE``); anything else as it is."""
    return {k: v for k, v in settings.items() if k not in REUSE_FREE} if isinstance(settings, dict) else settings


def check_reuse(reuse: Path, sub: Profile, families: list[str], data: str, features, tiny: bool) -> None:
    """One-line ZooError unless ``reuse`` holds a seed-0 cell of every family, each made with the
    settings this budget would use (other than the seeds, the NFE sweep and the Inception FID)."""
    cells = read_cells(reuse)
    for fam in families:
        mine = [c for c in cells if c["family"] == fam]
        if not any(c["seed"] == 0 for c in mine):
            raise ZooError(f"--reuse {reuse} has no {fam} cell at seed 0: finish that bench first, or drop --reuse")
        for c in mine:
            want = cell_settings(sub, family=fam, data=data, features=features, tiny=tiny, seed=c["seed"])
            diff = difference(_reuse_bound(c.get("settings")), _reuse_bound(want))
            if diff:
                raise ZooError(f"--reuse {reuse}: cell {fam} seed {c['seed']} was made with {diff}: rerun that "
                               f"bench first, or drop --reuse")


def run_scaling(profile: Profile, families: list[str], data: str, out: Path, features, command: str, *,
                reuse: Path | None = None, tiny: bool = False, force: bool = False,
                shard: tuple[int, int] | None = None, merge: bool = False, beside: Path | None = None,
                rebuild: bool = False, log: Callable[[str], None] = click.echo) -> Path:
    """Run (or resume) every budget of a multi-budget profile, cheapest first, then write the scaling
    tables and figure (with ``beside``'s FIDs beside them). A budget whose cells fail does not stop
    the others; RunFailed at the end."""
    from .runner import run_bench
    if beside is not None:
        read_beside(beside)   # a wrong folder is a mistake reported before any cell runs
    reuse_at = reused_budget(reuse)
    if reuse is not None:
        if reuse_at not in profile.budgets:
            raise ZooError(f"--reuse {reuse} holds {reuse_at:g} TFLOP cells; this profile's budgets are "
                           f"{', '.join(f'{b:g}' for b in profile.budgets)}")
        check_reuse(reuse, budget_profile(profile, reuse_at), families, data, features, tiny)
    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for b in sorted(profile.budgets):
        if b == reuse_at:
            log(f"scaling: {b:g} TFLOP read from {reuse}")
            continue
        log(f"scaling: {b:g} TFLOP -> {budget_folder(out, b)}")
        try:
            run_bench(budget_profile(profile, b), families, data, budget_folder(out, b), features,
                      command, tiny=tiny, force=force, shard=shard, merge=merge, rebuild=rebuild, log=log)
        except RunFailed as e:
            failed.append(f"{b:g} TFLOP: {e}")
    write_scaling(out, profile, families, command, reuse=reuse, reuse_at=reuse_at, beside=beside)
    log(f"scaling: tables -> {out / 'SCALING.md'}")
    if failed:
        raise RunFailed("; ".join(failed))
    return out


# ---- the points, the fits and the tables -------------------------------------------------------
def collect_points(out: Path, profile: Profile, families: list[str], reuse: Path | None,
                   reuse_at: float | None) -> tuple[list[dict], dict | None]:
    """One point per (family, budget) with a finished cell: mean and std over its seeds of
    POINT_COLS, and the floor row (real vs real at the same n) of the folders."""
    points: list[dict] = []
    floor = None
    for b in sorted(profile.budgets):
        folder = reuse if b == reuse_at else budget_folder(out, b)
        if folder is None or not (folder / "cells").is_dir():
            continue
        floor = floor or read_reference(folder, "_floor")
        cells = read_cells(folder)
        for fam in families:
            cs = [c for c in cells if c["family"] == fam]
            if not cs:
                continue
            p = {"family": fam, "tflops": b, "seeds": sorted(c["seed"] for c in cs), "folder": str(folder),
                 "likelihood": cs[0].get("likelihood")}
            for k in POINT_COLS:
                p[k], p[k + "_std"] = mean_std([c.get(k) for c in cs])
            points.append(p)
    return points, floor


def read_beside(beside: Path) -> dict:
    """The scaling.json of the folder shown beside this one (one-line ZooError if it has none)."""
    try:
        doc = json.loads((beside / "scaling.json").read_text())
        if not isinstance(doc.get("points"), list):
            raise ValueError
        return doc
    except (OSError, ValueError, AttributeError):
        raise ZooError(f"--beside {beside}: not a scaling folder (no readable scaling.json); "
                       f"give the --out of a `zoo bench --profile scaling` run") from None


def sizes_label(profile_rec: dict) -> str:
    """How a scaling folder sized its families, in words, from its profile record."""
    scale = float(profile_rec.get("param_scale", 1.0))
    what = "fitted sizes" if profile_rec.get("sizes", "default") == "fitted" else "default sizes"
    return what + (f" × {scale:g}" if scale != 1 else "")


def fit_power_law(points: list[dict], floor: float) -> dict | None:
    """FID - floor = a * C^(-b) by least squares on log10(FID - floor) against log10(C) over a
    family's budgets (their seed means); None with fewer than two usable points."""
    from scipy.stats import linregress
    xs = [(math.log10(p["tflops"]), math.log10(p["fid"] - floor)) for p in points
          if p.get("fid") is not None and p["fid"] > floor]
    if len(xs) < 2:
        return None
    r = linregress([x for x, _ in xs], [y for _, y in xs])
    exact = len(xs) == 2   # a line through two points: no spread to estimate an SE or R² from
    return {"a": 10 ** r.intercept, "b": -r.slope, "b_se": None if exact else r.stderr,
            "r2": None if exact else r.rvalue ** 2, "points": len(xs)}


def within_noise(p: dict | None, q: dict | None) -> bool | None:
    """Whether two points' FID gap is inside their seed std (``zoo.bench.tables.inside_seed_std``, the
    rule of the bench tables' winners); None where that is not known (a point missing, or measured at
    one seed, so without a std: unlike the bench tables, which count a missing std as 0)."""
    if not p or not q or p.get("fid_std") is None or q.get("fid_std") is None:
        return None
    return inside_seed_std(abs(p["fid"] - q["fid"]), p["fid_std"], q["fid_std"])


def crossings(points: list[dict], budgets: list[float]) -> list[str]:
    """Pairs of families whose FID order flips between two consecutive budgets both were measured at;
    a flip whose gap at either budget is inside the seed std is marked so (``within_noise``)."""
    at = {(p["family"], p["tflops"]): p for p in points if p.get("fid") is not None}
    fams = sorted({p["family"] for p in points})
    out = []
    for lo, hi in zip(budgets, budgets[1:]):
        for i, f in enumerate(fams):
            for g in fams[i + 1:]:
                ps = [at.get((f, lo)), at.get((g, lo)), at.get((f, hi)), at.get((g, hi))]
                if None in ps:
                    continue
                vals = [p["fid"] for p in ps]
                if (vals[0] - vals[1]) * (vals[2] - vals[3]) < 0:
                    first, second = (f, g) if vals[2] < vals[3] else (g, f)
                    noisy = [b for b, (x, y) in ((lo, ps[:2]), (hi, ps[2:])) if within_noise(x, y)]
                    note = "".join(f" (at {b:g} TFLOP the gap is inside the seed std)" for b in noisy)
                    out.append(f"{first} overtakes {second} between {lo:g} and {hi:g} TFLOP{note}")
    return out


def _cell(p: dict | None, key: str, digits: int) -> str:
    """A point's 'mean ± std' (or '—' where the family has no point at that budget)."""
    return fmt(p.get(key), p.get(key + "_std"), digits) if p else "—"


def scaling_markdown(profile: Profile, families: list[str], points: list[dict], floor: dict | None,
                     fits: dict[str, dict | None], command: str, reuse: Path | None, reuse_at: float | None,
                     figures: list[str], beside: tuple[Path, dict] | None = None) -> str:
    budgets = sorted(profile.budgets)
    at = {(p["family"], p["tflops"]): p for p in points}
    fl = floor.get("fid") if floor else None
    mine = sizes_label(profile_record(profile))
    lines = [f"# zoo bench — profile `{profile.name}`", "",
             f"Every family trained at its {mine} for each of {', '.join(f'{b:g}' for b in budgets)} TFLOP (seeds "
             f"{','.join(map(str, profile.seeds))}"
             + (f"; the {reuse_at:g} TFLOP points are the cells of `{reuse}`, with their seeds" if reuse else "")
             + f"), {profile.n:,} samples per cell against the first {profile.n:,} test images. Each budget is a "
             f"bench folder of its own (`<T>tf/RESULTS.md` has every column and the provenance of its cells).", "",
             f"Produced by `{command}`.", ""]
    for key, label, digits in (("fid", "FID", 2), ("coverage", "coverage", 3), ("bpd", "bits/dim", 3),
                               ("min_class_share", "smallest class share", 3)):
        if not any(p.get(key) is not None for p in points):
            continue
        lines += [f"## {label} against training TFLOP", "",
                  "| family | " + " | ".join(f"{b:g} TFLOP" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for fam in families:
            lines.append(f"| {fam} | " + " | ".join(_cell(at.get((fam, b)), key, digits) for b in budgets) + " |")
        lines.append("")
    if beside is not None:
        lines += beside_markdown(families, budgets, at, fits, mine, *beside)
    lines += ["## Fitted power law: FID − floor ≈ a · C^(−b), C in TFLOP", "",
              f"Floor: real vs real at n={profile.n:,}, FID {fl:.2f}." if fl is not None else "No floor row yet.", "",
              "| family | b | SE of b | a | R² | points |", "|---|---|---|---|---|---|"]
    for fam in families:
        f = fits.get(fam)
        if f is None:
            lines.append(f"| {fam} | — | — | — | — | {sum(1 for p in points if p['family'] == fam)} |")
            continue
        se = "—" if f["b_se"] is None else f"{f['b_se']:.3f}"
        r2 = "—" if f["r2"] is None else f"{f['r2']:.3f}"
        lines.append(f"| {fam} | {f['b']:.3f} | {se} | {f['a']:.2f} | {r2} | {f['points']} |")
    lines += ["", "## Winner at each budget (lowest FID, seed mean)", "",
              "Among the families measured at that budget: a budget where some are missing has no overall winner yet. "
              "\"Gap inside seed std\": the winner's lead is smaller than the larger of the two seed stds "
              "(— where a point has one seed, so no std).", "",
              "| TFLOP | winner | FID | runner-up | FID | gap inside seed std | families measured |",
              "|---|---|---|---|---|---|---|"]
    for b in budgets:
        ranked = sorted((p for p in points if p["tflops"] == b and p.get("fid") is not None), key=lambda p: p["fid"])
        if ranked:
            ru = ranked[1] if len(ranked) > 1 else None
            second = f"{ru['family']} | {ru['fid']:.2f}" if ru else "— | —"
            seen = {p["family"] for p in ranked}
            missing = [f for f in families if f not in seen]
            measured = f"{len(ranked)} of {len(families)}" + (f" (not {', '.join(missing)})" if missing else "")
            tie = {True: "yes", False: "no", None: "—"}[within_noise(ranked[0], ru)]
            lines.append(f"| {b:g} | {ranked[0]['family']} | {ranked[0]['fid']:.2f} | {second} | {tie} | {measured} |")
    flips = crossings(points, budgets)
    lines += ["", "## Where lines cross", ""] + ([f"- {c}" for c in flips] or ["- no two families change places "
                                                                               "between measured budgets"])
    walls = [p["cell_wall_s"] * len(p["seeds"]) for p in points if p.get("cell_wall_s") is not None]
    lines += ["", f"Wall-clock of the {len(points)} points' cells: {sum(walls) / 3600:.2f} h "
                  f"(sum of cell times, as recorded by each cell).", ""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def beside_markdown(families: list[str], budgets: list[float], at: dict, fits: dict, mine: str, folder: Path,
                    doc: dict) -> list[str]:
    """SCALING.md's section that sets another scaling folder's FID, parameters and fitted exponent
    beside this one's, family by family."""
    theirs = sizes_label(doc.get("profile") or {})
    other = {(p["family"], p["tflops"]): p for p in doc["points"]}
    cols = sorted(set(budgets) | {b for (f, b) in other if f in families})
    lines = [f"## Beside `{folder}` ({theirs})", "",
             f"FID of each family at its {mine} (this folder), and at its {theirs} (`{folder}`), with the "
             f"parameters of each; b is the fitted exponent of each curve (— where it has fewer than two points).",
             "", "| family | sizes | " + " | ".join(f"{b:g} TFLOP" for b in cols) + " | b |",
             "|---|---|" + "---|" * (len(cols) + 1)]

    def cell(p: dict | None) -> str:
        if not p or p.get("fid") is None:
            return "—"
        n = f" ({p['params']:,.0f})" if p.get("params") is not None else ""
        return fmt(p["fid"], p.get("fid_std"), 2) + n

    def expo(f: dict | None) -> str:
        return "—" if not f else f"{f['b']:.3f}" + ("" if f.get("b_se") is None else f" ± {f['b_se']:.3f}")
    for fam in families:
        lines.append(f"| {fam} | {mine} | " + " | ".join(cell(at.get((fam, b))) for b in cols)
                     + f" | {expo(fits.get(fam))} |")
        lines.append(f"| | {theirs} | " + " | ".join(cell(other.get((fam, b))) for b in cols)
                     + f" | {expo((doc.get('fits') or {}).get(fam))} |")
    return lines + [""]


def scaling_figure(out: Path, families: list[str], points: list[dict], fits: dict, floor_fid: float | None,
                   beside: tuple[Path, dict] | None = None) -> list[str]:
    """FID, coverage and bits/dim against training TFLOP on log axes, one line per family (with its
    fitted power law dashed on the FID panel, and ``beside``'s FID dotted in the same colour)."""
    from .figures import FIGURES_DIR, _plt, save_figure
    if not points:
        return []
    plt = _plt()
    panels = [("fid", "FID (fmnist-cnn)")] + [(k, lab) for k, lab in (("coverage", "coverage"), ("bpd", "bits/dim"))
                                              if any(p.get(k) is not None for p in points)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for fam in families:
            ps = sorted((p for p in points if p["family"] == fam and p.get(key) is not None), key=lambda p: p["tflops"])
            if not ps:
                continue
            # one colour per family on every panel (a family without bits/dim must not shift the others')
            line = ax.errorbar([p["tflops"] for p in ps], [p[key] for p in ps],
                               yerr=[p.get(key + "_std") or 0.0 for p in ps], marker="o", label=fam, capsize=2,
                               color=f"C{families.index(fam) % 10}")
            f = fits.get(fam)
            if key == "fid" and f is not None and floor_fid is not None:
                cs = [ps[0]["tflops"] * (ps[-1]["tflops"] / ps[0]["tflops"]) ** (i / 40) for i in range(41)]
                ax.plot(cs, [floor_fid + f["a"] * c ** (-f["b"]) for c in cs], "--", color=line[0].get_color(),
                        alpha=0.6)
        if key == "fid" and beside is not None:
            for fam in families:
                ps = sorted((p for p in beside[1]["points"] if p["family"] == fam and p.get("fid") is not None),
                            key=lambda p: p["tflops"])
                if ps:
                    ax.plot([p["tflops"] for p in ps], [p["fid"] for p in ps], ":", marker="x", alpha=0.6,
                            color=f"C{families.index(fam) % 10}")
            ax.plot([], [], ":", marker="x", color="gray", label=f"dotted: {beside[0]}")
        ax.set_xscale("log")
        if key == "fid":
            ax.set_yscale("log")
        ax.set_xlabel("training TFLOP")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figdir = out / FIGURES_DIR
    figdir.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, figdir, "scaling.png")]


def write_scaling(out: Path, profile: Profile, families: list[str], command: str, *, reuse: Path | None,
                  reuse_at: float | None, beside: Path | None = None) -> None:
    """scaling.json, SCALING.md and figures/scaling.png from every finished point. Without ``beside``,
    the folder that the last tables of ``out`` were set beside (its scaling.json) is kept."""
    if beside is None:
        try:
            kept = json.loads((out / "scaling.json").read_text()).get("beside")
        except (OSError, ValueError, AttributeError):
            kept = None
        beside = Path(kept) if kept and (Path(kept) / "scaling.json").is_file() else None
    other = (beside, read_beside(beside)) if beside is not None else None
    points, floor = collect_points(out, profile, families, reuse, reuse_at)
    fl = floor.get("fid") if floor else None
    fits = {fam: (fit_power_law([p for p in points if p["family"] == fam], fl) if fl is not None else None)
            for fam in families}
    figs = scaling_figure(out, families, points, fits, fl, other)
    doc = {"command": command, "profile": profile_record(profile), "reuse": str(reuse) if reuse else None,
           "beside": str(beside) if beside else None,
           "floor": floor, "points": points, "fits": fits, "crossings": crossings(points, sorted(profile.budgets))}
    atomic_write_text(out / "scaling.json", json.dumps(doc, indent=2, default=str))
    atomic_write_text(out / "SCALING.md", scaling_markdown(profile, families, points, floor, fits, command, reuse,
                                                           reuse_at, figs, other))
