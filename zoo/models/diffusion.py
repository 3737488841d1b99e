"""Pixel-space diffusion (DDPM, Ho et al. 2020) with DDIM and DPM-Solver++(2M) samplers (ODE and SDE;
the default is 20 steps of the SDE solver with trailing timestep spacing).

Three parts kept apart: the network (``zoo.nn.unet.UNet``), the noise process and the
samplers (``zoo.schedules``), tied to the Generator contract by ``zoo.diffusion_process``
(shared with latent diffusion). This file adds what is pixel diffusion's own: its config,
the identity map to pixels and the variational bound. Training minimises the simple loss
||target - net(x_t, t)||^2 with t uniform over the T training steps and target v (default)
or epsilon.

Why v by default: with the cosine schedule alpha_bar(T-1) ~ 2e-9, so an epsilon model's x0
estimate (x_t - sqrt(1 - ab) eps) / sqrt(ab) multiplies its errors by up to ~2e4 near t = T, and
the deterministic few-step samplers (DDIM, DPM-Solver++) step along that estimate. v (Salimans &
Ho 2022) gives x0 = sqrt(ab) x_t - sqrt(1 - ab) v, well conditioned at every t.
``prediction="epsilon"`` remains available.

``log_prob`` is the variational bound of Ho et al. eq. 5 for the DDPM ancestral model with
fixed variances: L_T + sum_{t>=2} L_{t-1} + L_0, with a discretized Gaussian decoder at t=1
(nats per image over 8-bit pixels). By default all T terms are evaluated (T network
evaluations per image); ``vlb_terms=K`` (or ``log_prob(x, terms=K)``) instead uses a
stratified estimate of the sum over t (K strata, one uniformly drawn t per stratum and image,
weighted by the stratum size): an unbiased estimate of the same bound, with more variance.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..api import Generator, ModelConfig, register_model
from ..diffusion_process import DiffusionMixin
from ..distributions import discretized_gaussian_logp
from ..errors import ZooError


@dataclasses.dataclass
class DiffusionConfig(ModelConfig):
    lr: float = 1e-3
    # the UNet (zoo.nn.unet)
    widths: tuple[int, ...] = (8, 16, 32)   # UNet channels per level (28 -> 14 -> 7); ~22 MFLOP forward
    blocks: int = 1                         # residual blocks per level, encoder and decoder each
    mid_blocks: int = 1                     # residual blocks on each side of the lowest-level attention
    attn_heads: int = 2
    dropout: float = 0.0
    # the noise process (zoo.schedules)
    timesteps: int = 1000                   # T
    schedule: str = "cosine"                # "cosine" (Nichol & Dhariwal) | "linear" (Ho et al.)
    prediction: str = "v"                   # "v" (see the module docstring) | "epsilon"
    # the default sampler: 20 steps of the SDE solver with trailing spacing (results/diffusion/README.md)
    sampler: str = "dpm++2m-sde"            # "ddpm" | "ddim" | "dpm++2m" | "dpm++2m-sde"
    steps: int = 20                         # default steps of the default sampler (ddpm: T)
    eta: float = 0.0                        # DDIM eta
    spacing: str = "trailing"               # timestep spacing: "linspace" | "trailing" | "leading"
    clip: float = 1.0                       # clamp predicted x0 to [-clip, clip] when sampling (0: off)
    variance: str = "small"                 # fixed variance of p(x_{t-1}|x_t): "small" (beta tilde) | "large" (beta)
    # the training loss
    loss_weight: str = "uniform"            # weight of the simple loss over t: "uniform" | "min-snr" (Hang et al. 2023)
    snr_gamma: float = 5.0                  # gamma of "min-snr" (the paper's default)
    # the likelihood
    vlb_terms: int = 0                      # log_prob: 0 = all T terms; K = stratified estimate with K terms


@register_model("diffusion")
class Diffusion(DiffusionMixin, Generator):
    """Pixel-space DDPM with a UNet noise predictor; likelihood is the variational bound (eq. 5).
    With ``cond_dim > 0`` it is text-conditioned, with classifier-free guidance (``zoo.diffusion_process``)."""

    Config = DiffusionConfig
    likelihood = "bound"
    guidance = True

    # the recipe at every budget: batch 32 (training is step-limited under a FLOP budget) and Min-SNR-5
    # loss weighting (Hang et al. 2023); the sweeps behind it are in results/diffusion/README.md
    # ("Recipe for the budget", "Min-SNR")
    budget_rules = ((float("inf"), {"train.batch_size": 32, "loss_weight": "min-snr"}),)
    # the size axis (Generator.size_fields): the UNet
    size_fields = {"widths": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md; its exponent's standard error is large (0.55: the 3 and 10 TFLOP
    # minima lie close together)
    size_rule = (0.865, 4.551)
    # the depth axis: the UNet's residual blocks per level and around its middle attention
    depth_fields = {"blocks": 1, "mid_blocks": 0}

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"widths": (4, 8, 8), "mid_blocks": 0, "timesteps": 50, "steps": 5, **fields})

    def latent_shape(self) -> tuple[int, int, int]:
        """The diffusion runs on the pixels: (C, H, W)."""
        c = self.config
        return (c.channels, c.image_size, c.image_size)

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """The identity: the diffusion space is the image."""
        return z

    def loss(self, x, cond=None, *, phase="main"):
        return self.diffusion_loss(x, cond)

    # ---- likelihood ----------------------------------------------------------------------
    def _model_logvar(self, t: torch.Tensor) -> torch.Tensor:
        """log of the fixed variance of p(x_{t-1} | x_t) for t >= 1, (B,) float64 on the CPU."""
        sch = self.schedule
        if self.config.variance == "large":
            return torch.log(sch.betas[t.cpu()])
        return torch.log(sch.posterior_variance(t, t - 1))

    @torch.no_grad()
    def log_prob(self, x, cond=None, *, terms: int | None = None):
        """Variational lower bound on log p(x) in nats per image (B,), Ho et al. 2020 eq. 5.

        terms: None -> config.vlb_terms; 0 (or >= T-1) evaluates every t; K > 0 uses the
        stratified unbiased estimate with K network evaluations for the sum over t >= 2.
        Uses the global RNG for x_t (and for t when stratified). A conditional model bounds
        log p(x | cond), cond (B, cond_dim), at the null condition when cond is None (no guidance).
        """
        sch, c = self.schedule, self.config
        x = x.to(self.device)
        T, B = sch.T, x.shape[0]
        cond = self.condition_for_network(cond, B)                                               # (B, cond_dim) | None
        if self.config.variance not in ("small", "large"):
            raise ZooError(f"unknown variance {self.config.variance!r}")
        terms = c.vlb_terms if terms is None else int(terms)
        if terms < 0:
            raise ZooError(f"terms must be >= 0, got {terms}")
        clip = c.clip or None
        # L_T = KL(q(x_T | x0) || N(0, I)), closed form
        ab_T = sch.alpha_bar(T - 1).item()
        prior_kl = 0.5 * (ab_T * x ** 2 + (1 - ab_T) - 1 - math.log(1 - ab_T))       # (B, C, H, W)
        total = prior_kl.flatten(1).sum(1).double()                                     # (B,)
        dev = x.device
        # sum over t = 1 .. T-1 (0-indexed; Ho's t = 2..T) of KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t))
        if terms == 0 or terms >= T - 1:
            plan = [(torch.full((B,), t, dtype=torch.long, device=dev), 1.0) for t in range(1, T)]
        else:
            edges = torch.linspace(1, T, terms + 1, device="cpu").round().long().tolist()  # strata [a, b)
            plan = [(torch.randint(a, b, (B,), device=dev), float(b - a)) for a, b in zip(edges, edges[1:])]
        for t, weight in plan:
            total += weight * self._kl_term(x, t, clip, cond)
        # L_0 = -log p(x0 | x_1): discretized Gaussian decoder centred on the x0 prediction
        t0 = torch.zeros(B, dtype=torch.long, device=dev)
        x_1 = sch.add_noise(x, torch.randn_like(x), t0)
        x0_hat, _ = sch.split(self.denoiser(x_1, t0, cond), x_1, t0, c.prediction, clip)
        dec_var = sch.posterior_variance(1, 0).item()  # beta tilde of the next step (improved-DDPM convention)
        log_std = torch.full_like(x, 0.5 * math.log(dec_var))
        total -= discretized_gaussian_logp(x, x0_hat, log_std).flatten(1).sum(1).double()
        return -total

    def _kl_term(self, x0: torch.Tensor, t: torch.Tensor, clip: float | None,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t[, cond])) in nats per image at timesteps t (B,) >= 1."""
        sch = self.schedule
        x_t = sch.add_noise(x0, torch.randn_like(x0), t)
        x0_hat, _ = sch.split(self.denoiser(x_t, t, cond), x_t, t, self.config.prediction, clip)
        mean_q, var_q = sch.posterior(x0, x_t, t, t - 1)
        mean_p, _ = sch.posterior(x0_hat, x_t, t, t - 1)
        logvar_p = self._model_logvar(t).to(x0.device)                                 # (B,) float64
        logvar_q = torch.log(var_q).to(x0.device)
        const = 0.5 * (logvar_p - logvar_q + torch.exp(logvar_q - logvar_p) - 1)       # per dim, (B,)
        sq = ((mean_q - mean_p) ** 2).flatten(1).sum(1).double()                       # (B,)
        return const * x0[0].numel() + 0.5 * sq * torch.exp(-logvar_p)
