"""The diffusion process behind a Generator, shared by pixel and latent diffusion.

Three parts live apart: the network (``zoo.nn.unet.UNet``), the noise schedule and samplers
(``zoo.schedules``), and the families that say what space the process runs in. This module is
what the two diffusion families share in between, written once:

  :func:`simple_loss`       the simple training loss of any denoiser (also the cascade's decoder's);
  :class:`DiffusionMixin`   a mixin for a :class:`zoo.api.Generator`: it builds ``schedule`` and
                            ``unet`` over ``latent_shape()``, and gives the training loss
                            (``diffusion_loss``), sampler options, ``generate``, ``nfe`` and
                            ``trajectory``.

A family puts the mixin before ``Generator`` in its bases (``class Diffusion(DiffusionMixin,
Generator)``) and adds what is its own: its config, registration, loss, and the two hooks
``latent_shape`` (the shape of one sample in the diffusion space) and ``to_pixels`` (that
space -> images in [-1, 1]). Pixel diffusion adds its variational bound; latent diffusion its
autoencoder. Not a family module: it registers nothing and no family imports another.

Text conditioning (``config.cond_dim > 0``, see ``zoo.api``): the UNet takes the embedding through
its ``cond_mlp``; ``diffusion_loss`` applies prompt dropout (``Generator.condition_for_training``); the samplers'
model function is the classifier-free guided ``denoiser`` (``Generator.guided``) at the sampler
option ``guidance`` (default 1: plain conditional), which costs two network evaluations per step
(one call on a doubled batch) when it is neither 0 nor 1. A conditional UNet is not zero-initialised
(``zoo.nn.unet``), so the condition reaches the output from the first step. With ``cond_dim = 0``
the network, the draws and the calls are those of an unconditional model.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from . import rng
from .api import ModelConfig
from .errors import ZooError
from .images import to_uint8
from .nn.unet import UNet
from .schedules import NoiseSchedule, SamplerOutput, check_loss_weight, evenly_spaced, resolve_options, sample as run_sampler

TRAJECTORY_BATCH = 256  # samples per sampler run in trajectory()
DEFAULT_GUIDANCE = 1.0  # the classifier-free guidance scale when the sampler options give none


def sampler_options(config: ModelConfig, schedule: NoiseSchedule, opts: dict) -> dict:
    """The sampler options in effect for a config with the diffusion fields (``sampler``, ``steps``,
    ``eta``, ``spacing``, ``clip``, ``variance``): its defaults overridden by ``opts`` (unknown keys
    and bad values are a one-line ZooError)."""
    c = config
    defaults = {"sampler": c.sampler, "steps": c.steps, "eta": c.eta, "spacing": c.spacing,
                "clip": c.clip, "variance": c.variance}
    o = resolve_options(defaults, opts, schedule.T)
    o["clip"] = float(o["clip"]) if o["clip"] else None
    return o


def simple_loss(schedule: NoiseSchedule, config: ModelConfig, x0: torch.Tensor,
                denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The simple diffusion loss on x0 (B, ...): MSE of the epsilon/v prediction ``denoise(x_t, t)``,
    t ~ U{0..T-1}, weighted over t by ``config.loss_weight`` (uniform, or Min-SNR-gamma with
    ``config.snr_gamma``) for ``config.prediction``; "mse" is the unweighted MSE. Draws t, then the
    noise, from the global RNG (seeded by the trainer) on x0's device, before calling ``denoise``;
    whatever conditions the network (a text embedding, a low-resolution image) ``denoise`` closes over."""
    B = x0.shape[0]
    t = torch.randint(0, schedule.T, (B,), device=x0.device)              # (B,)
    noise = torch.randn_like(x0)
    x_t = schedule.add_noise(x0, noise, t)
    target = schedule.target(x0, noise, t, config.prediction)
    pred = denoise(x_t, t)
    w = schedule.loss_weight(t, config.prediction, config.loss_weight, config.snr_gamma)  # (B,) | None
    if w is None:
        mse = F.mse_loss(pred, target)
        return {"loss": mse, "mse": mse.detach()}
    per = (pred - target).pow(2).flatten(1).mean(1)                       # (B,)
    return {"loss": (w.to(per.device) * per).mean(), "mse": per.mean().detach()}


class DiffusionMixin:
    """Diffusion process + UNet for a Generator whose config has the diffusion fields: the UNet's
    ``widths``, ``blocks``, ``mid_blocks``, ``attn_heads``, ``dropout``; the process's ``timesteps``,
    ``schedule``, ``prediction``; the sampler's (see :func:`sampler_options`); the loss's
    ``loss_weight``, ``snr_gamma`` (each family declares them, with its defaults, in its own config).

    Hooks for the family: ``latent_shape()`` (called in ``__init__``, before the UNet exists)
    and ``to_pixels(z)``.
    """

    config: ModelConfig

    def __init__(self, config) -> None:
        super().__init__(config)  # the Generator
        self.schedule = NoiseSchedule(config.schedule, config.timesteps)
        # bad settings fail here in one line, before any training (not at sampling time, after it)
        check_loss_weight(config.loss_weight, config.snr_gamma, config.prediction)
        sampler_options(config, self.schedule, {})
        ch = self.latent_shape()[0]
        cond_dim = getattr(config, "cond_dim", 0)
        self.unet = UNet(ch, ch, tuple(config.widths), config.blocks, config.attn_heads,
                         dropout=config.dropout, mid_blocks=config.mid_blocks,
                         cond_dim=cond_dim)

    # ---- hooks ---------------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one sample in the space the diffusion runs in."""
        raise NotImplementedError

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Map a batch in the diffusion space (B, *latent_shape) to images (B, C, H, W) in [-1, 1]."""
        raise NotImplementedError

    # ---- training ------------------------------------------------------------------------
    def diffusion_loss(self, x0: torch.Tensor, cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """:func:`simple_loss` of this model's ``denoiser`` on x0 (B, *latent_shape).

        ``cond`` (B, cond_dim): the batch's text embeddings, with prompt dropout applied here (a
        conditional model only: an unconditional one ignores it, as it did the class labels)."""
        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # prompt dropout draws from the global RNG after t and the noise
            c = self.condition_for_training(cond, x0.shape[0]) if self.is_conditional else None   # (B, cond_dim) | None
            return self.denoiser(x_t, t, c)
        return simple_loss(self.schedule, self.config, x0, denoise)

    # ---- sampling ------------------------------------------------------------------------
    def sampler_options(self, **opts) -> dict:
        """The sampler options in effect: the config's defaults overridden by ``opts``, plus
        ``guidance`` (the classifier-free guidance scale, a finite number >= 0; default 1)."""
        opts = dict(opts)
        w = opts.pop("guidance", None)
        o = sampler_options(self.config, self.schedule, opts)
        try:
            o["guidance"] = DEFAULT_GUIDANCE if w is None else float(w)
        except (TypeError, ValueError):
            raise ZooError(f"guidance must be a number, got {w!r}") from None
        if not 0 <= o["guidance"] < math.inf:
            raise ZooError(f"guidance must be a finite number >= 0, got {w}")
        return o

    def denoiser(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The network: epsilon or v for x_t (B, *latent_shape), t (B,) and, for a conditional model,
        cond (B, cond_dim) (None: an unconditional model's call)."""
        if cond is None:
            return self.unet(x_t, t)
        return self.unet(x_t, t, cond=cond)

    def guided_denoiser(self, cond: torch.Tensor | None, guidance: float):
        """The model function the samplers call, ``net(x_t, t)``: the classifier-free guided
        ``denoiser`` at scale ``guidance`` for ``cond`` (None: the null condition, one evaluation)."""
        def net(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.guided(self.denoiser, (x_t, t), cond, guidance)
        return net

    def run_sampler(self, gens: list[torch.Generator], keep=(), cond: torch.Tensor | None = None,
                    **opts) -> SamplerOutput:
        """One sampler run in the diffusion space, its draws on the model's device; ``cond``
        (len(gens), cond_dim) or None (the null condition)."""
        o = self.sampler_options(**opts)
        net = self.guided_denoiser(cond, o.pop("guidance"))
        with rng.device_scope(self.device):
            return run_sampler(net, self.latent_shape(), gens, self.schedule,
                               prediction=self.config.prediction, keep=keep, **o)

    def generate(self, gens: list[torch.Generator], cond: torch.Tensor | None = None, **opts) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1]: a sampler run, mapped to pixels; ``cond`` (B, cond_dim)
        or None (the null condition); the sampler option ``guidance`` is the CFG scale."""
        return self.to_pixels(self.run_sampler(gens, cond=cond, **opts).x).clamp(-1, 1)

    def nfe(self, **opts) -> int:
        """UNet evaluations per sample: the sampler's steps (every sampler makes one per step), twice
        that for a conditional model under guidance other than 0 and 1 (the null and the conditional
        prediction; sampling at the null condition, ``cond=None``, still makes one per step)."""
        o = self.sampler_options(**opts)
        per_step = 2 if self.is_conditional and o["guidance"] not in (0.0, 1.0) else 1
        return per_step * o["steps"]

    @torch.no_grad()
    def trajectory(self, n: int, *, seed: int = 0, frames: int = 8, **opts) -> torch.Tensor:
        """uint8 (n, frames, C, H, W) on the CPU: predicted x0 at evenly spaced steps; the last
        frame is the sample (image i uses only the generator of (seed, i), as in ``sample``). A
        conditional model runs at the null condition (unconditional)."""
        keep = evenly_spaced(self.sampler_options(**opts)["steps"], frames)
        out = []
        was_training = self.training
        self.eval()
        try:
            for _, gens in rng.batches(seed, n, TRAJECTORY_BATCH):
                res = self.run_sampler(gens, keep=keep, **opts)
                strip = torch.stack([self.to_pixels(res.x0[k]).clamp(-1, 1) for k in keep], dim=1)
                out.append(to_uint8(strip))                                   # (b, frames, C, H, W)
        finally:
            self.train(was_training)
        c = self.config
        return torch.cat(out) if out else torch.empty(0, frames, c.channels, c.image_size, c.image_size,
                                                      dtype=torch.uint8, device="cpu")
