"""A Gaussian mixture density over R^D with learnable weights, means and full covariances.

Used as a learned prior over the latent of the VAE and the VAE-GAN (``prior=mixture``,
``zoo.nn.gaussian_vae``): fitted by
gradient descent on the negative log-likelihood of posterior samples, it models the aggregate
posterior q(z) that the decoder was trained on, where N(0, I) leaves regions that decode to
nothing. The density is torch.distributions' ``MixtureSameFamily`` of ``MultivariateNormal``s;
this module only owns the parameters and a per-image-seeded sampler (torch.distributions samples
a batch from one global generator, and the zoo's samples must depend on their own seed only).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from .. import rng


class GaussianMixture(nn.Module):
    """K full-covariance Gaussians over R^D. At initialization the weights are equal, the means are
    standard normal draws (from torch's global RNG) and every covariance is I: unit Gaussians spread
    around the origin (about N(0, 2I) in all). ``lower`` is a full (K, D, D) tensor of which only the
    strictly lower triangle is used, so the parameter count overstates the free parameters."""

    def __init__(self, dim: int, components: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))                   # (K,) mixture weights
        self.means = nn.Parameter(torch.randn(components, dim))               # (K, D)
        self.log_diag = nn.Parameter(torch.zeros(components, dim))            # (K, D) log of the Cholesky diagonal
        self.lower = nn.Parameter(torch.zeros(components, dim, dim))          # (K, D, D), strictly lower part used

    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors of the component covariances, (K, D, D), lower-triangular, positive diagonal."""
        return torch.tril(self.lower, -1) + torch.diag_embed(self.log_diag.exp())

    def distribution(self) -> MixtureSameFamily:
        return MixtureSameFamily(Categorical(logits=self.logits),
                                 MultivariateNormal(self.means, scale_tril=self.scale_tril()))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of z (..., D): (...)."""
        return self.distribution().log_prob(z)

    @torch.no_grad()
    def sample(self, gens: list[torch.Generator]) -> torch.Tensor:
        """One draw per generator, (len(gens), D): the component by inverse CDF from one uniform, then
        mean + L eps, each from that image's own generator."""
        probs = self.logits.softmax(0).expand(len(gens), -1)                 # (B, K)
        k = rng.categorical(gens, probs).to(self.means.device)               # (B,)
        eps = rng.randn(gens, self.means.shape[1]).to(self.means.device)     # (B, D)
        return self.means[k] + (self.scale_tril()[k] @ eps.unsqueeze(-1)).squeeze(-1)
