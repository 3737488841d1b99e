"""A Gaussian mixture density over R^D with learnable weights, means and full covariances.

Used as a learned prior over the latent of the VAE and the VAE-GAN (``prior=mixture``,
``zoo.nn.gaussian_vae``): fitted by
gradient descent on the negative log-likelihood of posterior samples, it models the aggregate
posterior q(z) that the decoder was trained on, where N(0, I) leaves regions that decode to
nothing. With ``cond_dim > 0`` (a conditional model's prior) the mixture weights follow the text
embedding: logits ``b + W c``, with W starting at zero, so the null condition (c = 0) gets the
caption-free weights b and the components are shared by every caption. The density is
torch.distributions' ``MixtureSameFamily`` of ``MultivariateNormal``s;
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

    def __init__(self, dim: int, components: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))                   # (K,) mixture weights
        self.means = nn.Parameter(torch.randn(components, dim))               # (K, D)
        self.log_diag = nn.Parameter(torch.zeros(components, dim))            # (K, D) log of the Cholesky diagonal
        self.lower = nn.Parameter(torch.zeros(components, dim, dim))          # (K, D, D), strictly lower part used
        # (K, cond_dim): how a text embedding moves the weights' logits; zero at the start
        self.cond_logits = nn.Parameter(torch.zeros(components, cond_dim)) if cond_dim > 0 else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a conditional prior saved before its weights followed the condition (it had no cond_logits)
        # is the same density with W = 0
        if self.cond_logits is not None and prefix + "cond_logits" not in state_dict:
            state_dict[prefix + "cond_logits"] = torch.zeros_like(self.cond_logits)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors of the component covariances, (K, D, D), lower-triangular, positive diagonal."""
        return torch.tril(self.lower, -1) + torch.diag_embed(self.log_diag.exp())

    def weight_logits(self, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the mixture weights: (K,), or (B, K) at text embeddings ``cond`` (B, cond_dim)."""
        if cond is None or self.cond_logits is None:
            return self.logits
        return self.logits + cond @ self.cond_logits.T

    def components(self) -> MultivariateNormal:
        """The K Gaussians, batch shape (K,)."""
        return MultivariateNormal(self.means, scale_tril=self.scale_tril())

    def distribution(self) -> MixtureSameFamily:
        """The caption-free density (the null condition's, for a conditional prior)."""
        return MixtureSameFamily(Categorical(logits=self.logits), self.components())

    def log_prob(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log density of z (B, ..., D): (B, ...); at ``cond`` (B, cond_dim) for a conditional prior
        (None: the null condition), one condition per leading index of z."""
        if cond is None or self.cond_logits is None:
            return self.distribution().log_prob(z)
        log_w = self.weight_logits(cond).log_softmax(-1)                     # (B, K)
        log_w = log_w.view(log_w.shape[0], *([1] * (z.dim() - 2)), -1)       # (B, 1.., K), as z's middle dims
        return torch.logsumexp(log_w + self.components().log_prob(z.unsqueeze(-2)), dim=-1)

    def _point(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Component k's mean + L eps: (n, D) from components k (n,) and standard normal eps (n, D)."""
        return self.means[k] + (self.scale_tril()[k] @ eps.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def draw(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """n draws (n, D) from torch's global RNG (in training, which the trainer seeds), at ``cond``
        (n, cond_dim) or the null condition; no gradient."""
        k = Categorical(logits=self.weight_logits(cond)).sample(() if cond is not None else (n,))  # (n,)
        eps = torch.randn(n, self.means.shape[1], device=self.means.device)  # (n, D)
        return self._point(k, eps)

    @torch.no_grad()
    def sample(self, gens: list[torch.Generator], cond: torch.Tensor | None = None) -> torch.Tensor:
        """One draw per generator, (len(gens), D), at ``cond`` (len(gens), cond_dim) or the null
        condition: the component by inverse CDF from one uniform, then mean + L eps, each from that
        image's own generator."""
        probs = self.weight_logits(cond).softmax(-1).expand(len(gens), -1)   # (B, K)
        k = rng.categorical(gens, probs).to(self.means.device)               # (B,)
        eps = rng.randn(gens, self.means.shape[1]).to(self.means.device)     # (B, D)
        return self._point(k, eps)
