"""The Gaussian-latent conv VAE shared by the VAE and VAE-GAN families.

Encoder q(z|x) = N(mu, diag(sigma^2)): the shared ConvEncoder plus a linear head. Decoder
p(x|z): a linear layer to the coarsest map, the shared ConvDecoder, and a per-pixel
discretized logistic over the 256 levels, so ``log_prob`` (the importance-weighted bound of
Burda et al. 2016) is in the same discrete-pixel units as the exact-likelihood families.

Two pieces, each written once:
  :class:`GaussianVAEConfig`  the config fields (a dataclass mixin for a family's config);
  :class:`GaussianVAEMixin`   a mixin for a :class:`zoo.api.Generator`: it builds the networks
                              and gives ``encode``/``decode``/``reconstruction_logp`` and the
                              contract's ``generate``, ``log_prob`` (IWAE bound) and ``interpolate``.
A family puts the mixin before ``Generator`` in its bases and adds what is its own: its config,
its registration and its loss (``class VAE(GaussianVAEMixin, Generator)``).

A mixin rather than a submodule so that both families keep their public methods (``encode``,
``decode``, used by the tests and benchmarks) and their state-dict keys (``encoder.*``,
``to_posterior.*``, ``from_latent.*``, ``decoder.*``) without delegating methods.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .. import rng
from ..distributions import discretized_logistic_logp, gaussian_logp, gaussian_sample, standard_normal_logp
from ..errors import ZooError
from ..images import to_float, to_uint8
from .conv import ConvDecoder, ConvEncoder, latent_side

SAMPLE_MODES = ("mean", "sample")
#: fields of a tiny test config (a family's ``tiny_config`` adds its own)
TINY_FIELDS = {"widths": (8, 16, 16), "latent_dim": 8}


@dataclasses.dataclass
class GaussianVAEConfig:
    """Config fields of the Gaussian conv VAE, mixed into a family's config dataclass."""
    widths: tuple[int, ...] = (16, 32, 64)  # channels per resolution level (28 -> 14 -> 7)
    blocks: int = 0                         # residual blocks per level (0: plain strided convs)
    latent_dim: int = 32
    iw_samples: int = 16                    # default k of the importance-weighted log_prob bound
    sample_mode: str = "mean"               # "mean": decoder mean; "sample": draw pixels from p(x|z)


class GaussianVAEMixin:
    """Gaussian-latent conv VAE for a Generator whose config has the GaussianVAEConfig fields
    (and ``channels``, ``image_size``). Creates, in this order: ``encoder``, ``to_posterior``,
    ``from_latent``, ``decoder``."""

    config: GaussianVAEConfig

    def __init__(self, config) -> None:
        super().__init__(config)  # the Generator
        c = config
        self.h = latent_side(c.image_size, c.widths)
        feat = c.widths[-1] * self.h * self.h
        self.encoder = ConvEncoder(c.channels, c.widths[-1], c.widths, c.blocks)
        self.to_posterior = nn.Linear(feat, 2 * c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, feat)
        self.decoder = ConvDecoder(c.widths[-1], 2 * c.channels, c.widths, c.blocks)

    # ---- the two halves ------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) in [-1,1] -> posterior mean and log-variance, each (B, latent_dim)."""
        h = self.encoder(x).flatten(1)
        mu, log_var = self.to_posterior(h).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, latent_dim) -> pixel means and log-scales, each (B,C,H,W)."""
        h = self.from_latent(z).view(z.shape[0], self.config.widths[-1], self.h, self.h)
        mean, log_scale = self.decoder(h).chunk(2, dim=1)
        return mean, log_scale

    def reconstruction_logp(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels: (B,)."""
        mean, log_scale = self.decode(z)
        return discretized_logistic_logp(x, mean, log_scale).flatten(1).sum(1)

    # ---- the Generator contract ----------------------------------------------------------
    def generate(self, gens: list[torch.Generator], labels: torch.Tensor | None = None, *,
                 mode: str | None = None) -> torch.Tensor:
        """Decode z ~ N(0, I): the decoder mean (``mode="mean"``) or a pixel draw from p(x|z)."""
        mode = mode or self.config.sample_mode
        z = rng.randn(gens, self.config.latent_dim)           # (B, D)
        mean, log_scale = self.decode(z)
        if mode == "mean":
            return mean.clamp(-1, 1)
        if mode == "sample":  # inverse-CDF draw from the logistic, per-sample uniforms
            u = rng.rand(gens, *mean.shape[1:]).clamp(1e-5, 1 - 1e-5)   # (B, C, H, W)
            return (mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        raise ZooError(f"unknown VAE sample mode {mode!r} (choose {' or '.join(SAMPLE_MODES)})")

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, k: int | None = None) -> torch.Tensor:
        """IWAE bound: log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x). Nats per image, (B,).

        Uses the global RNG for the k posterior draws; callers seed it for reproducibility.
        """
        k = k or self.config.iw_samples
        x = x.to(self.device)
        out = []
        per_chunk = max(1, 1024 // k)
        for s in range(0, x.shape[0], per_chunk):
            xb = x[s:s + per_chunk]                                                   # (b, C, H, W)
            b = xb.shape[0]
            mu, log_var = self.encode(xb)                                             # (b, D) each
            z = gaussian_sample(mu.unsqueeze(1).expand(b, k, -1), log_var.unsqueeze(1).expand(b, k, -1))  # (b, k, D)
            xk = xb.unsqueeze(1).expand(b, k, *xb.shape[1:]).reshape(b * k, *xb.shape[1:])
            log_px = self.reconstruction_logp(xk, z.reshape(b * k, -1)).view(b, k)
            log_pz = standard_normal_logp(z).sum(-1)                                  # (b, k)
            log_qz = gaussian_logp(z, mu.unsqueeze(1), log_var.unsqueeze(1)).sum(-1)  # (b, k)
            out.append(torch.logsumexp(log_px + log_pz - log_qz, dim=1) - math.log(k))
        return torch.cat(out)

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, *, steps: int = 8) -> torch.Tensor:
        """Decoder means (uint8, (steps, C, H, W), CPU) on the line between the posterior means of
        uint8 images a and b."""
        mu, _ = self.encode(to_float(torch.stack([a, b])).to(self.device))   # (2, D)
        w = torch.linspace(0, 1, steps, device=mu.device).unsqueeze(1)       # (steps, 1)
        z = (1 - w) * mu[0] + w * mu[1]                                       # (steps, D)
        mean, _ = self.decode(z)
        return to_uint8(mean.clamp(-1, 1))
