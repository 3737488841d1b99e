"""DCGAN-style generator against a spectrally normalised discriminator (no likelihood).

Two optimizer phases per step, each recomputing its own forward pass:
  "disc"  D on real images and on generator samples drawn under no_grad (so detached),
  "gen"   G through D, with D's parameters frozen for that forward (no gradient is spent on them).
Loss ``"ns"`` is the non-saturating loss of Goodfellow et al. 2014; ``"hinge"`` the hinge loss of
Lim & Ye 2017 / Miyato et al. 2018. An optional R1 penalty (Mescheder et al. 2018) on real images
is off by default: every layer of D is already spectrally normalised, which bounds its Lipschitz
constant, and R1's double backward through D adds FLOPs to the disc phase that a fixed training
budget spends on more steps instead (results/gan/README.md, "Hinge loss and R1").

Adam with beta1 = 0.5 and a learning rate of 5e-4 for both networks: the FLOP budget buys only
about 930 steps at batch 128, and spectral normalisation keeps D stable over a wide range of
learning rates (Miyato et al. 2018, up to 1e-3), so the default is on the fast side of the usual 2e-4.

The generator uses GroupNorm rather than BatchNorm: sample i then never depends on the rest of
the batch, and the EMA copy of the weights the trainer samples from needs no BatchNorm running
statistics re-estimated for the averaged weights.

Conditional (``cond_dim > 0``), on a text embedding c (B, cond_dim): the generator takes c at its
input, fc(z) + W c (the first layer applied to the concatenation [z, c], as in Mirza & Osindero
2014), and at every GroupNorm by FiLM (conditional normalisation, as the conditional BN of the
generators of Miyato & Koyama 2018); D is their projection discriminator, D(x, c) =
psi(phi(x)) + <V c, phi(x)> (``zoo.nn.conv.Discriminator``). Both phases judge every image at its
own condition: the real images at the batch's conditions (after prompt dropout, drawn anew in each
phase) and the fakes at the same conditions they were generated for. The null condition (zeros,
what ``generate`` uses without a prompt) is trained by that dropout: there ``V c`` vanishes and D
is the unconditional critic.

The adversarial losses, the R1 penalty, the discriminator phase, the freezing of D and the
optimizers are ``zoo.nn.adversarial``'s (shared with the VAE-GAN); the mode-collapse check
used on the trained runs is ``zoo.metrics.collapse``.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .. import rng
from ..api import Generator, ModelConfig, halvings, register_model
from ..errors import ZooError
from ..nn.adversarial import (adversarial_optimizer, check_adversarial_config,
                              discriminator_phase, frozen, gen_loss)
from ..nn.conv import Discriminator, FiLM, expect_cond, groups_for, run_stack


@dataclasses.dataclass
class GANConfig(ModelConfig):
    lr: float = 5e-4                          # generator learning rate
    # the adversarial game (zoo.nn.adversarial)
    loss: str = "ns"                          # "ns" (non-saturating) | "hinge"
    r1_gamma: float = 0.0                     # weight of the R1 penalty gamma/2 E|grad_x D(x)|^2 on real images; 0: off
    spectral_norm: bool = True                # spectral normalisation of every discriminator layer
    lr_d: float = 5e-4                        # discriminator learning rate
    beta1: float = 0.5                        # Adam betas of both phases
    beta2: float = 0.99
    # the networks
    latent_dim: int = 64
    g_widths: tuple[int, ...] = (64, 32, 16)  # generator channels per level, coarse to fine (7 -> 14 -> 28)
    d_widths: tuple[int, ...] = (32, 64)      # discriminator channels per stride-2 conv (28 -> 14 -> 7)


class DCGANGenerator(nn.Module):
    """z (B, D) -> images (B, C, H, W) in (-1, 1): linear to the coarsest map, then
    [GroupNorm, ReLU, 4x4 stride-2 ConvTranspose] per level, then GroupNorm, ReLU, 3x3 conv, tanh.
    After :meth:`add_conditioning` it also takes ``cond`` (B, cond_dim): added through a linear map
    to the first layer's output and modulating every GroupNorm (FiLM)."""

    def __init__(self, latent_dim: int, out_ch: int, image_size: int, widths: tuple[int, ...]):
        super().__init__()
        up = 2 ** (len(widths) - 1)
        if image_size % up:
            raise ZooError(f"image_size {image_size} is not divisible by {up} ({len(widths)} generator levels)")
        self.base, self.w0 = image_size // up, widths[0]
        self.fc = nn.Linear(latent_dim, widths[0] * self.base * self.base)
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.GroupNorm(groups_for(cin), cin), nn.ReLU(),
                       nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]  # upsample x2
        layers += [nn.GroupNorm(groups_for(widths[-1]), widths[-1]), nn.ReLU(),
                   nn.Conv2d(widths[-1], out_ch, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.cond_in = self.film = None   # conditioning layers, after add_conditioning

    def add_conditioning(self, cond_dim: int) -> None:
        """Make the generator take ``cond`` (B, cond_dim): ``cond_in`` (fc on [z, cond] is
        fc(z) + cond_in(cond)) and ``film``."""
        self.cond_in = nn.Linear(cond_dim, self.fc.out_features, bias=False)
        self.film = FiLM(cond_dim, self.net)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        expect_cond(self.film is not None, cond, "generator")
        h = self.fc(z)                                                  # (B, w0 h w)
        if cond is not None:
            h = h + self.cond_in(cond)
        h = h.view(z.shape[0], self.w0, self.base, self.base)           # (B, w0, h, w)
        return run_stack(self.net, self.film, h, cond)                  # (B, C, H, W)


def truncated_normal(gens: list[torch.Generator], dim: int, bound: float | None) -> torch.Tensor:
    """(B, dim) standard normal draws, or draws truncated to [-bound, bound] by inverse CDF
    (one uniform per entry, so each row depends only on its own generator)."""
    if bound is None:
        return rng.randn(gens, dim)
    if not bound > 0:
        raise ZooError(f"truncation must be > 0, got {bound}")
    u = rng.rand(gens, dim, dtype=torch.float64)                           # (B, dim)
    lo = torch.special.ndtr(torch.tensor(-float(bound), dtype=torch.float64, device=u.device))
    return torch.special.ndtri(lo + u * (1 - 2 * lo)).float()


@register_model("gan")
class GAN(Generator):
    """DCGAN-style GAN with a spectral-norm discriminator, non-saturating or hinge loss."""

    Config = GANConfig
    phases = ("disc", "gen")
    likelihood = "none"

    # the recipe at every budget: batch 32 (training is step-limited under a FLOP budget) and the hinge
    # loss; the sweeps behind it are in results/gan/README.md ("Recipe for the budget", "Hinge loss and R1")
    budget_rules = ((float("inf"), {"train.batch_size": 32, "loss": "hinge"}),)
    # the size axis (Generator.size_fields): generator and discriminator
    size_fields = {"g_widths": 4, "d_widths": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md (every minimum well below the default size: 0.1x to 0.3x)
    size_rule = (0.414, 4.546)

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"latent_dim": 8, "g_widths": (16, 8, 8), "d_widths": (8, 16), **fields})

    @classmethod
    def lower_resolution_config(cls, config: GANConfig, factor: int) -> GANConfig:
        """Drop the log2(factor) finest generator levels (``g_widths`` is coarse to fine), so the
        seed map keeps its side (7x7 for 28 / factor images); unchanged with no level to spare."""
        k = halvings(factor)
        if 0 < k < len(config.g_widths):
            return dataclasses.replace(config, g_widths=config.g_widths[:-k])
        return config

    def __init__(self, config: GANConfig):
        super().__init__(config)
        c = config
        check_adversarial_config(c)
        self.gen = DCGANGenerator(c.latent_dim, c.channels, c.image_size, c.g_widths)
        self.disc = Discriminator(c.channels, c.image_size, c.d_widths, spectral_norm=c.spectral_norm)
        if self.is_conditional:  # after every other module, so those draw their unconditional initial weights
            self.disc.add_conditioning(c.cond_dim)
            self.gen.add_conditioning(c.cond_dim)

    def param_groups(self):
        return {"disc": list(self.disc.parameters()), "gen": list(self.gen.parameters())}

    def configure_optimizer(self, phase, params):
        return adversarial_optimizer(self.config, phase, params)

    def loss(self, x, cond=None, *, phase="disc"):
        c, b = self.config, x.shape[0]
        z = torch.randn(b, c.latent_dim, device=x.device)                 # (B, D)
        # the batch's conditions after prompt dropout (B, cond_dim); None for an unconditional model
        # (which refuses a cond); the fakes are made for them and judged at them
        cond = self.condition_for_training(cond, b)
        if phase == "disc":
            with torch.no_grad():
                fake = self.gen(z, cond)                                   # (B, C, H, W), detached
            return discriminator_phase(self.disc, x, fake, c, real_cond=cond, fake_cond=cond)
        if phase == "gen":
            fake = self.gen(z, cond)                                       # (B, C, H, W)
            with frozen(self.disc):
                d_fake = self.disc(fake, cond)                             # (B,)
            loss = gen_loss(c.loss, d_fake)
            return {"loss": loss, "d_fake": d_fake.mean().detach()}
        raise ZooError(f"unknown phase {phase!r} for gan (phases: disc, gen)")

    def generate(self, gens, cond=None, *, truncation: float | None = None):
        """Decode z ~ N(0, I), or a normal truncated to [-truncation, truncation] per coordinate, at
        ``cond`` (the null condition when None for a conditional model)."""
        z = truncated_normal(gens, self.config.latent_dim, truncation)     # (B, D)
        return self.gen(z, self.condition_for_network(cond, len(gens)))
