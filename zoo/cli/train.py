"""`zoo train`: one family on one dataset under a step or FLOP budget, into a run folder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from ..errors import ZooError
from .common import CONTEXT, SEED, check_device, check_positive, check_writable, device_option, import_option


def _read_train_record(out: Path) -> dict:
    """The run's train.json, or a one-line ZooError (missing, corrupt, or not a zoo run)."""
    path = out / "train.json"
    if not path.is_file():
        raise ZooError(f"{out}: nothing to resume (no train.json: not a zoo run folder, or not started)")
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ZooError(f"{path}: corrupt (not valid JSON); this run cannot be resumed") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("train"), dict):
        raise ZooError(f"{path}: corrupt (no 'train' record); this run cannot be resumed")
    return rec


def _changed(cfg, sets: dict[str, str], prefix: str) -> list[str]:
    """The ``--set`` items that would change ``cfg`` (parsed by field type), as 'prefix.key=old->new'."""
    from ..config import apply_overrides, to_dict
    new = to_dict(apply_overrides(cfg, sets))
    old = to_dict(cfg)
    return [f"{prefix}{k}: {old[k]} -> {new[k]}" for k in sets if new[k] != old[k]]


def _check_numbers(steps, tflops, batch_size, eval_bpd, seed) -> None:
    """One-line ZooErrors for budgets and numbers, before anything is read or written."""
    if steps is None and tflops is None:
        raise ZooError("give a budget: --steps N or --tflops F")
    if steps is not None and tflops is not None:
        raise ZooError("give only one budget: --steps or --tflops")
    check_positive(steps=steps, batch_size=batch_size)
    if tflops is not None and not (math.isfinite(tflops) and tflops > 0):
        raise ZooError(f"--tflops must be a finite number > 0, got {tflops}")
    if eval_bpd < 0:
        raise ZooError(f"--eval-bpd must be >= 0, got {eval_bpd}")
    if seed is not None and seed < 0:
        raise ZooError(f"--seed must be >= 0, got {seed}")


def _resume_settings(out_dir: Path, family: str, data_spec, steps, tflops, batch_size, seed,
                     model_sets: dict, train_sets: dict):
    """(TrainConfig, data spec) of the run in out_dir, with only its budget changed; any option that
    would change another setting is refused with one line (a resumed run keeps its own settings)."""
    from ..api import read_config
    from ..config import apply_overrides, from_dict
    from ..train import TrainConfig
    cls_run, run_cfg, _ = read_config(out_dir)
    if cls_run.name != family:
        raise ZooError(f"{out_dir} holds a {cls_run.name!r} run, not {family!r}")
    rec = _read_train_record(out_dir)
    tcfg = from_dict(TrainConfig, rec["train"])
    if batch_size is not None:
        train_sets["batch_size"] = str(batch_size)
    if seed is not None:
        train_sets["seed"] = str(seed)
    changed = _changed(tcfg, train_sets, "train.") + _changed(run_cfg, model_sets, "")
    if changed:
        raise ZooError(f"--resume keeps the run's own settings: {', '.join(changed)} would change it "
                       f"(start a new --out instead)")
    if data_spec is not None and data_spec != rec.get("data"):
        raise ZooError(f"--resume keeps the run's own settings: --data {data_spec} is not its {rec.get('data')!r}")
    tcfg = apply_overrides(tcfg, {k: str(v) for k, v in {"steps": steps, "tflops": tflops}.items()})
    return tcfg, rec.get("data") or "fashion-mnist"


def _new_settings(out_dir: Path, data_spec, steps, tflops, batch_size, seed, train_sets: dict):
    """(TrainConfig, data spec) of a new run; refuses an --out that holds a run or cannot be written."""
    from ..config import apply_overrides
    from ..train import TrainConfig
    from ..train.rundir import holds_run
    if holds_run(out_dir):
        raise ZooError(f"{out_dir} already holds a run: use --resume, or another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise ZooError(f"--out {out_dir} is a file, not a folder")
    check_writable(out_dir)
    tcfg = TrainConfig(steps=steps, tflops=tflops, seed=0 if seed is None else seed)
    if batch_size is not None:
        train_sets["batch_size"] = str(batch_size)
    return apply_overrides(tcfg, train_sets), data_spec or "fashion-mnist"


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
def train_cmd(family, data_spec, seed, out, steps, tflops, batch_size, resume, sets, no_recipe, conditional,
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
    from ..api import build_model, get_model_class, read_config, recipe_sets
    from ..config import split_sets
    from ..data import load_dataset
    from ..train import fit
    _check_numbers(steps, tflops, batch_size, eval_bpd, seed)
    device = dist.init(check_device(device))   # under torchrun: join the process group (DDP training)
    cls = get_model_class(family)
    out_dir = Path(out)
    model_sets, train_sets = split_sets(sets)
    if text_encoder is not None and not conditional:
        raise ZooError("--text-encoder needs --conditional")
    if conditional:
        if resume:
            raise ZooError("--resume keeps the run's own conditioning: leave out --conditional")
        from ..text.encoder import DEFAULT_ENCODER, check_data, load_encoder
        name = text_encoder or DEFAULT_ENCODER
        check_data(name, data_spec or "fashion-mnist")
        model_sets = {"cond_dim": str(load_encoder(name).dim), "text_encoder": name, **model_sets}
    if resume:
        tcfg, data_spec = _resume_settings(out_dir, family, data_spec, steps, tflops, batch_size, seed,
                                           model_sets, train_sets)
    else:
        recipe_model, recipe_train = ({}, {}) if no_recipe else recipe_sets(cls, tflops)
        mine_train = set(train_sets) | ({"batch_size"} if batch_size is not None else set())
        used = ([f"train.{k}={v}" for k, v in recipe_train.items() if k not in mine_train]
                + [f"{k}={v}" for k, v in recipe_model.items() if k not in model_sets])
        if used:
            click.echo(f"recipe of {family} for {tflops:g} TFLOP: {' '.join(used)} (--no-recipe leaves it out)")
        model_sets = {**recipe_model, **model_sets}
        train_sets = {**recipe_train, **train_sets}
        tcfg, data_spec = _new_settings(out_dir, data_spec, steps, tflops, batch_size, seed, train_sets)
    tcfg.validate()
    train = load_dataset(data_spec, "train", download=download)
    if resume:
        model = cls(read_config(out_dir)[1])
    else:
        import torch
        torch.manual_seed(tcfg.seed)   # weights are drawn after seeding
        model = build_model(family, train.shape, model_sets)
    cond = None
    if model.is_conditional:   # each image's caption embedding, the second argument of model.loss
        from ..text.encoder import caption_embeddings
        cond = caption_embeddings(model.config.text_encoder, train.images, train.labels)[1]
    summary = fit(model, train.images, cond, out_dir, tcfg, resume=resume, progress=not quiet,
                  data_spec=data_spec, compile=compile_, device=device)
    click.echo(f"trained {family}: {summary['steps']} steps, {summary['train_tflops']:.3f} TFLOP, "
               f"{summary['epochs']:.2f} epochs, {summary['wall_s']:.1f} s -> {out}")
    if eval_bpd > 0 and dist.is_main():
        _report_bpd(out_dir, family, data_spec, eval_bpd, download, device, quiet)


def _report_bpd(out: Path, family: str, data_spec: str, n: int, download: bool, device: str, quiet: bool) -> None:
    """Test bits/dim of the trained run on the first n test images, written to OUT/bpd.json."""
    from ..api import atomic_write_text, load
    from ..data import load_dataset
    from ..metrics.bpd import bits_per_dim
    model = load(out).to(device)
    if model.likelihood == "none":
        click.echo(f"{family} has no likelihood: no bits/dim")
        return
    test = load_dataset(data_spec, "test", download=download)
    r = bits_per_dim(model, test.images[:n], progress=not quiet)
    atomic_write_text(out / "bpd.json", json.dumps({**r, "split": "test", "data": data_spec}, indent=2))
    click.echo(f"test bits/dim ({r['kind']}, first {r['n']} test images): {r['bpd']:.4f} +- {r['bpd_sem']:.4f}")
