"""`zoo list` and `zoo data`: what families and datasets there are."""
from __future__ import annotations

import json

import click

from .common import CONTEXT, import_option


@click.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@import_option
def list_cmd(as_json):
    """Families with their likelihood kind, phases and parameter count at default size (1x28x28)."""
    from ..api import get_model, list_models
    rows = []
    for name in list_models():
        m = get_model(name)
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
def data_cmd(name, download):
    """Where dataset NAME was found, its split sizes and image shape.

    NAME: fashion-mnist, idx:PATH, folder:PATH[,size=N][,mode=gray|rgb], synthetic[:SIZE[:CH]].
    """
    from ..data import load_dataset
    for split in ("train", "test"):
        d = load_dataset(name, split, download=download)
        click.echo(f"{split:<5} {len(d):>7} images  shape {tuple(d.shape)}  classes {int(d.labels.max()) + 1:>3}  "
                   f"from {d.source}")
