"""Latent diffusion (Rombach et al. 2022): a KL-regularized autoencoder, then diffusion in its latent.

Stage "ae": the shared ConvEncoder/ConvDecoder compress 1x28x28 to a 4x7x7 Gaussian latent,
trained on an L1 pixel loss plus a small KL to N(0, I) (as LDM's KL autoencoders, without
their perceptual and adversarial terms). L1 because the decoder is used as a deterministic
map when sampling: it gives the per-pixel median, sharper than L2's mean, and needs no
decoder variance, which a discretized-likelihood decoder would spend capacity on.
Stage "diffusion": the autoencoder is frozen (the phase's optimizer only holds the UNet and
latents are encoded under no_grad); latents are multiplied by ``latent_scale`` = 1/std,
computed on training images when the stage begins and stored in the config, so it is
checkpointed and written to config.json. The same UNet, schedule and samplers as pixel
diffusion (``zoo.diffusion_process``, shared by both families) then run on the 4x7x7 latent,
and the decoder maps the result to pixels.

No likelihood: the L1 decoder defines no normalized p(x|z). With a discretized decoder
one could bound log p(x) by E_q[log p(x|z)] - KL(q(z|x) || p(z)), with -log p(z) itself
bounded by the diffusion bound on continuous (scaled) latents, but that bound would be
loose (the decoder is not trained as a likelihood) and is not implemented.
"""
from __future__ import annotations

import dataclasses

import torch

from ..api import Generator, ModelConfig, register_model
from ..diffusion_process import DiffusionMixin
from ..distributions import gaussian_sample, kl_standard_normal
from ..errors import ZooError
from ..images import to_float, to_uint8
from ..nn.conv import ConvDecoder, ConvEncoder, latent_side


@dataclasses.dataclass
class LatentDiffusionConfig(ModelConfig):
    lr: float = 1e-3                             # learning rate of the diffusion stage
    # second stage: the UNet on latents (zoo.nn.unet)
    widths: tuple[int, ...] = (32, 64)           # 7 -> 4; ~13 MFLOP forward
    blocks: int = 1                              # residual blocks per level, encoder and decoder each
    mid_blocks: int = 0                          # residual blocks on each side of the lowest-level attention
    attn_heads: int = 2
    dropout: float = 0.0
    # the noise process (zoo.schedules)
    timesteps: int = 1000                        # T
    schedule: str = "cosine"                     # "cosine" (Nichol & Dhariwal) | "linear" (Ho et al.)
    prediction: str = "v"                        # "v" | "epsilon"
    # the default sampler (results/diffusion/README.md)
    sampler: str = "dpm++2m-sde"                 # "ddpm" | "ddim" | "dpm++2m" | "dpm++2m-sde"
    steps: int = 20                              # default steps of the default sampler (ddpm: T)
    eta: float = 0.0                             # DDIM eta
    spacing: str = "trailing"                    # timestep spacing: "linspace" | "trailing" | "leading"
    clip: float = 0.0                            # latents are not clipped
    variance: str = "small"                      # fixed variance of p(x_{t-1}|x_t): "small" | "large"
    # the diffusion stage's loss
    loss_weight: str = "uniform"                 # weight of the simple loss over t: "uniform" | "min-snr"
    snr_gamma: float = 5.0                       # gamma of "min-snr"
    # first stage: autoencoder (shared ConvEncoder/ConvDecoder blocks)
    ae_widths: tuple[int, ...] = (16, 32, 64)   # 28 -> 14 -> 7
    ae_blocks: int = 0
    latent_channels: int = 4                     # latent is latent_channels x 7 x 7
    ae_kl_weight: float = 1e-5                   # KL weight against the L1 loss (both summed per image)
    ae_lr: float = 1e-3
    ae_fraction: float = 0.3                     # share of the training budget for the autoencoder stage
    latent_scale: float = 0.0                    # 1/std of training latents, set when stage "diffusion" begins
    scale_images: int = 10000                    # training images used to compute latent_scale


@register_model("latent_diffusion")
class LatentDiffusion(DiffusionMixin, Generator):
    """Diffusion in the 4x7x7 latent of a frozen KL autoencoder; no likelihood.

    ``nfe()`` counts UNet evaluations (the sampler's steps, twice that under classifier-free
    guidance); the decoder adds one cheaper pass. With ``cond_dim > 0`` only the diffusion UNet
    takes the text embedding: the autoencoder stage is unconditional and ignores ``cond``.
    """

    Config = LatentDiffusionConfig
    likelihood = "none"
    guidance = True
    has_latent = True
    stages = {"ae": ("ae",), "diffusion": ("diffusion",)}

    # the recipe at every budget: batch 32 for both stages (training is step-limited under a FLOP
    # budget) and Min-SNR-5 loss weighting of the diffusion stage (Hang et al. 2023); the sweeps behind
    # it are in results/latent_diffusion/README.md and results/diffusion/README.md ("Min-SNR")
    budget_rules = ((float("inf"), {"train.batch_size": 32, "loss_weight": "min-snr"}),)
    # the size axis (Generator.size_fields): both stages: the autoencoder and the UNet
    size_fields = {"ae_widths": 4, "widths": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md
    size_rule = (0.092, 5.335)
    # the depth axis: the UNet's residual blocks per level (the autoencoder has none to count)
    depth_fields = {"blocks": 1}

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"ae_widths": (8, 8, 8), "widths": (16,), "timesteps": 50, "steps": 5,
                             "scale_images": 256, **fields})

    def __init__(self, config: LatentDiffusionConfig):
        c = config
        self._h = latent_side(c.image_size, c.ae_widths)
        if not 0 < c.ae_fraction < 1:
            raise ZooError(f"ae_fraction must be in (0, 1), got {c.ae_fraction}")
        super().__init__(config)  # the schedule and the UNet first, then the autoencoder
        self.encoder = ConvEncoder(c.channels, 2 * c.latent_channels, tuple(c.ae_widths), c.ae_blocks)
        self.decoder = ConvDecoder(c.latent_channels, c.channels, tuple(c.ae_widths), c.ae_blocks)

    def latent_shape(self) -> tuple[int, int, int]:
        """The autoencoder's latent: (latent_channels, h, h)."""
        return (self.config.latent_channels, self._h, self._h)

    @property
    def scale(self) -> float:
        """The latent scale factor (1.0 before the diffusion stage has computed it)."""
        return self.config.latent_scale or 1.0

    # ---- the autoencoder -----------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) in [-1,1] -> posterior mean and log-variance, each (B, zc, h, h), unscaled."""
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent (B, zc, h, h) -> images (B,C,H,W) (not clamped)."""
        return self.decoder(z)

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent (B, zc, h, h) -> images (B,C,H,W) (not clamped)."""
        return self.decode(z / self.scale)

    # ---- training ------------------------------------------------------------------------
    def stage_fractions(self):
        return {"ae": self.config.ae_fraction, "diffusion": 1.0 - self.config.ae_fraction}

    def param_groups(self):
        return {"ae": list(self.encoder.parameters()) + list(self.decoder.parameters()),
                "diffusion": list(self.unet.parameters())}

    def configure_optimizer(self, phase, params):
        lr = self.config.ae_lr if phase == "ae" else self.config.lr
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))

    @torch.no_grad()
    def begin_stage(self, stage, images):
        """Stage "diffusion": set config.latent_scale = 1/std of posterior samples of training latents."""
        if stage != "diffusion":
            return
        n = min(self.config.scale_images, images.shape[0])
        idx = torch.linspace(0, images.shape[0] - 1, n, device=images.device).round().long()  # an even spread
        was_training = self.training
        self.eval()
        zs = [self._posterior_sample(to_float(images[idx[s:s + 512]]).to(self.device)) for s in range(0, n, 512)]
        self.train(was_training)
        std = torch.cat(zs).std().item()
        if not std > 0:
            raise ZooError(f"latent std is {std}: the autoencoder stage collapsed")
        self.config.latent_scale = 1.0 / std

    def _posterior_sample(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_var = self.encode(x)
        return gaussian_sample(mu, log_var)                                 # (B, zc, h, h)

    def loss(self, x, cond=None, *, phase="ae"):
        if phase == "ae":
            mu, log_var = self.encode(x)                                    # (B, zc, h, h) each
            z = gaussian_sample(mu, log_var)
            rec = self.decode(z)                                            # (B, C, H, W)
            l1 = (rec - x).abs().flatten(1).sum(1)                          # (B,)
            kl = kl_standard_normal(mu, log_var).flatten(1).sum(1)          # (B,)
            dims = x[0].numel()
            loss = (l1 + self.config.ae_kl_weight * kl).mean() / dims
            return {"loss": loss, "l1": l1.mean().detach() / dims, "kl": kl.mean().detach() / mu[0].numel(),
                    "mse": ((rec.detach().clamp(-1, 1) - x) ** 2).mean()}
        if phase == "diffusion":
            with torch.no_grad():                                           # the autoencoder is frozen
                z0 = self._posterior_sample(x) * self.scale
            return self.diffusion_loss(z0, cond)                            # prompt dropout inside
        raise ZooError(f"unknown phase {phase!r} for latent_diffusion")

    # ---- latent --------------------------------------------------------------------------
    @torch.no_grad()
    def interpolate(self, a, b, *, steps=8):
        """Decode points on the line between the autoencoder posterior means of a and b."""
        mu, _ = self.encode(to_float(torch.stack([a, b])).to(self.device))  # (2, zc, h, h)
        w = torch.linspace(0, 1, steps, device=mu.device).view(-1, 1, 1, 1)  # (steps, 1, 1, 1)
        return to_uint8(self.decode((1 - w) * mu[0] + w * mu[1]).clamp(-1, 1))
