"""Variational autoencoder with a discretized-logistic decoder over 8-bit pixels.

The networks, sampler, IWAE ``log_prob`` and ``interpolate`` are the Gaussian conv VAE of
``zoo.nn.gaussian_vae`` (shared with the VAE-GAN); this family trains it on the ELBO.
Encoder q(z|x) = N(mu, diag(sigma^2)); decoder p(x|z) = per-pixel discretized logistic, so
``log_prob`` (an importance-weighted bound, Burda et al. 2016) is in the same discrete-pixel
units as the exact-likelihood families.

Prior: N(0, I) (``prior=normal``), or with ``prior=mixture`` a learned prior, a full-covariance
Gaussian mixture (``zoo.nn.mixture``) fitted during training, by its own Adam learning rate, to the
negative log-likelihood of the posterior samples z ~ q(z|x) of each batch, detached: the two-stage
idea of Dai & Wipf (2019) and the ex-post mixture of Ghosh et al. (2020), fitted online. The ELBO
still takes its KL to N(0, I), so the encoder and decoder train exactly as with ``prior=normal``;
the mixture only follows the aggregate posterior q(z) that the decoder learned to decode, and
``generate`` samples it where N(0, I) would also draw latents from regions q(z) leaves empty.
``log_prob`` bounds the model that is sampled: its p(z) is the mixture.

With ``cond_dim > 0`` it is a conditional VAE (see ``zoo.nn.gaussian_vae``): q(z|x,c), p(x|z,c),
prior N(0, I) (or one mixture for every condition), trained on the ELBO of log p(x|c) with prompt
dropout, so the null condition gives the unconditional model.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..api import Generator, ModelConfig, register_model
from ..distributions import gaussian_sample, kl_standard_normal
from ..errors import ZooError
from ..nn.gaussian_vae import TINY_FIELDS, GaussianVAEConfig, GaussianVAEMixin
from ..nn.mixture import GaussianMixture
from ..schedules import check_choice

PRIORS = ("normal", "mixture")


@dataclasses.dataclass
class VAEConfig(GaussianVAEConfig, ModelConfig):
    lr: float = 1e-3
    prior: str = "normal"          # "normal": N(0, I); "mixture": a Gaussian mixture fitted to q(z) in training
    prior_components: int = 50     # components of the mixture prior
    prior_lr: float = 1e-2         # Adam learning rate of the mixture's parameters


@register_model("vae")
class VAE(GaussianVAEMixin, Generator):
    """Gaussian-latent VAE trained on the ELBO; likelihood is the IWAE lower bound."""

    Config = VAEConfig
    likelihood = "bound"
    has_latent = True

    # step-limited at these budgets: at 1 TFLOP, batch 32 against the default 128 gave FID 41.5 against 42.5 and
    # 3.73 bits/dim against 3.91 (benchmarks/recipe_sweep.py, results/vae/README.md); the 10 TFLOP standard
    # table checks it on 3 seeds. Larger budgets keep it (untested there). The mixture prior beat N(0, I) on 3
    # seeds at 10 TFLOP (results/vae/README.md, "Mixture prior"), at a cost in recall.
    budget_rules = ((float("inf"), {"train.batch_size": 32, "prior": "mixture"}),)

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{**TINY_FIELDS, **fields})

    def __init__(self, config: VAEConfig):
        check_choice("VAE prior", config.prior, PRIORS)
        if config.prior == "mixture" and config.prior_components < 1:
            raise ZooError(f"prior_components must be >= 1, got {config.prior_components}")
        super().__init__(config)
        self.add_conditioning()  # FiLM layers, for cond_dim > 0 only, after the other modules
        # last, so that every other module draws the same initial weights as with prior=normal
        self.mixture = GaussianMixture(config.latent_dim, config.prior_components) if config.prior == "mixture" else None

    def configure_optimizer(self, phase, params):
        """Adam at ``lr``, the mixture prior's parameters (if any) at ``prior_lr``."""
        own = set() if self.mixture is None else {id(p) for p in self.mixture.parameters()}
        groups = [{"params": [p for p in params if id(p) not in own]}]
        if own:
            groups.append({"params": [p for p in params if id(p) in own], "lr": self.config.prior_lr})
        return torch.optim.Adam(groups, lr=self.config.lr, betas=(0.9, 0.99))

    def loss(self, x, cond=None, *, phase="main"):
        cond = self.loss_cond(cond, x.shape[0])              # (B, cond_dim) after prompt dropout, or None
        mu, log_var = self.encode(x, cond)                    # (B, D) each
        z = gaussian_sample(mu, log_var)                      # (B, D)
        rec = -self.reconstruction_logp(x, z, cond)           # (B,) nats
        kl = kl_standard_normal(mu, log_var).sum(1)           # (B,) nats
        dims = x[0].numel()
        neg_elbo = (rec + kl).mean() / dims                   # nats per dim
        out = {"loss": neg_elbo, "bpd_elbo": neg_elbo.detach() / math.log(2),
               "rec": rec.mean().detach() / dims, "kl": kl.mean().detach() / dims}
        if self.mixture is not None:  # the prior follows q(z); no gradient reaches the encoder
            prior_nll = -self.mixture.log_prob(z.detach()).mean() / dims
            out["loss"] = neg_elbo + prior_nll
            out["prior_nll"] = prior_nll.detach()
        return out
