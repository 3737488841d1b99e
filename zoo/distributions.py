"""Log-likelihoods over 8-bit pixels and Gaussian helpers, shared by the families.

Every function works elementwise on its inputs' device and makes no tensor of its own on
another one (so a model on a GPU, or on the meta device in the tests, never meets a CPU tensor).

All pixel likelihoods take x in [-1, 1] on the 256-level grid of ``zoo.images`` (bin width
2/255) and return log-probabilities of the *discrete* pixel value in nats, so that
``-sum / (C*H*W*ln 2)`` is bits/dim in the same units for every family.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HALF_BIN = 1.0 / 255.0  # half the distance between adjacent levels in [-1, 1]


def discretized_logistic_logp(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(pixel = x) under a logistic(mean, exp(log_scale)) discretized to 256 bins.

    The edge bins absorb the tails (x = -1 takes (-inf, -1 + h], x = 1 takes [1 - h, inf)),
    as in PixelCNN++. Elementwise; returns the same shape as x.
    """
    log_scale = log_scale.clamp(min=-7.0)
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus = inv_s * (centered + HALF_BIN)
    minus = inv_s * (centered - HALF_BIN)
    log_cdf_plus = plus - F.softplus(plus)          # log sigmoid(plus)
    log_one_minus_cdf_minus = -F.softplus(minus)    # log (1 - sigmoid(minus))
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered
    # log density at the bin centre times the bin width, used where cdf_delta underflows
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2 * HALF_BIN)
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid)
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, inner))


def discretized_gaussian_logp(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log P(pixel = x) under N(mean, exp(log_std)^2) discretized to 256 bins (Ho et al. 2020, eq. 13)."""
    inv_std = torch.exp(-log_std)
    cdf_plus = standard_normal_cdf(inv_std * (x - mean + HALF_BIN))
    cdf_minus = standard_normal_cdf(inv_std * (x - mean - HALF_BIN))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta))


def standard_normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """Elementwise Phi(z) = (1 + erf(z / sqrt 2)) / 2, on z's device (the arithmetic of
    ``torch.distributions.Normal(0, 1).cdf``, without its CPU parameters and argument checks)."""
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def gaussian_sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Reparameterized draw z = mu + eps * exp(log_var / 2), eps ~ N(0, I) of mu's shape.

    eps comes from the global RNG (``torch.randn_like(mu)``, on mu's device): training draws
    are seeded and checkpointed by the trainer. Sampling never uses this; it draws through
    ``zoo.rng``'s per-sample generators.
    """
    return mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)


def gaussian_logp(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(log_var))."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 * torch.exp(-log_var))


def standard_normal_logp(z: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; 0, 1)."""
    return -0.5 * (math.log(2 * math.pi) + z ** 2)


def kl_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise KL( N(mean, exp(log_var)) || N(0, 1) )."""
    return 0.5 * (mean ** 2 + torch.exp(log_var) - 1.0 - log_var)
