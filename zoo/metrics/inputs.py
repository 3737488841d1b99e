"""What a comparison names, resolved and read: a uint8 tensor, a run folder (sampled), a .npz of
images, a folder of PNG/JPEG files, a statistics file or a dataset spec.

  source_kind(source)      'tensor', 'dataset', 'run', 'folder', 'npz' or 'stats'
  open_side(source, ...)   the images (first n), or a run's model still to sample
  sample_side(side, ...)   draw a run's samples, image i depending only on (seed, i)
  match_side / check_size  bring a side to the reference's channels; refuse another height x width
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from ..errors import ZooError

if TYPE_CHECKING:
    from ..api import Generator

DEFAULT_DATA = "fashion-mnist"
RUN_SAMPLES = 10_000          # samples drawn from a run folder unless n says otherwise

Source = Union[str, os.PathLike, torch.Tensor]


def source_kind(source: Source, what: str = "SOURCE") -> str:
    """'tensor', 'dataset', 'run', 'folder', 'npz' or 'stats' for a source or reference, or a one-line ZooError."""
    from ..data import is_dataset_spec
    from ..files import CONFIG_FILE
    from .reference import is_stats_file
    if isinstance(source, torch.Tensor):
        return "tensor"
    text = os.fspath(source)
    if is_dataset_spec(text):
        return "dataset"
    p = Path(text)
    if p.is_dir():
        return "run" if (p / CONFIG_FILE).is_file() else "folder"
    if p.is_file() and p.suffix.lower() == ".npz":
        return "stats" if is_stats_file(p) else "npz"
    if p.exists():
        raise ZooError(f"{what} {text}: expected a run directory, a .npz, a folder of PNG/JPEG files or a dataset spec")
    raise ZooError(f"{what} {text}: no such file or folder, and not a dataset spec "
                   f"(fashion-mnist, idx:PATH, folder:PATH, synthetic[:SIZE[:CHANNELS]])")


@dataclasses.dataclass
class Side:
    """One side of a comparison, as named: images, or a model still to sample."""
    text: str
    kind: str
    n: int
    description: str
    images: torch.Tensor | None = None   # uint8 (n, C, H, W), once read or sampled
    model: Generator | None = None       # for a run folder
    record: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        """What a table column calls this side: a dataset spec as given, else the file or folder name."""
        return self.text if self.kind in ("dataset", "tensor") else Path(self.text).name or self.text


def _first(images: torch.Tensor, n: int | None, text: str) -> torch.Tensor:
    """The first n images (all when n is None); a one-line ZooError when there are fewer."""
    if n is not None and n > images.shape[0]:
        raise ZooError(f"--n {n} is more than the {images.shape[0]} images in {text}")
    return images if n is None else images[:n]


def open_side(source: Source, kind: str, n: int | None, *, split: str = "test", seed: int = 0,
              sampler: dict | None = None, device: str = "cpu") -> Side:
    """Read a tensor, a .npz, an image folder or a dataset split (first n images), or load a run's
    model to sample n images from later (default :data:`RUN_SAMPLES`) with ``sampler`` options."""
    if kind == "tensor":
        from .features import check_images
        images = _first(check_images(source, what="images"), n, "the images given")
        return Side("images", kind, images.shape[0], f"{images.shape[0]} images given as a tensor", images=images,
                    record={"samples": f"uint8 tensor {tuple(images.shape)}"})
    text = os.fspath(source)
    if kind == "run":
        from ..api import load
        model = load(text).to(device)
        n = RUN_SAMPLES if n is None else n
        return Side(text, kind, n, f"{n} samples of {text} (seed {seed})", model=model,
                    record={"run": text, "family": model.name, "sampler": dict(sampler or {}), "seed": seed})
    if kind == "dataset":
        from .reference import load_split
        ds, n = load_split(text, split, n)
        return Side(text, kind, n, f"first {n} images of the {text} {split} split", images=ds.images[:n],
                    record={"samples": f"{text} ({split} split)"})
    from ..images import read_images
    images = _first(read_images(text), n, text)
    what = f"first {n} images of {text}" if n is not None else f"{images.shape[0]} images of {text}"
    return Side(text, kind, images.shape[0], what, images=images, record={"samples": text})


def sample_side(side: Side, *, seed: int = 0, progress: bool = False) -> None:
    """Draw a run's samples (image i depends only on (seed, i)), once."""
    if side.images is not None or side.model is None:
        return
    try:
        side.images = side.model.sample(side.n, seed=seed, batch_size=256, progress=progress,
                                        **side.record["sampler"])
    except TypeError as e:
        raise ZooError(f"bad sampler option for {side.model.name}: {e}") from None


def check_size(text: str, hw: tuple[int, int], shape: tuple[int, int, int], what: str = "SOURCE") -> None:
    """A one-line ZooError when images of height x width ``hw`` cannot be scored against images of ``shape``."""
    if tuple(hw) != tuple(shape[1:]):
        raise ZooError(f"{what} {text}: images are {hw[0]}x{hw[1]} but the reference's are {shape[1]}x{shape[2]}; "
                       f"resize them first")


def match_side(side: Side, channels: int, what: str = "SOURCE") -> None:
    """Bring a side's images to ``channels``: gray to RGB by repetition, RGB to gray when its three
    channels are equal (gray images saved as RGB PNGs); a one-line ZooError otherwise."""
    from ..images import match_channels
    side.images = match_channels(side.images, channels, what=f"{what} {side.text}")
