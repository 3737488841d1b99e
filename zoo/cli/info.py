"""`zoo list` and `zoo data`: what families and datasets there are."""
from __future__ import annotations

import json

import click

from .common import CONTEXT, import_option


@click.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--tflops", default=10.0, type=float, show_default=True,
              help="Training budget whose recipe (e.g. a VAE's mixture prior) sets the counted model.")
@click.option("--size", default=1.0, type=float, show_default=True,
              help="Width multiplier of every network (as `zoo train --size`); families without a size axis are left out.")
@click.option("--depth", default=1.0, type=float, show_default=True,
              help="Multiplier of the block counts (as `zoo train --depth`); families without a depth axis are left out.")
@import_option
def list_cmd(as_json, tflops, size, depth):
    """Families with their likelihood kind, phases and parameter count for 1x28x28 images, as a run
    trained for --tflops TFLOP at --size and --depth builds them (the count the bench tables show)."""
    import math
    from ..api import get_model_class, list_models
    from ..sizing import sized_model
    from ..errors import ZooError
    if not (math.isfinite(tflops) and tflops > 0):
        raise ZooError(f"--tflops must be a positive number, got {tflops}")
    rows = []
    names = [n for n in list_models() if (size == 1 or get_model_class(n).size_fields)
             and (depth == 1 or get_model_class(n).depth_fields)]
    if not names:
        axes = [axis for axis, asked in (("a size axis", size != 1), ("a depth axis", depth != 1)) if asked]
        raise ZooError(f"no family has {' and '.join(axes)}")
    for name in names:
        m = sized_model(name, tflops, size, depth)
        stages = m.stage_plan()
        rows.append({"family": name, "likelihood": m.likelihood,
                     "phases": [p for ps in stages.values() for p in ps], "stages": list(stages),
                     "params": m.num_params(), "module": type(m).__module__,
                     "doc": (type(m).__doc__ or "").strip().splitlines()[0]})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'family':<18} {'likelihood':<10} {'params':>10}  phases")
    for r in rows:
        click.echo(f"{r['family']:<18} {r['likelihood']:<10} {r['params']:>10,}  {','.join(r['phases'])}")


@click.command("data", context_settings=CONTEXT)
@click.argument("name", default="fashion-mnist")
@click.option("--download", is_flag=True, help="Fetch with torchvision's downloader if not found (needs internet).")
@click.option("--captions", "n_captions", type=int, default=0, metavar="N",
              help="Fit the captioner (zoo.text) on the training split; print its cut points and the captions "
                   "of the first N training images (seed 0).")
def data_cmd(name, download, n_captions):
    """Where dataset NAME was found, its split sizes and image shape.

    NAME: fashion-mnist, idx:PATH, folder:PATH[,size=N][,mode=gray|rgb], synthetic[:SIZE[:CH]].
    """
    from ..data import load_dataset
    from ..errors import ZooError
    if n_captions < 0:
        raise ZooError(f"--captions must be >= 0, got {n_captions}")
    splits = {}
    for split in ("train", "test"):
        d = splits[split] = load_dataset(name, split, download=download)
        click.echo(f"{split:<5} {len(d):>7} images  shape {tuple(d.shape)}  classes {int(d.labels.max()) + 1:>3}  "
                   f"from {d.source}")
    if n_captions:
        from ..text import ATTRIBUTES, Captioner, class_names_for
        train = splits["train"]
        cap = Captioner.fit(train.images, class_names_for(train.name, int(train.labels.max()) + 1))
        for attr, (lo, hi) in cap.cuts.items():
            low, high = ATTRIBUTES[attr]
            click.echo(f"cut   {attr:<10} {low} < {lo:.4g}, {high} > {hi:.4g}")
        n = min(n_captions, len(train))
        for i, (text, k) in enumerate(zip(cap.captions(train.images[:n], train.labels[:n]), train.labels[:n].tolist())):
            click.echo(f"caption {i:>5}  label {k} ({cap.class_names[k][0]})  {text}")
