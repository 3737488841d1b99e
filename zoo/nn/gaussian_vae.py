"""The Gaussian-latent conv VAE shared by the VAE and VAE-GAN families.

Encoder q(z|x) = N(mu, diag(sigma^2)): the shared ConvEncoder plus a linear head. Decoder
p(x|z): a linear layer to the coarsest map, the shared ConvDecoder, and a per-pixel
discretized logistic over the 256 levels, so ``log_prob`` (the importance-weighted bound of
Burda et al. 2016) is in the same discrete-pixel units as the exact-likelihood families.

Written once:
  :class:`GaussianVAEMixin`   a mixin for a :class:`zoo.api.Generator`: it builds the networks
                              and gives ``encode``/``decode``/``reconstruction_logp`` and the
                              contract's ``generate``, ``log_prob`` (IWAE bound) and ``interpolate``.
A family puts the mixin before ``Generator`` in its bases and adds what is its own: its config,
its registration and its loss (``class VAE(GaussianVAEMixin, Generator)``).

A mixin rather than a submodule so that both families keep their public methods (``encode``,
``decode``, used by the tests and benchmarks) and their state-dict keys (``encoder.*``,
``to_posterior.*``, ``from_latent.*``, ``decoder.*``) without delegating methods.

Conditional (``config.cond_dim = D > 0``): a conditional VAE (Sohn et al. 2015) on a text
embedding c (B, D). Encoder q(z|x,c) and decoder p(x|z,c) both take c by FiLM after the norm of
each resolution level (``zoo.nn.conv.FiLM``: per-channel scale and shift linear in c); the prior
stays N(0, I), so ``log_prob(x, c)`` is the importance-weighted bound of log p(x|c). The FiLM
layers (``encoder.film``, ``decoder.film``) are made by :meth:`GaussianVAEMixin.add_conditioning`,
which a family calls after all its other modules; with ``cond_dim = 0`` nothing is made and every
method runs exactly as before. ``cond`` None in a conditional model means the null condition
(zeros), which prompt dropout trains: sampling without a prompt, and ``interpolate``, use it.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .. import rng
from ..api import ModelConfig, halvings
from ..config import check_choice
from ..distributions import discretized_logistic_logp, gaussian_logp, gaussian_sample, standard_normal_logp
from ..errors import ZooError
from ..images import to_float, to_uint8
from .conv import ConvDecoder, ConvEncoder, latent_side
from .mixture import GaussianMixture

SAMPLE_MODES = ("mean", "sample")
PRIORS = ("normal", "mixture")
#: fields of a tiny test config (a family's ``tiny_config`` adds its own)
TINY_FIELDS = {"widths": (8, 16, 16), "latent_dim": 8}


class GaussianVAEMixin:
    """Gaussian-latent conv VAE for a Generator whose config has the fields ``widths``, ``blocks``,
    ``latent_dim``, ``iw_samples``, ``sample_mode``, ``prior``, ``prior_components``, ``prior_lr``
    (each family declares them, with its defaults, in its own config). Creates, in this order: ``encoder``, ``to_posterior``,
    ``from_latent``, ``decoder``."""

    config: ModelConfig

    def __init__(self, config) -> None:
        super().__init__(config)  # the Generator
        c = config
        self.h = latent_side(c.image_size, c.widths)
        feat = c.widths[-1] * self.h * self.h
        self.encoder = ConvEncoder(c.channels, c.widths[-1], c.widths, c.blocks)
        self.to_posterior = nn.Linear(feat, 2 * c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, feat)
        self.decoder = ConvDecoder(c.widths[-1], 2 * c.channels, c.widths, c.blocks)

    @classmethod
    def lower_resolution_config(cls, config: ModelConfig, factor: int) -> ModelConfig:
        """Drop the log2(factor) finest levels of ``widths`` (finest first), so the latent map keeps
        its side (7x7 for 28 / factor images); unchanged when ``widths`` has no level to spare."""
        k = halvings(factor)
        if 0 < k < len(config.widths):
            return dataclasses.replace(config, widths=config.widths[k:])
        return config

    # ---- conditioning --------------------------------------------------------------------
    def add_conditioning(self) -> None:
        """For ``cond_dim > 0``: the FiLM layers of encoder and decoder. The family calls it after
        all its other modules, so those draw the same initial weights as in the unconditional model."""
        if self.is_conditional:
            self.encoder.add_conditioning(self.config.cond_dim)
            self.decoder.add_conditioning(self.config.cond_dim)

    # ---- the two halves ------------------------------------------------------------------
    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) in [-1,1] (and cond (B, cond_dim)) -> posterior mean and log-variance, each (B, latent_dim)."""
        h = self.encoder(x, self.condition_for_network(cond, x.shape[0])).flatten(1)
        mu, log_var = self.to_posterior(h).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, latent_dim) (and cond (B, cond_dim)) -> pixel means and log-scales, each (B,C,H,W)."""
        h = self.from_latent(z).view(z.shape[0], self.config.widths[-1], self.h, self.h)
        mean, log_scale = self.decoder(h, self.condition_for_network(cond, z.shape[0])).chunk(2, dim=1)
        return mean, log_scale

    def reconstruction_logp(self, x: torch.Tensor, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z[, cond]) summed over pixels: (B,)."""
        mean, log_scale = self.decode(z, cond)
        return discretized_logistic_logp(x, mean, log_scale).flatten(1).sum(1)

    # ---- the prior -----------------------------------------------------------------------
    # N(0, I), or with ``prior=mixture`` a learned Gaussian mixture (``zoo.nn.mixture``) in
    # ``self.mixture``, fitted during training to the negative log-likelihood of each batch's posterior
    # samples, detached (``with_prior_fit``, added to the family's loss), at its own learning rate
    # (``with_prior_group``). The ELBO keeps its KL to N(0, I), so the encoder and decoder train as
    # with ``prior=normal``; sampling and the likelihood bound both use the mixture. A conditional
    # model's mixture weights follow the caption (``GaussianMixture(cond_dim=...)``): p(z|c), fitted to
    # z ~ q(z|x, c) at the same (prompt-dropped) conditions, sampled and bounded at the prompt.
    def add_prior(self) -> None:
        """Check the prior settings and, for ``prior=mixture``, make ``self.mixture``. The family calls it
        after all its other modules, so those draw the same initial weights as with ``prior=normal``."""
        c = self.config
        check_choice("VAE prior", c.prior, PRIORS)
        if c.prior == "mixture" and c.prior_components < 1:
            raise ZooError(f"prior_components must be >= 1, got {c.prior_components}")
        cond_dim = c.cond_dim if self.is_conditional else 0   # a conditional model's weights follow the caption
        self.mixture = GaussianMixture(c.latent_dim, c.prior_components, cond_dim) if c.prior == "mixture" else None

    def with_prior_fit(self, out: dict[str, torch.Tensor], z: torch.Tensor,
                       cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """A family's named losses ``out`` with, for the mixture prior, the mixture's negative
        log-likelihood of posterior samples z (B, D) (at the conditions ``cond`` (B, cond_dim) they were
        encoded with, after prompt dropout) added to ``out["loss"]`` and reported as ``"prior_nll"``:
        nats per image dimension, of z detached so that no gradient reaches the encoder. Unchanged
        with the N(0, I) prior."""
        if self.mixture is None:
            return out
        dims = self.config.channels * self.config.image_size ** 2
        prior_nll = -self.mixture.log_prob(z.detach(), cond).mean() / dims
        return {**out, "loss": out["loss"] + prior_nll, "prior_nll": prior_nll.detach()}

    def with_prior_group(self, make, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """``make(params)`` (the family's optimizer) over all but the mixture's parameters, with one more
        group holding the mixture's at ``prior_lr`` when they are among ``params``."""
        own = set() if self.mixture is None else {id(p) for p in self.mixture.parameters()}
        opt = make([p for p in params if id(p) not in own])
        mix = [p for p in params if id(p) in own]
        if mix:
            opt.add_param_group({"params": mix, "lr": self.config.prior_lr})
        return opt

    def prior_logp(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z[|c]) of latents (B, ..., D): (B, ...), at ``cond`` (B, cond_dim) or None."""
        return standard_normal_logp(z).sum(-1) if self.mixture is None else self.mixture.log_prob(z, cond)

    def prior_sample(self, gens: list[torch.Generator], cond: torch.Tensor | None = None) -> torch.Tensor:
        """One latent per generator from the prior, (len(gens), D), at ``cond`` (len(gens), cond_dim) or None."""
        if self.mixture is None:
            return rng.randn(gens, self.config.latent_dim)
        return self.mixture.sample(gens, self.condition_for_network(cond, len(gens)))

    # ---- the Generator contract ----------------------------------------------------------
    def generate(self, gens: list[torch.Generator], cond: torch.Tensor | None = None, *,
                 mode: str | None = None) -> torch.Tensor:
        """Decode z from the prior (at ``cond``, or the null condition): the decoder mean (``mode="mean"``)
        or a pixel draw from p(x|z)."""
        mode = mode or self.config.sample_mode
        z = self.prior_sample(gens, cond)                     # (B, D)
        mean, log_scale = self.decode(z, cond)
        if mode == "mean":
            return mean.clamp(-1, 1)
        if mode == "sample":  # inverse-CDF draw from the logistic, per-sample uniforms
            u = rng.rand(gens, *mean.shape[1:]).clamp(1e-5, 1 - 1e-5)   # (B, C, H, W)
            return (mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        raise ZooError(f"unknown VAE sample mode {mode!r} (choose {' or '.join(SAMPLE_MODES)})")

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None, *, k: int | None = None) -> torch.Tensor:
        """IWAE bound: log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x), with p(z) the prior that
        ``generate`` samples (N(0, I) or the learned mixture). Nats per image, (B,).
        Of a conditional model: the bound of log p(x|c) with q(z|x,c), p(x|z,c) at ``cond`` (B, cond_dim)
        (None: the null condition).

        Uses the global RNG for the k posterior draws; callers seed it for reproducibility.
        """
        k = k or self.config.iw_samples
        x = x.to(self.device)
        if cond is not None:
            self.check_condition(cond, x.shape[0])
            cond = cond.to(self.device)
        out = []
        per_chunk = max(1, 1024 // k)
        for s in range(0, x.shape[0], per_chunk):
            xb = x[s:s + per_chunk]                                                   # (b, C, H, W)
            b = xb.shape[0]
            cb = self.condition_for_network(None if cond is None else cond[s:s + per_chunk], b)  # (b, cond_dim) or None
            mu, log_var = self.encode(xb, cb)                                         # (b, D) each
            z = gaussian_sample(mu.unsqueeze(1).expand(b, k, -1), log_var.unsqueeze(1).expand(b, k, -1))  # (b, k, D)
            xk = xb.unsqueeze(1).expand(b, k, *xb.shape[1:]).reshape(b * k, *xb.shape[1:])
            ck = None if cb is None else cb.repeat_interleave(k, dim=0)              # (b k, cond_dim), as xk
            log_px = self.reconstruction_logp(xk, z.reshape(b * k, -1), ck).view(b, k)
            log_pz = self.prior_logp(z, cb)                                           # (b, k)
            log_qz = gaussian_logp(z, mu.unsqueeze(1), log_var.unsqueeze(1)).sum(-1)  # (b, k)
            out.append(torch.logsumexp(log_px + log_pz - log_qz, dim=1) - math.log(k))
        return torch.cat(out)

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, *, steps: int = 8) -> torch.Tensor:
        """Decoder means (uint8, (steps, C, H, W), CPU) on the line between the posterior means of
        uint8 images a and b (at the null condition for a conditional model)."""
        mu, _ = self.encode(to_float(torch.stack([a, b])).to(self.device))   # (2, D)
        w = torch.linspace(0, 1, steps, device=mu.device).unsqueeze(1)       # (steps, 1)
        z = (1 - w) * mu[0] + w * mu[1]                                       # (steps, D)
        mean, _ = self.decode(z)
        return to_uint8(mean.clamp(-1, 1))
