"""`zoo sample`: images from a trained run, as a PNG grid, a .npz, or a folder of PNGs."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ZooError
from .common import CONTEXT, check_device, check_positive, check_writable, device_option, import_option


def _run_data(run: Path) -> str:
    """The dataset spec a run was trained on (from train.json), default fashion-mnist."""
    try:
        return json.loads((run / "train.json").read_text()).get("data") or "fashion-mnist"
    except (OSError, ValueError, AttributeError):
        return "fashion-mnist"


@click.command("sample", context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--n", "n", default=100, type=int, help="Number of images (or of strips, with --interpolate/--trajectory).")
@click.option("--seed", default=0, type=int, help="Image i depends only on (seed, i).")
@click.option("--out", required=True,
              help="Output: .png grid, .npz of uint8 images (key 'images', NCHW), or a folder ending in / "
                   "(one PNG per image, for other tools).")
@click.option("--batch-size", default=256, type=int, help="Images per forward batch.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="Sampler option, e.g. steps=50, temperature=0.9, sampler=ddim. Repeatable.")
@click.option("--prompt", default=None, metavar="TEXT",
              help="Condition every image on TEXT (a run trained with --conditional), e.g. \"a dark ankle boot\"; "
                   "the words are the captions' (an unknown word lists them).")
@click.option("--guidance", default=None, type=float, metavar="W",
              help="Classifier-free guidance scale for --prompt (diffusion, latent diffusion, pixel GPT, VQ-VAE): "
                   "0 unconditional, 1 plain conditional, >1 stronger  [default: 1]")
@click.option("--interpolate", is_flag=True, help="Write latent interpolation strips between test images.")
@click.option("--trajectory", is_flag=True, help="Write strips of the running x0 prediction (diffusion).")
@click.option("--frames", default=8, type=int, help="Images per strip for --interpolate/--trajectory.")
@device_option
@import_option
def sample_cmd(run, n, seed, out, batch_size, opts, prompt, guidance, interpolate, trajectory, frames, device):
    """Sample N images from a trained RUN directory.

    Examples: zoo sample runs/vae --n 64 --out grid.png; zoo sample runs/vae --n 2000 --out samples/;
    zoo sample runs/ldm-cond --prompt "a dark ankle boot" --guidance 3 --n 16 --out boot.png

    Under torchrun each process draws a block of whole batches and rank 0 writes them all: the same
    images as one process with the same --batch-size.
    """
    import torch
    from .. import dist
    from ..api import load
    from ..config import parse_opts
    from ..images import check_image_target, is_folder_target, write_images
    check_positive(n=n, batch_size=batch_size, frames=frames)
    if seed < 0:
        raise ZooError(f"--seed must be >= 0, got {seed}")
    if interpolate and trajectory:
        raise ZooError("choose one of --interpolate and --trajectory")
    check_image_target(out)
    check_writable(out)
    sampler = parse_opts(opts)
    if guidance is not None:
        if prompt is None:
            raise ZooError("--guidance needs --prompt")
        if not (guidance >= 0 and guidance < float("inf")):
            raise ZooError(f"--guidance must be a finite number >= 0, got {guidance}")
        sampler["guidance"] = guidance
    if prompt is not None and (interpolate or trajectory):
        raise ZooError("--prompt draws plain samples: leave out --interpolate/--trajectory")
    device = dist.init(check_device(device))   # under torchrun: the batches are split over the processes
    model = load(run).to(device)
    from ..text import embed_prompts   # an unknown word or an unconditional run: one line, before any work
    cond = embed_prompts(model, prompt, n) if prompt is not None else None
    if interpolate:
        from ..data import load_dataset
        test = load_dataset(_run_data(Path(run)), "test")
        g = torch.Generator().manual_seed(seed)
        pairs = torch.randint(0, len(test), (n, 2), generator=g)
        images = torch.cat([model.interpolate(test.images[i], test.images[j], steps=frames) for i, j in pairs.tolist()])
        nrow = frames
    elif trajectory:
        images = model.trajectory(n, seed=seed, frames=frames, **sampler).flatten(0, 1)
        nrow = frames
    else:
        try:
            with dist.sharded():
                images = model.sample(n, seed=seed, cond=cond, batch_size=batch_size, progress=True, **sampler)
        except TypeError as e:
            raise ZooError(f"bad sampler option for {model.name}: {e}") from None
        nrow = None
    if not dist.is_main():
        return
    where = write_images(images, out, nrow=nrow)
    kind = "one PNG per image in" if is_folder_target(out) else "wrote"
    click.echo(f"{kind} {where} ({images.shape[0]} images)")
