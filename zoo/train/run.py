"""``zoo.train``: one family on one dataset under a step or FLOP budget, into a run folder, as
`zoo train` does it. :func:`plan_train` checks every argument and settles the settings (nothing is
written), :func:`train_plan` trains, :func:`write_bpd` measures test bits/dim into bpd.json."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable

import torch

from .. import dist
from ..api import build_model, get_model_class, load, read_config, recipe_sets, split_recipe
from ..checks import check_device, check_positive, check_writable
from ..config import apply_overrides, from_dict, split_sets, to_dict
from ..errors import ZooError
from ..files import BPD_FILE, atomic_write_text
from ..rng import check_seed
from ..sizing import fitted_param_scale, size_for_params, size_overrides
from .config import TrainConfig
from .loop import fit
from .rundir import read_train_record, refuse_run

DEFAULT_DATA = "fashion-mnist"


@dataclasses.dataclass
class TrainPlan:
    """What a run trains with, settled and checked before anything is written."""
    family: str
    out: Path
    tcfg: TrainConfig
    data: str                       # dataset spec (a resumed run's own)
    model_sets: dict[str, str]      # model config fields as --set strings (recipe, then the user's)
    resume: bool
    device: str
    recipe_used: list[str]          # the recipe's items that apply ('train.batch_size=16', 'width=32'), for printing
    encoder: str | None = None      # text encoder of a new conditional run


def check_numbers(steps: int | None, tflops: float | None, batch_size: int | None, eval_bpd: int,
                  seed: int | None) -> None:
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
    if seed is not None:
        check_seed(seed, "--seed")


def caption_condition(encoder: str, images: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, str], torch.Tensor]:
    """The conditioning of a model trained on captions embedded by the frozen text ``encoder``: the
    config fields it needs as --set strings (cond_dim, text_encoder) and the (N, dim) embeddings of
    the captions of uint8 ``images`` (N,C,H,W) with class ``labels``, the second argument of ``loss``."""
    from ..text.encoder import caption_embeddings, load_encoder
    sets = {"cond_dim": str(load_encoder(encoder).dim), "text_encoder": encoder}
    return sets, caption_embeddings(encoder, images, labels)[1]


def merge_recipe(family: str, tflops: float | None, model_sets: dict[str, str], train_sets: dict[str, str], *,
                 batch_size: int | None = None, recipe: bool = True,
                 size: float = 1.0, depth: float = 1.0) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The family's recipe for a ``tflops`` budget, its widths at ``size`` and its block counts at
    ``depth`` under the user's own
    settings, which win: (model fields, trainer fields, the recipe's items that apply, as
    'train.KEY=V' and 'KEY=V')."""
    cls = get_model_class(family)
    recipe_model, recipe_train = recipe_sets(cls, tflops) if recipe else ({}, {})
    recipe_model = {**recipe_model, **split_recipe(size_overrides(cls, size, depth=depth))[0]}
    mine_train = set(train_sets) | ({"batch_size"} if batch_size is not None else set())
    used = ([f"train.{k}={v}" for k, v in recipe_train.items() if k not in mine_train]
            + [f"{k}={v}" for k, v in recipe_model.items() if k not in model_sets])
    return {**recipe_model, **model_sets}, {**recipe_train, **train_sets}, used


def _changed(cfg, sets: dict[str, str], prefix: str) -> list[str]:
    """The ``--set`` items that would change ``cfg`` (parsed by field type), as 'prefix.key: old -> new'."""
    new = to_dict(apply_overrides(cfg, sets))
    old = to_dict(cfg)
    return [f"{prefix}{k}: {old[k]} -> {new[k]}" for k in sets if new[k] != old[k]]


def resume_settings(out: Path, family: str, data: str | None, steps: int | None, tflops: float | None,
                    batch_size: int | None, seed: int | None, model_sets: dict[str, str],
                    train_sets: dict[str, str]) -> tuple[TrainConfig, str]:
    """(TrainConfig, data spec) of the run in ``out``, with only its budget changed; any argument that
    would change another setting is refused with one line (a resumed run keeps its own settings)."""
    cls_run, run_cfg, _ = read_config(out)
    if cls_run.name != family:
        raise ZooError(f"{out} holds a {cls_run.name!r} run, not {family!r}")
    rec = read_train_record(out)
    tcfg = from_dict(TrainConfig, rec["train"])
    train_sets = {**train_sets, **{k: str(v) for k, v in {"batch_size": batch_size, "seed": seed}.items()
                                   if v is not None}}
    changed = _changed(tcfg, train_sets, "train.") + _changed(run_cfg, model_sets, "")
    if changed:
        raise ZooError(f"--resume keeps the run's own settings: {', '.join(changed)} would change it "
                       f"(start a new --out instead)")
    if data is not None and data != rec.get("data"):
        raise ZooError(f"--resume keeps the run's own settings: --data {data} is not its {rec.get('data')!r}")
    tcfg = apply_overrides(tcfg, {k: str(v) for k, v in {"steps": steps, "tflops": tflops}.items()})
    return tcfg, rec.get("data") or DEFAULT_DATA


def new_settings(out: Path, steps: int | None, tflops: float | None, batch_size: int | None, seed: int | None,
                 train_sets: dict[str, str]) -> TrainConfig:
    """The TrainConfig of a new run; refuses an ``out`` that holds a run or cannot be written."""
    refuse_run(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file, not a folder")
    check_writable(out)
    tcfg = TrainConfig(steps=steps, tflops=tflops, seed=0 if seed is None else seed)
    if batch_size is not None:
        train_sets = {**train_sets, "batch_size": str(batch_size)}
    return apply_overrides(tcfg, train_sets)


def plan_train(family: str, out: str | Path, *, data: str | None = None, steps: int | None = None,
               tflops: float | None = None, seed: int | None = None, batch_size: int | None = None,
               sets: Iterable[str] = (), resume: bool = False, recipe: bool = True, conditional: bool = False,
               text_encoder: str | None = None, eval_bpd: int = 0, device: str = "cpu",
               size: float | str = 1.0, depth: float = 1.0) -> TrainPlan:
    """Check the arguments of :func:`zoo.train` and settle what the run trains with; writes nothing.
    Under torchrun it joins the process group. A user's mistake is a one-line ZooError."""
    check_numbers(steps, tflops, batch_size, eval_bpd, seed)
    if size == "fitted":   # the width of the family's fitted best size at this budget
        if tflops is None or resume:
            raise ZooError("--size fitted needs --tflops (the size rule gives the best size for a budget) and no --resume")
        size = size_for_params(family, fitted_param_scale(family, tflops), tflops, depth=depth)
    device = dist.init(check_device(device))   # under torchrun: join the process group (DDP training)
    size_overrides(get_model_class(family), size, depth=depth)   # one-line errors for a bad size or depth, or a family without that axis
    out = Path(out)
    model_sets, train_sets = split_sets(sets)
    if text_encoder is not None and not conditional:
        raise ZooError("--text-encoder needs --conditional")
    encoder = None
    if conditional:
        if resume:
            raise ZooError("--resume keeps the run's own conditioning: leave out --conditional")
        from ..text.encoder import DEFAULT_ENCODER, check_data
        encoder = text_encoder or DEFAULT_ENCODER
        check_data(encoder, data or DEFAULT_DATA)
    used: list[str] = []
    if resume:
        if size != 1 or depth != 1:
            raise ZooError("--resume keeps the run's own size: leave out --size and --depth")
        tcfg, data = resume_settings(out, family, data, steps, tflops, batch_size, seed, model_sets, train_sets)
    else:
        model_sets, train_sets, used = merge_recipe(family, tflops, model_sets, train_sets, batch_size=batch_size,
                                                    recipe=recipe, size=size, depth=depth)
        tcfg, data = new_settings(out, steps, tflops, batch_size, seed, train_sets), data or DEFAULT_DATA
    tcfg.validate()
    return TrainPlan(family, out, tcfg, data, model_sets, resume, device, used, encoder)


def train_plan(plan: TrainPlan, *, progress: bool = True, download: bool = False, compile: bool = False) -> dict:
    """Train the run that :func:`plan_train` settled (a new run, or the resumed one); returns fit's summary."""
    from ..data import load_dataset
    train = load_dataset(plan.data, "train", download=download)
    model_sets, cond = plan.model_sets, None
    if plan.encoder:
        cond_sets, cond = caption_condition(plan.encoder, train.images, train.labels)
        model_sets = {**cond_sets, **model_sets}
    if plan.resume:
        model = get_model_class(plan.family)(read_config(plan.out)[1])
    else:
        torch.manual_seed(plan.tcfg.seed)   # weights are drawn after seeding
        model = build_model(plan.family, train.shape, model_sets)
    if model.is_conditional and cond is None:   # a resumed conditional run: its own encoder's embeddings
        cond = caption_condition(model.config.text_encoder, train.images, train.labels)[1]
    return fit(model, train.images, cond, plan.out, plan.tcfg, resume=plan.resume, progress=progress,
               data_spec=plan.data, compile=compile, device=plan.device)


def write_bpd(out: str | Path, n: int, *, data: str | None = None, download: bool = False, device: str = "cpu",
              progress: bool = True) -> dict | None:
    """Test bits/dim of the trained run in ``out`` on the first ``n`` test images of ``data`` (default:
    the run's own), written to OUT/bpd.json and returned; None for a family without a likelihood."""
    from ..data import load_dataset
    from ..metrics.bpd import bits_per_dim
    out = Path(out)
    data = data or read_train_record(out).get("data") or DEFAULT_DATA
    model = load(out).to(device)
    if model.likelihood == "none":
        return None
    test = load_dataset(data, "test", download=download)
    r = bits_per_dim(model, test.images[:n], progress=progress)
    atomic_write_text(out / BPD_FILE, json.dumps({**r, "split": "test", "data": data}, indent=2))
    return r


def train(family: str, out: str | Path, *, data: str | None = None, steps: int | None = None,
          tflops: float | None = None, seed: int | None = None, batch_size: int | None = None,
          sets: Iterable[str] = (), resume: bool = False, recipe: bool = True, conditional: bool = False,
          text_encoder: str | None = None, eval_bpd: int = 0, device: str = "cpu", compile: bool = False,
          progress: bool = True, download: bool = False, size: float | str = 1.0, depth: float = 1.0) -> dict:
    """Train ``family`` into the run folder ``out``, as `zoo train` does; returns the run's summary.

    Every argument is checked before anything is written (a one-line ZooError).

    Args:
        family: a registered family (``zoo.list_models()``).
        out: the run folder to create, or with ``resume`` the one to continue.
        data: dataset spec (``zoo data --help``); None: fashion-mnist, or on resume the run's own.
        steps: budget in optimizer steps (give this or ``tflops``).
        tflops: budget in training TFLOP, forward + backward (give this or ``steps``).
        seed: seed for weights, batches and noise; None: 0, or on resume the run's own.
        batch_size: images per step; None: the recipe's or the trainer's default (128).
        sets: 'KEY=VALUE' overrides of model config fields, 'train.KEY=VALUE' of trainer fields.
        resume: continue the run in ``out`` from its last checkpoint; a larger budget extends it.
        recipe: follow the family's recipe for a ``tflops`` budget (``sets`` and ``batch_size`` win).
        conditional: condition the model on captions of the training images, embedded by a frozen
            text encoder.
        text_encoder: the committed text encoder of a conditional run; None: mlm-m.
        eval_bpd: after training, test bits/dim on the first N test images, written to bpd.json
            and returned as summary["bpd"] (None without a likelihood); 0 skips it.
        device: torch device to train on (cpu, cuda, cuda:1, mps).
        compile: run the training losses through torch.compile.
        progress: show progress bars.
        download: allow downloading the dataset.
        size: width multiplier of every network of the family (``Generator.size_fields``; parameters
            grow about as size**2); 1: the family's own widths; 'fitted' (with ``tflops``): the widths
            of the best size that the family's fitted size rule (``Generator.size_rule``) gives for
            that budget. ``sets`` win over it.
        depth: multiplier of the family's block counts (``Generator.depth_fields``: layers, flow
            steps, residual blocks; rounded half up, never below the family's least count); 1: its own. ``sets`` win over it.
    """
    plan = plan_train(family, out, data=data, steps=steps, tflops=tflops, seed=seed, batch_size=batch_size,
                      sets=sets, resume=resume, recipe=recipe, conditional=conditional, text_encoder=text_encoder,
                      eval_bpd=eval_bpd, device=device, size=size, depth=depth)
    summary = train_plan(plan, progress=progress, download=download, compile=compile)
    if eval_bpd > 0 and dist.is_main():
        summary = {**summary, "bpd": write_bpd(plan.out, eval_bpd, data=plan.data, download=download,
                                               device=plan.device, progress=progress)}
    return summary
