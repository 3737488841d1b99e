"""Batches of training-image indices, and the check that the images can feed them."""
from __future__ import annotations

import torch

from ..errors import ZooError


def check_images(images: torch.Tensor, batch_size: int) -> None:
    """ZooError unless ``images`` is uint8 (N,C,H,W) with at least ``batch_size`` images."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ZooError(f"training images must be uint8 (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
    if images.shape[0] < batch_size:
        raise ZooError(f"dataset has {images.shape[0]} images, fewer than batch_size {batch_size}")


class BatchSampler:
    """Random batches without replacement, reshuffled each epoch, from a seeded generator.

    The remainder of each epoch is dropped, so every step has the same shape (and FLOP count).
    State for resume: ``gen`` (its RNG state), ``perm``, ``pos``, ``epoch``.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:  # check_images tells the user first; this guards direct use
            raise ValueError(f"dataset has {n} images, fewer than batch_size {batch_size}")
        self.n, self.bs = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self) -> torch.Tensor:
        """Indices (batch_size,) of the next batch."""
        if self.pos + self.bs > self.n:
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return idx

    @property
    def epochs(self) -> float:
        """Passes over the data so far, fractional."""
        return self.epoch + self.pos / self.n
