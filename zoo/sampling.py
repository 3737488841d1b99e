"""`zoo sample` as one library call: images from a trained run, written as a PNG grid, a .npz or a
folder of PNGs.

:func:`sample_images` checks every option and the target before it loads the model or writes
anything: a target that exists is refused unless ``force`` (a folder's old images are then
replaced as a whole set), a target inside the run folder is refused, and a request whose images
would not fit in memory is refused with the memory it needs.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import dist
from .api import Generator, load, read_config
from .checks import check_guidance, check_positive
from .errors import ZooError
from .files import TRAIN_FILE
from .images import check_image_target, is_folder_target, write_images
from .rng import check_seed

MEMORY_SHARE = 0.5       # a request may use at most this share of the memory available now


@dataclass
class Sampled:
    """What :func:`sample_images` wrote: where, how many images, and whether ``out`` is a folder."""
    path: Path
    count: int
    folder: bool


def available_memory() -> int | None:
    """Bytes of memory available now (os.sysconf's available pages), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(count: int, shape: tuple[int, int, int]) -> None:
    """A one-line ZooError when ``count`` uint8 images of ``shape`` (twice over: the images and the
    copy a writer makes) would take more than :data:`MEMORY_SHARE` of the available memory."""
    need = 2 * count * math.prod(shape)
    have = available_memory()
    if have is not None and need > MEMORY_SHARE * have:
        raise ZooError(f"{count} images of {'x'.join(map(str, shape))} need about {need / 1e9:.3g} GB, more than "
                       f"the {MEMORY_SHARE * have / 1e9:.3g} GB this machine can spare now; ask for fewer")


def check_target(run: str | os.PathLike, out: str, *, force: bool = False) -> None:
    """One-line ZooErrors for an ``out`` that cannot take the samples: a kind write_images cannot
    write, a path inside the run folder, or something already there (unless ``force``)."""
    check_image_target(out)
    target, run_dir = Path(out).absolute().resolve(), Path(run).absolute().resolve()
    if target == run_dir or run_dir in target.parents:
        raise ZooError(f"--out {out} is inside the run folder {run}: write the samples somewhere else")
    if is_folder_target(out):
        if Path(out).exists() and not Path(out).is_dir():
            raise ZooError(f"--out {out}: {out.rstrip('/')} exists and is a file, not a folder")
        if Path(out).is_dir() and any(Path(out).iterdir()) and not force:
            raise ZooError(f"--out {out}: the folder is not empty; --force replaces its images with the new "
                           f"set, or choose an empty folder")
        if force and Path(out).is_dir() and any(p.is_dir() for p in Path(out).iterdir()):
            raise ZooError(f"--out {out}: the folder holds subfolders (their images would be read with the "
                           f"samples); choose an empty folder")
    elif Path(out).exists() and not force:
        raise ZooError(f"--out {out} exists: --force overwrites it, or choose another name")


def _run_data(run: Path) -> str:
    """The dataset spec a run was trained on (from train.json), default fashion-mnist."""
    try:
        return json.loads((run / TRAIN_FILE).read_text()).get("data") or "fashion-mnist"
    except (OSError, ValueError, AttributeError):
        return "fashion-mnist"


def _draw(model: Generator, run: Path, n: int, seed: int, batch_size: int, cond: torch.Tensor | None,
          interpolate: bool, trajectory: bool, frames: int, sampler: dict) -> tuple[torch.Tensor, int | None]:
    """(uint8 images, images per grid row or None): plain samples, interpolation or trajectory strips."""
    if interpolate:
        from .data import load_dataset
        test = load_dataset(_run_data(run), "test")
        g = torch.Generator().manual_seed(seed)
        pairs = torch.randint(0, len(test), (n, 2), generator=g)
        return torch.cat([model.interpolate(test.images[i], test.images[j], steps=frames)
                          for i, j in pairs.tolist()]), frames
    if trajectory:
        return model.trajectory(n, seed=seed, frames=frames, **sampler).flatten(0, 1), frames
    try:
        with dist.sharded():
            images = model.sample(n, seed=seed, cond=cond, batch_size=batch_size, progress=True, **sampler)
    except TypeError as e:
        if "keyword argument" not in str(e):   # only a sampler option the family does not take
            raise
        raise ZooError(f"bad sampler option for {model.name}: {str(e).splitlines()[0]}") from None
    return images, None


def sample_images(run: str | os.PathLike, out: str | os.PathLike, *, n: int = 100, seed: int = 0,
                  batch_size: int = 256, sampler: dict | None = None, prompt: str | None = None,
                  guidance: float | None = None, interpolate: bool = False, trajectory: bool = False,
                  frames: int = 8, device: str = "cpu", force: bool = False) -> Sampled:
    """Sample ``n`` images from the run folder ``run`` and write them to ``out``: a ``.png`` grid, a
    ``.npz`` (uint8, key 'images', NCHW) or a folder ending in '/' (one PNG per image). Image i
    depends only on (seed, i). ``sampler``: the family's sampler options (steps, temperature, ...);
    ``prompt``/``guidance``: condition every image on a text (a run trained with --conditional);
    ``interpolate``/``trajectory``: ``n`` strips of ``frames`` images instead. An existing ``out``
    is replaced only with ``force``. Under torchrun every rank calls this; rank 0 writes.
    """
    check_positive(n=n, batch_size=batch_size, frames=frames)
    check_seed(seed, "--seed")
    if interpolate and trajectory:
        raise ZooError("choose one of --interpolate and --trajectory")
    sampler = dict(sampler or {})
    if guidance is not None:
        if prompt is None:
            raise ZooError("--guidance needs --prompt")
        check_guidance(guidance)
        sampler["guidance"] = guidance
    if prompt is not None and (interpolate or trajectory):
        raise ZooError("--prompt draws plain samples: leave out --interpolate/--trajectory")
    out = str(out)
    check_target(run, out, force=force)
    cfg = read_config(run)[1]
    check_memory(n * (frames if interpolate or trajectory else 1), (cfg.channels, cfg.image_size, cfg.image_size))
    model = load(run).to(device)
    from .text import embed_prompts   # an unknown word or an unconditional run: one line, before any work
    cond = embed_prompts(model, prompt, n) if prompt is not None else None   # (n, cond_dim) | None
    images, nrow = _draw(model, Path(run), n, seed, batch_size, cond, interpolate, trajectory, frames, sampler)
    if not dist.is_main():
        return Sampled(Path(out), int(images.shape[0]), is_folder_target(out))
    return Sampled(write_images(images, out, nrow=nrow), int(images.shape[0]), is_folder_target(out))
