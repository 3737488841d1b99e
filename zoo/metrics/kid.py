"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

  k(x, y) = (x . y / d + 1)^3
  MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1)) - 2 sum_{i,j} k(x_i, y_j) / m^2

averaged over ``subsets`` random subsets of size m = min(subset_size, N_real, N_fake) drawn without
replacement (a seeded generator, so the result is reproducible). Returns the mean and the
(population) standard deviation over subsets, as torch-fidelity and torchmetrics report.
"""
from __future__ import annotations

import torch

from .features import check_features


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 of two equal-size float64 samples (m, D), m >= 2, with the cubic kernel."""
    m, d = x.shape
    # x.y/d + 1 = [x/sqrt(d), 1] . [y/sqrt(d), 1]: one plain matrix product per kernel block
    one = torch.ones(m, 1, dtype=x.dtype)
    xa = torch.cat([x / d ** 0.5, one], dim=1)   # (m, D + 1)
    ya = torch.cat([y / d ** 0.5, one], dim=1)   # (m, D + 1)
    kxx = (xa @ xa.T).pow_(3)                    # (m, m)
    kyy = (ya @ ya.T).pow_(3)                    # (m, m)
    kxy = (xa @ ya.T).pow_(3)                    # (m, m)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(real, fake, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased KID estimate over random subsets of the two feature sets."""
    x, y = check_features(real, "real features"), check_features(fake, "fake features")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, x.shape[0], y.shape[0])
    g = torch.Generator().manual_seed(seed)
    vals = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        xi = x[torch.randperm(x.shape[0], generator=g)[:m]]   # (m, D)
        yi = y[torch.randperm(y.shape[0], generator=g)[:m]]   # (m, D)
        vals[i] = mmd2_unbiased(xi, yi)
    return float(vals.mean()), float(vals.std(unbiased=False))
