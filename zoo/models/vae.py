"""Variational autoencoder with a discretized-logistic decoder over 8-bit pixels.

Encoder q(z|x) = N(mu, diag(sigma^2)) from the shared ConvEncoder plus a linear head;
decoder p(x|z) = per-pixel discretized logistic, so ``log_prob`` (an importance-weighted
bound, Burda et al. 2016) is in the same discrete-pixel units as the exact-likelihood
families.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .. import rng
from ..api import Generator, ModelConfig, register_model
from ..distributions import (discretized_logistic_logp, gaussian_logp, kl_standard_normal,
                             standard_normal_logp)
from ..errors import ZooError
from ..images import to_float, to_uint8
from ..nn.conv import ConvDecoder, ConvEncoder, latent_side


@dataclasses.dataclass
class VAEConfig(ModelConfig):
    widths: tuple[int, ...] = (16, 32, 64)  # channels per resolution level (28 -> 14 -> 7)
    blocks: int = 0                         # residual blocks per level (0: plain strided convs)
    latent_dim: int = 32
    iw_samples: int = 16                    # default k of the importance-weighted log_prob bound
    sample_mode: str = "mean"               # "mean": decoder mean; "sample": draw pixels from p(x|z)
    lr: float = 1e-3


@register_model("vae")
class VAE(Generator):
    """Gaussian-latent VAE trained on the ELBO; likelihood is the IWAE lower bound."""

    Config = VAEConfig
    likelihood = "bound"
    has_latent = True

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"widths": (8, 16, 16), "latent_dim": 8, **fields})

    def __init__(self, config: VAEConfig):
        super().__init__(config)
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

    # ---- training ------------------------------------------------------------------------
    def loss(self, x, labels=None, *, phase="main"):
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        rec = -self.reconstruction_logp(x, z)                 # (B,) nats
        kl = kl_standard_normal(mu, log_var).sum(1)           # (B,) nats
        dims = x[0].numel()
        neg_elbo = (rec + kl).mean() / dims                   # nats per dim
        return {"loss": neg_elbo, "bpd_elbo": neg_elbo.detach() / math.log(2),
                "rec": rec.mean().detach() / dims, "kl": kl.mean().detach() / dims}

    # ---- sampling ------------------------------------------------------------------------
    def generate(self, gens, labels=None, *, mode: str | None = None):
        mode = mode or self.config.sample_mode
        z = rng.randn(gens, self.config.latent_dim)           # (B, D)
        mean, log_scale = self.decode(z)
        if mode == "mean":
            return mean.clamp(-1, 1)
        if mode == "sample":  # inverse-CDF draw from the logistic, per-sample uniforms
            u = rng.rand(gens, *mean.shape[1:]).clamp(1e-5, 1 - 1e-5)
            return (mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        raise ZooError(f"unknown VAE sample mode {mode!r} (choose mean or sample)")

    @torch.no_grad()
    def log_prob(self, x, labels=None, *, k: int | None = None):
        """IWAE bound: log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x). Nats per image, (B,).

        Uses the global RNG for the k posterior draws; callers seed it for reproducibility.
        """
        k = k or self.config.iw_samples
        out = []
        per_chunk = max(1, 1024 // k)
        for s in range(0, x.shape[0], per_chunk):
            xb = x[s:s + per_chunk]
            b = xb.shape[0]
            mu, log_var = self.encode(xb)
            z = mu.unsqueeze(1) + torch.randn(b, k, mu.shape[1]) * torch.exp(0.5 * log_var).unsqueeze(1)  # (b,k,D)
            xk = xb.unsqueeze(1).expand(b, k, *xb.shape[1:]).reshape(b * k, *xb.shape[1:])
            log_px = self.reconstruction_logp(xk, z.reshape(b * k, -1)).view(b, k)
            log_pz = standard_normal_logp(z).sum(-1)
            log_qz = gaussian_logp(z, mu.unsqueeze(1), log_var.unsqueeze(1)).sum(-1)
            out.append(torch.logsumexp(log_px + log_pz - log_qz, dim=1) - math.log(k))
        return torch.cat(out)

    @torch.no_grad()
    def interpolate(self, a, b, *, steps=8):
        x = to_float(torch.stack([a, b]))
        mu, _ = self.encode(x)
        w = torch.linspace(0, 1, steps).unsqueeze(1)           # (steps, 1)
        z = (1 - w) * mu[0] + w * mu[1]                       # (steps, D)
        mean, _ = self.decode(z)
        return to_uint8(mean.clamp(-1, 1))
