"""What a bench folder shows: results.json, results.csv (per seed), results_mean.csv (mean and std
over seeds) and RESULTS.md, rebuilt from the cell files (every one of them made with the same
settings: the runner checks that first); and reading results.json back."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ZooError
from ..files import RESULTS_FILE, atomic_write_text
from ..provenance import describe_machine
from .figures import make_figures
from .speed import read_speeds, speed_note
from .profiles import Profile, profile_record
from .store import cell_name, read_cells, read_floor, read_reference
from .tables import (INCEPTION_DEFINITION, INCEPTION_LABEL, ROW_COLS, aggregate, conditional_table, optional_cols,
                     results_table, sweep_table, winners, winners_table)

RESULTS_CSV = "results.csv"
RESULTS_MEAN_CSV = "results_mean.csv"


def write_outputs(out: Path, profile: Profile, data: str, command: str, prov: dict) -> None:
    """Rebuild results.json/.csv, RESULTS.md and figures from the finished cells, atomically."""
    cells = read_cells(out)
    floor, ceiling = read_floor(out), read_reference(out, "_ceiling")
    rows = aggregate(cells)
    ws = winners(rows)
    doc = {"provenance": prov, "command": command, "profile": profile_record(profile), "cells": cells,
           "families": rows, "winners": ws, "floor": floor, "ceiling": ceiling}
    atomic_write_text(out / RESULTS_FILE, json.dumps(doc, indent=2, default=str))
    atomic_write_text(out / RESULTS_CSV, results_csv(cells, prov))
    atomic_write_text(out / RESULTS_MEAN_CSV, results_mean_csv(rows))
    speeds = read_speeds(out)   # zoo bench speed's quiet measurements, for the FID-against-images/s figure
    figs = make_figures(out, cells, rows, speeds)
    md = results_markdown(profile, data, command, prov, cells, rows, ws, floor, ceiling, figs, speeds)
    atomic_write_text(out / "RESULTS.md", md)


def rewrite_outputs(out: Path) -> bool:
    """Rebuild a bench folder's tables and figures from its cells and its bench.json (the profile,
    command and provenance of the run that made it), as ``zoo bench --merge`` does; False where the
    folder has no readable bench.json."""
    import dataclasses
    try:
        doc = json.loads((out / "bench.json").read_text())
        fields = {f.name for f in dataclasses.fields(Profile)}
        rec = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["profile"].items() if k in fields}
        profile, prov = Profile(**rec), doc["provenance"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    write_outputs(out, profile, prov.get("data", "fashion-mnist"), doc.get("command", ""), prov)
    return True


def results_csv(cells: list[dict], prov: dict) -> str:
    """One CSV row per cell: its scalar fields and the provenance of the invocation that made it."""
    buf = io.StringIO()
    keys = sorted({k for c in cells for k, v in c.items() if not isinstance(v, (dict, list))})
    keys = ["family", "seed"] + [k for k in keys if k not in ("family", "seed")] + sorted(prov)
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for c in cells:
        w.writerow({**{k: v for k, v in c.items() if not isinstance(v, (dict, list))}, **c.get("provenance", prov)})
    return buf.getvalue()


def results_mean_csv(rows: list[dict]) -> str:
    """One CSV row per family (``aggregate``'s rows): the number of seeds, then the mean and the
    sample std over seeds of every column (empty where a family has no value, or one seed no std)."""
    buf = io.StringIO()
    cols = ROW_COLS + optional_cols(rows)
    w = csv.writer(buf)
    w.writerow(["family", "seeds"] + [name for k in cols for name in (k, f"{k}_std")])
    for r in rows:
        w.writerow([r["family"], len(r["seeds"])] + ["" if r.get(name) is None else r[name]
                                                     for k in cols for name in (k, f"{k}_std")])
    return buf.getvalue()


def read_results(path: str | Path) -> tuple[dict, Path]:
    """The results.json document of a bench folder (or the file itself) and its path, or a one-line ZooError."""
    p = Path(path)
    path = p / RESULTS_FILE if p.is_dir() else p
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file (give a `zoo bench` output folder or its results.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ZooError(f"{path}: not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list) or "profile" not in doc:
        raise ZooError(f"{path}: not a `zoo bench` results.json")
    return doc, path


def machine_of(cell: dict) -> tuple[str, str]:
    """The machine a cell ran on, from its own provenance: ('CPU + GPU, N threads', torch version)."""
    p = cell.get("provenance", {})
    return describe_machine(p), str(p.get("torch", "?"))


def machines_phrase(cells: list[dict]) -> str:
    """Where the cells ran: '(zoo V, torch T) on CPU, N threads' for one machine, else '(zoo V) on
    several machines: cells vae-s0, gan-s0 on CPU A, 2 threads (torch T); cell diffusion-s0 on ...'."""
    versions = ", ".join(sorted({str(c.get("provenance", {}).get("zoo_version", "?")) for c in cells}))
    by: dict[tuple[str, str], list[str]] = {}
    for c in cells:
        name = cell_name(c["family"], c["seed"]) if "family" in c else "(no cell yet)"
        by.setdefault(machine_of(c), []).append(name)
    if len(by) == 1:
        (desc, torch_version), = by
        return f"(zoo {versions}, torch {torch_version}) on {desc}"
    return f"(zoo {versions}) on several machines: " + "; ".join(
        f"cell{'s' if len(names) > 1 else ''} {', '.join(names)} on {desc} (torch {tv})"
        for (desc, tv), names in by.items())


def provenance_sentence(command: str, prov: dict, cells: list[dict]) -> str:
    """Which command, commits, zoo versions and machines produced the cells, and their wall-clock."""
    commits = sorted({c.get("provenance", {}).get("git_commit", "unknown") for c in cells}) or [prov["git_commit"]]
    machines = machines_phrase(cells or [{"provenance": prov}])
    cell_wall = sum(c.get("cell_wall_s", 0.0) for c in cells)
    return (f"Produced by `{command}`; cells trained and evaluated at commit{'s' if len(commits) > 1 else ''}"
            f" {', '.join(f'`{c}`' for c in commits)} {machines}; {len(cells)} cells took"
            f" {cell_wall / 60:.0f} min of wall-clock in all (tables written"
            f" {datetime.now(timezone.utc).isoformat(timespec='seconds')}).")


def method_paragraph(profile: Profile, data: str, cells: list[dict]) -> str:
    """How every cell was made: data, budget, seeds, n, features, bits/dim, speed, floor and ceiling."""
    ext = cells[0]["metrics_provenance"] if cells else {}
    seeds = sorted({c["seed"] for c in cells}) or list(profile.seeds)
    return (f"Every family trained on `{data}` for {profile.tflops:g} TFLOP of training compute (forward + backward,"
            f" counted with `torch.utils.flop_counter`) with its recipe for that budget (below)"
            + (f", every network widened together to {profile.param_scale:g} times the family's default parameter"
               f" count (`zoo.sizing`; the widths are in the recipe column)" if profile.param_scale != 1 else "")
            + (", each family at the best size its fitted size rule gives for the budget (`Generator.size_rule`,"
               " from results/isoflop; the widths are in the recipe column)" if profile.sizes == "fitted" else "")
            + (f", at {profile.depth:g} times the family's block counts (layers, flow steps, residual blocks; in the"
               f" recipe column)" if profile.depth != 1 else "")
            + ", seeds"
            f" {', '.join(map(str, seeds))}; then {profile.n:,}"
            f" images sampled with the same per-image seeds (0, i) in every cell and compared with the first"
            f" {profile.n:,} images of the test split using `{ext.get('extractor', '?')}` features"
            f" (weights sha256 `{str(ext.get('weights_sha256', '?'))[:16]}…`). Values are mean ± sample std over seeds."
            f" bits/dim are on the first {profile.bpd_images:,} test images, exact or a bound as marked"
            + (f" (the diffusion bound as a {profile.bpd_terms}-term stratified unbiased estimate of its sum over t)"
               if profile.bpd_terms else "") + "; SE is the standard error of one cell's estimate (over the test"
            " images and, for a stratified estimate, its random timesteps), averaged over seeds."
            f" Sampling speed is measured at batch 256 in a fresh process; latency is one image at batch 1."
            f" The floor row is {profile.n:,} real training images against the test split; the ceiling row is"
            f" uniform noise. The smallest class share is the share of samples in the rarest class by the"
            f" `fmnist-cnn` classifier (real data: 0.1 per class; below 0.05 a class is half missing)."
            + inception_sentence(cells))


def inception_sentence(cells: list[dict]) -> str:
    """What the Inception FID column is, where some cell has one (zoo bench --inception); else ''."""
    if not optional_cols(cells):
        return ""
    ns = sorted({c["inception_n"] for c in cells if c.get("inception_n")})
    return (f" {INCEPTION_LABEL}: {INCEPTION_DEFINITION} Here n = {', '.join(f'{n:,}' for n in ns)}; the first"
            f" samples are those of the other metrics, the rest drawn with the same per-image seeds.")


def recipe_table(cells: list[dict]) -> str | None:
    """Each family's recipe for the budget as its cells recorded it (``Generator.recipe``), and the sampler
    options its cells drew with (``Generator.sampler_settings``)."""
    recipes: dict[str, tuple[dict, dict]] = {}
    for c in cells:
        settings = c.get("settings") or {}
        if settings.get("recipe") is not None:
            recipes.setdefault(c["family"], (settings["recipe"], settings.get("sampler") or {}))
    if not recipes:
        return None

    def words(d: dict, none: str) -> str:
        return " ".join(f"`{k}={v}`" for k, v in d.items()) or none

    lines = ["| family | recipe (config and trainer settings for this budget) | sampler |", "|---|---|---|"]
    lines += [f"| {fam} | {words(rec, 'its defaults')} | {words(sampler, 'its defaults')} |"
              for fam, (rec, sampler) in sorted(recipes.items())]
    return "\n".join(lines)


def results_markdown(profile: Profile, data: str, command: str, prov: dict, cells: list[dict], rows: list[dict],
                     ws: list[dict], floor: dict | None, ceiling: dict | None, figs: list[str],
                     speeds: dict | None = None) -> str:
    """RESULTS.md: method, provenance, the main table, best family per column, sweep, figures."""
    md = [f"# zoo bench — profile `{profile.name}`", "",
          method_paragraph(profile, data, cells), "",
          provenance_sentence(command, prov, cells), "",
          results_table(rows, floor, ceiling, (cells[0].get("metrics_provenance") or {}).get("extractor", "?")
                        if cells else "?"), "",
          "## Best family per column", "",
          "Ranked by the seed mean. \"Inside seed std\" means the gap to the runner-up is smaller than the"
          " larger of their two seed standard deviations: not a resolved difference. bits/dim mixes exact"
          " values and bounds (a bound can only overstate a model's bits/dim).", "",
          winners_table(ws), ""]
    cond = conditional_table(rows, profile.conditional, profile.guidance)
    if cond:
        md += ["## Conditional columns", "",
               "Every cell trained on the captions' frozen text embeddings and sampled with the test split's own "
               "captions (image i prompted by test caption i), so FID's reference stays the test split. CLIP score "
               "= 100 × max(cos, 0) by the committed evaluator pair (zoo/text/weights/clip.json); prompt accuracy = "
               "the share of samples whose class (fmnist-cnn classifier) and every attribute the prompt names "
               "(the captioner's own rules) match it; per-class FID compares the samples prompted with a class "
               "against that class's test images; the unconditional FID samples the same model at the null "
               "condition. The main table's FID and other columns are those of the prompted samples.", "",
               cond, ""]
    recipes = recipe_table(cells)
    if recipes:
        md += ["## Recipes", "", "What `Generator.recipe` set for this budget; everything else is the family's "
               "default config (`zoo list`) and the trainer's defaults (batch 128, constant learning rate).", "",
               recipes, ""]
    sweep = sweep_table(cells)
    if sweep:
        md += ["## Quality against network evaluations", "", sweep, ""]
    md += ["## Figures", ""]
    if speeds and "figures/pareto.png" in figs:
        md += [f"The FID-against-images/s figure takes its speeds from `SPEED.md`: {speed_note(speeds)}. The "
               "table's images/s column is what each cell measured while the bench ran.", ""]
    md += [f"![{name}]({name})" for name in figs]
    return "\n".join(md) + "\n"
