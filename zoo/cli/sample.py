"""`zoo sample`: images from a trained run, as a PNG grid, a .npz, or a folder of PNGs."""
from __future__ import annotations

import click

from .common import CONTEXT, SEED, check_device, check_writable, device_option, import_option


@click.command("sample", context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("--n", "n", default=100, type=int, help="Number of images (or of strips, with --interpolate/--trajectory).")
@click.option("--seed", default=0, type=SEED, help="Image i depends only on (seed, i).")
@click.option("--out", required=True,
              help="Output: .png grid, .npz of uint8 images (key 'images', NCHW), or a folder ending in / "
                   "(one PNG per image, for other tools). An existing file or a folder that is not empty "
                   "is refused unless --force.")
@click.option("--force", is_flag=True, help="Replace an existing --out (a folder's old images are removed first).")
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
def sample_cmd(run, n, seed, out, force, batch_size, opts, prompt, guidance, interpolate, trajectory, frames,
               device):
    """Sample N images from a trained RUN directory.

    Examples: zoo sample runs/vae --n 64 --out grid.png; zoo sample runs/vae --n 2000 --out samples/;
    zoo sample runs/ldm-cond --prompt "a dark ankle boot" --guidance 3 --n 16 --out boot.png

    Under torchrun each process draws a block of whole batches and rank 0 writes them all: the same
    images as one process with the same --batch-size.
    """
    from .. import dist
    from ..config import parse_opts
    from ..sampling import check_target, sample_images
    check_target(run, out, force=force)
    check_writable(out, file_ok=True)
    sampler = parse_opts(opts)
    device = dist.init(check_device(device))   # under torchrun: the batches are split over the processes
    done = sample_images(run, out, n=n, seed=seed, batch_size=batch_size, sampler=sampler, prompt=prompt,
                         guidance=guidance, interpolate=interpolate, trajectory=trajectory, frames=frames,
                         device=device, force=force)
    if dist.is_main():
        click.echo(f"{'one PNG per image in' if done.folder else 'wrote'} {done.path} ({done.count} images)")
