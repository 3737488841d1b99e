"""The `zoo` command line: list, data, train, sample (eval and bench are added by their modules).

User mistakes exit with status 2 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import ZooError

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def parse_value(v: str):
    """A command-line value as int, float, bool or str (for free-form sampler options)."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def parse_opts(items) -> dict:
    from .config import parse_sets
    return {k: parse_value(v) for k, v in parse_sets(items).items()}


class ZooGroup(click.Group):
    """A click group that turns ZooError into one line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=ZooGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="zoo")
def cli():
    """zoo: one Generator interface, eight generative families, one honest benchmark.

    Typical use: `zoo train vae --out runs/vae --tflops 1`, then `zoo sample runs/vae --out grid.png`.
    """


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json):
    """Families with their likelihood kind, phases and parameter count at default size (1x28x28)."""
    from .api import get_model, list_models
    rows = []
    for name in list_models():
        m = get_model(name)
        stages = m.stage_plan()
        rows.append({"family": name, "likelihood": m.likelihood,
                     "phases": [p for ps in stages.values() for p in ps], "stages": list(stages),
                     "params": m.num_params(), "doc": (type(m).__doc__ or "").strip().splitlines()[0]})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'family':<18} {'likelihood':<10} {'params':>10}  phases")
    for r in rows:
        click.echo(f"{r['family']:<18} {r['likelihood']:<10} {r['params']:>10,}  {','.join(r['phases'])}")


@cli.command("data")
@click.argument("name", default="fashion-mnist")
@click.option("--download", is_flag=True, help="Fetch with torchvision's downloader if not found (needs internet).")
def data_cmd(name, download):
    """Where dataset NAME was found, its split sizes and image shape.

    NAME: fashion-mnist, idx:PATH, folder:PATH[,size=N][,mode=gray|rgb], synthetic[:SIZE[:CH]].
    """
    from .data import load_dataset
    for split in ("train", "test"):
        d = load_dataset(name, split, download=download)
        click.echo(f"{split:<5} {len(d):>7} images  shape {tuple(d.shape)}  classes {int(d.labels.max()) + 1:>3}  "
                   f"from {d.source}")


def _split_sets(sets):
    from .config import parse_sets
    kv = parse_sets(sets)
    model = {k: v for k, v in kv.items() if not k.startswith("train.")}
    train = {k[6:]: v for k, v in kv.items() if k.startswith("train.")}
    return model, train


def build_model(family: str, shape: tuple[int, int, int], model_sets: dict):
    """A family at default config, shaped for the data, with --set overrides applied."""
    from .api import get_model_class
    from .config import apply_overrides
    cls = get_model_class(family)
    c, h, w = shape
    if h != w:
        raise ZooError(f"images must be square, got {h}x{w}")
    cfg = apply_overrides(cls.Config(channels=c, image_size=h), model_sets)
    try:
        return cls(cfg)
    except (ValueError, AssertionError) as e:
        raise ZooError(f"bad config for {family}: {e}") from None


@cli.command("train")
@click.argument("family")
@click.option("--data", "data_spec", default="fashion-mnist", help="Dataset spec (see `zoo data --help`).")
@click.option("--seed", default=0, type=int, help="Seed for weights, batches and noise.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create (or resume).")
@click.option("--steps", type=int, default=None, help="Budget in optimizer steps.")
@click.option("--tflops", type=float, default=None, help="Budget in training TFLOP (forward+backward).")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: 128].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a model config field, or a trainer field as train.KEY=VALUE. Repeatable.")
@click.option("--download", is_flag=True, help="Allow downloading the dataset (needs internet).")
@click.option("--eval-bpd", default=0, type=int, metavar="N",
              help="After training, report test bits/dim on the first N test images (0: skip).")
@click.option("--compile", "compile_", is_flag=True,
              help="Run the training losses through torch.compile (needs a C++ compiler; helps most on a GPU).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(family, data_spec, seed, out, steps, tflops, batch_size, resume, sets, download, eval_bpd, compile_,
              quiet):
    """Train FAMILY on a dataset under a step or FLOP budget, writing a run directory.

    Example: zoo train vae --tflops 10 --out runs/vae-s0 --seed 0
    """
    from .api import read_config
    from .config import apply_overrides, from_dict
    from .data import load_dataset
    from .train import TrainConfig, fit
    if steps is None and tflops is None:
        raise ZooError("give a budget: --steps N or --tflops F")
    if steps is not None and tflops is not None:
        raise ZooError("give only one budget: --steps or --tflops")
    model_sets, train_sets = _split_sets(sets)
    train = load_dataset(data_spec, "train", download=download)
    if resume:
        cls, cfg, _ = read_config(out)
        if cls.name != family:
            raise ZooError(f"{out} holds a {cls.name!r} run, not {family!r}")
        rec = json.loads((Path(out) / "train.json").read_text())
        tcfg = from_dict(TrainConfig, rec["train"])
        tcfg = apply_overrides(tcfg, {k: str(v) for k, v in {"steps": steps, "tflops": tflops}.items()})
        if model_sets:
            raise ZooError("--set of model fields is not allowed with --resume")
        model = cls(cfg)
    else:
        tcfg = TrainConfig(steps=steps, tflops=tflops, seed=seed)
        if batch_size is not None:
            train_sets["batch_size"] = str(batch_size)
        tcfg = apply_overrides(tcfg, train_sets)
        torch_seed(seed)
        model = build_model(family, train.shape, model_sets)  # weights drawn after seeding
    summary = fit(model, train.images, train.labels, out, tcfg, resume=resume, progress=not quiet,
                  data_spec=data_spec, compile=compile_)
    click.echo(f"trained {family}: {summary['steps']} steps, {summary['train_tflops']:.3f} TFLOP, "
               f"{summary['epochs']:.2f} epochs, {summary['wall_s']:.1f} s -> {out}")
    if eval_bpd > 0:
        from .api import load
        from .metrics.bpd import bits_per_dim
        model = load(out)
        if model.likelihood == "none":
            click.echo(f"{family} has no likelihood: no bits/dim")
            return
        test = load_dataset(data_spec, "test", download=download)
        r = bits_per_dim(model, test.images[:eval_bpd], progress=not quiet)
        (Path(out) / "bpd.json").write_text(json.dumps({**r, "split": "test", "data": data_spec}, indent=2))
        click.echo(f"test bits/dim ({r['kind']}, first {r['n']} test images): {r['bpd']:.4f} +- {r['bpd_sem']:.4f}")


def torch_seed(seed: int) -> None:
    import torch
    torch.manual_seed(seed)


def write_images(images, out: str, nrow: int | None = None) -> None:
    """Save uint8 (N,C,H,W) as a .png grid (torchvision) or a .npz array ('images')."""
    import numpy as np
    from torchvision.utils import save_image, make_grid
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".npz":
        np.savez_compressed(p, images=images.numpy())
    elif p.suffix == ".png":
        n = images.shape[0]
        nrow = nrow or max(1, int(round(n ** 0.5)))
        save_image(make_grid(images.float() / 255.0, nrow=nrow, padding=2, pad_value=1.0), str(p))
    else:
        raise ZooError(f"--out must end in .png or .npz, got {p.name!r}")


@cli.command("sample")
@click.argument("run", type=click.Path())
@click.option("--n", "n", default=100, type=int, help="Number of images.")
@click.option("--seed", default=0, type=int, help="Image i depends only on (seed, i).")
@click.option("--out", required=True, help="Output: .png grid or .npz of uint8 images.")
@click.option("--batch-size", default=256, type=int, help="Images per forward batch.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="Sampler option, e.g. steps=50, temperature=0.9, sampler=ddim. Repeatable.")
@click.option("--interpolate", is_flag=True, help="Write latent interpolation strips between test images.")
@click.option("--trajectory", is_flag=True, help="Write strips of the running x0 prediction (diffusion).")
@click.option("--frames", default=8, type=int, help="Images per strip for --interpolate/--trajectory.")
def sample_cmd(run, n, seed, out, batch_size, opts, interpolate, trajectory, frames):
    """Sample N images from a trained RUN directory."""
    import torch
    from .api import load
    from .data import load_dataset
    model = load(run)
    sampler = parse_opts(opts)
    if interpolate and trajectory:
        raise ZooError("choose one of --interpolate and --trajectory")
    if interpolate:
        rec = json.loads((Path(run) / "train.json").read_text()) if (Path(run) / "train.json").exists() else {}
        test = load_dataset(rec.get("data") or "fashion-mnist", "test")
        g = torch.Generator().manual_seed(seed)
        pairs = torch.randint(0, len(test), (n, 2), generator=g)
        strips = [model.interpolate(test.images[i], test.images[j], steps=frames) for i, j in pairs.tolist()]
        images = torch.cat(strips)
        write_images(images, out, nrow=frames)
    elif trajectory:
        images = model.trajectory(n, seed=seed, frames=frames, **sampler).flatten(0, 1)
        write_images(images, out, nrow=frames)
    else:
        try:
            images = model.sample(n, seed=seed, batch_size=batch_size, progress=True, **sampler)
        except TypeError as e:
            raise ZooError(f"bad sampler option for {model.name}: {e}") from None
        write_images(images, out)
    click.echo(f"wrote {out} ({images.shape[0]} images)")


def _register_optional_commands() -> None:
    """Commands that live with their subsystems (metrics, bench) attach here when present."""
    import importlib
    for mod in ("zoo.metrics.cli", "zoo.bench"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod or (e.name and mod.startswith(e.name)):
                continue
            raise
        for cmd in getattr(m, "COMMANDS", []):
            cli.add_command(cmd)


_register_optional_commands()


def main() -> None:
    """Console entry point: ZooError -> one line on stderr, exit 2."""
    try:
        cli.main(standalone_mode=False)
    except ZooError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        from .train import StopRequested
        if isinstance(e, StopRequested):
            click.echo(str(e), err=True)
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
