"""`zoo train`: one family on one dataset under a step or FLOP budget, into a run folder."""
from __future__ import annotations

import click

from .common import CONTEXT, SEED, SIZE, device_option, import_option


@click.command("train", context_settings=CONTEXT)
@click.argument("family")
@click.option("--data", "data_spec", default=None,
              help="Dataset spec (see `zoo data --help`) [default: fashion-mnist; on --resume, the run's own].")
@click.option("--seed", default=None, type=SEED, help="Seed for weights, batches and noise [default: 0].")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create (or resume).")
@click.option("--steps", type=int, default=None, help="Budget in optimizer steps.")
@click.option("--tflops", type=float, default=None, help="Budget in training TFLOP (forward+backward).")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: 128].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint; a larger --steps/--tflops extends it.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a model config field, or a trainer field as train.KEY=VALUE. Repeatable.")
@click.option("--no-recipe", is_flag=True,
              help="Ignore the family's recipe for the --tflops budget (its config and batch size as they "
                   "are, unless --set says otherwise).")
@click.option("--size", default=1.0, show_default=True, type=SIZE, metavar="S",
              help="Width multiplier of every network of the family at once (parameters grow about as S**2; "
                   "`zoo list --size S` shows the count), or 'fitted': with --tflops, the width of the best size "
                   "the family's fitted size rule gives for that budget (results/isoflop); --set wins over it.")
@click.option("--depth", default=1.0, show_default=True, type=float, metavar="D",
              help="Multiplier of the family's block counts (layers, flow steps, residual blocks; rounded "
                   "half up, never below the family's least count) where it has them (`zoo list --depth D`); --set wins over it.")
@click.option("--conditional", is_flag=True,
              help="Condition the model on captions of the training images, embedded by a frozen text encoder "
                   "(see `zoo text --help`); sample it with `zoo sample RUN --prompt TEXT`.")
@click.option("--text-encoder", default=None, metavar="NAME",
              help="The committed text encoder for --conditional (mlm-s, mlm-m, mlm-l) [default: mlm-m].")
@click.option("--download", is_flag=True, help="Allow downloading the dataset (needs internet).")
@click.option("--eval-bpd", default=0, type=int, metavar="N",
              help="After training, report test bits/dim on the first N test images (0: skip).")
@click.option("--compile", "compile_", is_flag=True,
              help="Run the training losses through torch.compile (needs a C++ compiler; helps most on a GPU).")
@device_option
@import_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(family, data_spec, seed, out, steps, tflops, batch_size, resume, sets, no_recipe, size, depth, conditional,
              text_encoder, download, eval_bpd, compile_, device, quiet):
    """Train FAMILY on a dataset under a step or FLOP budget, writing a run directory.

    Example: zoo train vae --tflops 10 --out runs/vae-s0 --seed 0

    Under torchrun (torchrun --nproc_per_node 2 -m -- zoo train vae ...) it trains with
    DistributedDataParallel: each step's --batch-size images are split over the processes, so
    budget, steps and learning rate mean the same at any number of processes.

    With --tflops, a new run follows the family's recipe for that budget (its width, batch size or
    schedule, as `zoo bench` trains it; printed first); --set and --batch-size win over it, and
    --no-recipe leaves it out.

    With --conditional, each training image's caption (`zoo data --captions`) is embedded by the
    frozen text encoder and fed to the model; a share cond_drop (--set cond_drop=0.1) of them is
    replaced by the null condition, so the run samples with and without a prompt.
    """
    from .. import dist
    from ..train.run import plan_train, train_plan, write_bpd
    plan = plan_train(family, out, data=data_spec, steps=steps, tflops=tflops, seed=seed, batch_size=batch_size,
                      sets=sets, resume=resume, recipe=not no_recipe, conditional=conditional,
                      text_encoder=text_encoder, eval_bpd=eval_bpd, device=device, size=size, depth=depth)
    if plan.recipe_used:
        where = (f" for {tflops:g} TFLOP" if tflops is not None else "") + (f" at size {size}" if size != 1 else "") + (f" at depth {depth:g}" if depth != 1 else "")
        click.echo(f"recipe of {family}{where}: {' '.join(plan.recipe_used)}")
    summary = train_plan(plan, progress=not quiet, download=download, compile=compile_)
    click.echo(f"trained {family}: {summary['steps']} steps, {summary['train_tflops']:.3f} TFLOP, "
               f"{summary['epochs']:.2f} epochs, {summary['wall_s']:.1f} s -> {out}")
    if eval_bpd > 0 and dist.is_main():
        r = write_bpd(plan.out, eval_bpd, data=plan.data, download=download, device=plan.device, progress=not quiet)
        if r is None:
            click.echo(f"{family} has no likelihood: no bits/dim")
        else:
            click.echo(f"test bits/dim ({r['kind']}, first {r['n']} test images): {r['bpd']:.4f} +- {r['bpd_sem']:.4f}")
