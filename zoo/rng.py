"""Per-sample random generators: sample i depends only on (seed, i), never on the batch size.

Every sampler draws its randomness through a list of ``torch.Generator`` objects, one per
sample, so that splitting the same request into different batches gives identical images.
The global RNG is never touched.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import numpy as np
import torch

from .errors import ZooError

# Generators live on the CPU (so draws are identical on any machine); draws are moved to the
# device of the model being sampled, which Generator.sample() sets with device_scope().
_DEVICE: contextvars.ContextVar[torch.device] = contextvars.ContextVar("zoo_rng_device", default=torch.device("cpu"))

MAX_SEED = 2 ** 64 - 1   # torch.Generator().manual_seed accepts 0 .. 2**64 - 1


def check_seed(seed: int, what: str = "seed") -> int:
    """``seed`` if it is an integer torch accepts (0 .. 2**64 - 1), else a one-line ZooError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ZooError(f"{what} must be an integer from 0 to 2**64-1, got {seed}")
    return seed


@contextlib.contextmanager
def device_scope(device: torch.device | str):
    """Within this block, randn/rand/categorical return tensors on ``device``."""
    token = _DEVICE.set(torch.device(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of run ``seed``, mixed by numpy's SeedSequence."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def generators(seed: int, start: int, count: int) -> list[torch.Generator]:
    """Generators for samples ``start .. start+count-1`` of ``seed``."""
    return [torch.Generator().manual_seed(sample_seed(seed, i)) for i in range(start, start + count)]


def batches(seed: int, n: int, batch_size: int, *, only: range | None = None,
            offset: int = 0) -> Iterator[tuple[int, list[torch.Generator]]]:
    """(start, generators) for samples offset..offset+n-1 of ``seed``, ``batch_size`` at a time: the one
    batched loop behind every sampler, so image i depends only on (seed, i) at any batch size.
    ``start`` counts from ``offset``. ``only``: the indices of the batches to yield (a rank's share,
    see ``zoo.dist.my_batches``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for k in (only if only is not None else range(-(-n // batch_size))):
        s = k * batch_size
        yield s, generators(seed, offset + s, min(batch_size, n - s))


def randn(gens: list[torch.Generator], *shape: int, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws of ``shape`` for each generator: returns (len(gens), *shape)."""
    return torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in gens]).to(_DEVICE.get())


def rand(gens: list[torch.Generator], *shape: int, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws of ``shape`` for each generator: returns (len(gens), *shape)."""
    return torch.stack([torch.rand(shape, generator=g, dtype=dtype) for g in gens]).to(_DEVICE.get())


def categorical(gens: list[torch.Generator], probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of ``probs`` (B, K) with row i using gens[i]; returns (B,) int64.

    Inverse-CDF sampling with one uniform per row, so the draw depends only on that row's
    generator and probabilities (torch.multinomial takes a single generator for the batch).
    """
    u = rand(gens, 1).to(device=probs.device, dtype=probs.dtype)  # (B, 1)
    cdf = probs.cumsum(-1)                                    # (B, K)
    cdf = cdf / cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True).squeeze(-1)  # (B,)
    return idx.clamp_(max=probs.shape[-1] - 1)
