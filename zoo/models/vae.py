"""Variational autoencoder with a discretized-logistic decoder over 8-bit pixels.

The networks, sampler, IWAE ``log_prob`` and ``interpolate`` are the Gaussian conv VAE of
``zoo.nn.gaussian_vae`` (shared with the VAE-GAN); this family trains it on the ELBO.
Encoder q(z|x) = N(mu, diag(sigma^2)); decoder p(x|z) = per-pixel discretized logistic, so
``log_prob`` (an importance-weighted bound, Burda et al. 2016) is in the same discrete-pixel
units as the exact-likelihood families.

Prior: N(0, I) (``prior=normal``), or with ``prior=mixture`` a learned prior, a full-covariance
Gaussian mixture fitted during training to the aggregate posterior q(z) (``zoo.nn.gaussian_vae``,
"the prior"): the two-stage idea of Dai & Wipf (2019) with the ex-post mixture of Ghosh et al.
(2020) as the second stage, fitted online. The ELBO still takes its KL to N(0, I), so the encoder
and decoder train exactly as with ``prior=normal``; the mixture only follows the q(z) that the
decoder learned to decode, and ``generate`` samples it where N(0, I) would also draw latents from
regions q(z) leaves empty. ``log_prob`` bounds the model that is sampled: its p(z) is the mixture.

With ``cond_dim > 0`` it is a conditional VAE (see ``zoo.nn.gaussian_vae``): q(z|x,c), p(x|z,c),
prior N(0, I) (or one mixture for every condition), trained on the ELBO of log p(x|c) with prompt
dropout, so the null condition gives the unconditional model.
"""
from __future__ import annotations

import dataclasses
import math

from ..api import Generator, ModelConfig, register_model
from ..distributions import gaussian_sample, kl_standard_normal
from ..nn.gaussian_vae import TINY_FIELDS, GaussianVAEMixin


@dataclasses.dataclass
class VAEConfig(ModelConfig):
    lr: float = 1e-3                        # Adam learning rate of the encoder and decoder
    widths: tuple[int, ...] = (16, 32, 64)  # channels per resolution level (28 -> 14 -> 7)
    blocks: int = 0                         # residual blocks per level (0: plain strided convs)
    latent_dim: int = 32
    iw_samples: int = 16                    # default k of the importance-weighted log_prob bound
    sample_mode: str = "mean"               # "mean": decoder mean; "sample": draw pixels from p(x|z)
    prior: str = "normal"                   # "normal": N(0, I); "mixture": a Gaussian mixture fitted to q(z) in training
    prior_components: int = 50              # components of the mixture prior
    prior_lr: float = 1e-2                  # Adam learning rate of the mixture's parameters


@register_model("vae")
class VAE(GaussianVAEMixin, Generator):
    """Gaussian-latent VAE trained on the ELBO; likelihood is the IWAE lower bound."""

    Config = VAEConfig
    likelihood = "bound"
    has_latent = True

    # the recipe at every budget: batch 32 (training is step-limited under a FLOP budget) and the
    # mixture prior; the sweeps behind it are in results/vae/README.md ("Recipe for the budget",
    # "Mixture prior")
    budget_rules = ((float("inf"), {"train.batch_size": 32, "prior": "mixture"}),)
    # the size axis (Generator.size_fields): encoder and decoder
    size_fields = {"widths": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md, through the minima at 1, 3, 10 and 30 TFLOP
    size_rule = (0.394, 5.156)

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{**TINY_FIELDS, **fields})

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.add_conditioning()  # FiLM layers, for cond_dim > 0 only, after the other modules
        self.add_prior()         # the mixture prior, for prior=mixture only, last

    def configure_optimizer(self, phase, params):
        """Adam at ``lr`` (the contract's default), the mixture prior's parameters (if any) at ``prior_lr``."""
        return self.with_prior_group(lambda ps: Generator.configure_optimizer(self, phase, ps), params)

    def loss(self, x, cond=None, *, phase="main"):
        cond = self.condition_for_training(cond, x.shape[0])              # (B, cond_dim) after prompt dropout, or None
        mu, log_var = self.encode(x, cond)                    # (B, D) each
        z = gaussian_sample(mu, log_var)                      # (B, D)
        rec = -self.reconstruction_logp(x, z, cond)           # (B,) nats
        kl = kl_standard_normal(mu, log_var).sum(1)           # (B,) nats
        dims = x[0].numel()
        neg_elbo = (rec + kl).mean() / dims                   # nats per dim
        out = {"loss": neg_elbo, "bpd_elbo": neg_elbo.detach() / math.log(2),
               "rec": rec.mean().detach() / dims, "kl": kl.mean().detach() / dims}
        return self.with_prior_fit(out, z, cond)              # the mixture prior follows q(z[|c])
