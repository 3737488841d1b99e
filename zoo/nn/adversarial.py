"""Adversarial training pieces shared by the GAN and the VAE-GAN (written once, here).

What both families do the same way:
  - the check of the adversarial game's config fields (:func:`check_adversarial_config`); each
    family declares the fields (``loss``, ``r1_gamma``, ``spectral_norm``, ``lr_d``, ``beta1``,
    ``beta2``) in its own config;
  - the losses: non-saturating (``"ns"``, Goodfellow et al. 2014) or hinge (``"hinge"``, Lim & Ye
    2017 / Miyato et al. 2018) for D (:func:`disc_loss`) and for the generator (:func:`gen_loss`),
    and the R1 penalty on real images (:func:`r1_penalty`, Mescheder et al. 2018);
  - the whole discriminator phase given its real and (detached) fake images
    (:func:`discriminator_phase`), and :func:`frozen`, which keeps D's parameters out of the
    generator phase's graph;
  - the two phases' Adam optimizers (:func:`adversarial_optimizer`).

A conditional family passes its discriminator (a projection discriminator,
:class:`zoo.nn.conv.Discriminator` after ``add_conditioning``) each image's condition: the real
images' own, and for each fake the one it was made for, so the two phases of a step play the
same conditional game.

What differs stays in each family: how its fakes are made and what its generator phase adds.
Unlike the other ``zoo.nn`` modules this one holds losses; they are the
shared part of two families' objectives, and the rule is that no family imports another.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..api import ModelConfig
from ..errors import ZooError

GAN_LOSSES = ("ns", "hinge")


def check_adversarial_config(c: ModelConfig) -> None:
    """One-line ZooError for an unknown loss name or a negative R1 weight."""
    if c.loss not in GAN_LOSSES:
        raise ZooError(f"unknown GAN loss {c.loss!r} (choose {' or '.join(GAN_LOSSES)})")
    if c.r1_gamma < 0:
        raise ZooError(f"r1_gamma must be >= 0, got {c.r1_gamma}")


def adversarial_optimizer(c: ModelConfig, phase: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam for one phase: ``lr_d`` for "disc", the config's ``lr`` for the other; betas (beta1, beta2)."""
    lr = c.lr_d if phase == "disc" else c.lr
    return torch.optim.Adam(params, lr=lr, betas=(c.beta1, c.beta2))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Parameters of ``module`` do not require grad inside the block (autograd records this at
    forward time, so a backward after the block still skips them)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def disc_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from logits on real (B,) and fake (B',) images, a scalar."""
    if kind == "ns":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


def gen_loss(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from logits (B,) on its samples, a scalar."""
    return F.softplus(-d_fake).mean() if kind == "ns" else -d_fake.mean()


def judge(disc: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B,) of ``disc`` on images x (B, C, H, W): ``disc(x)``, or ``disc(x, cond)`` for a
    conditional discriminator given the images' conditions (B, cond_dim)."""
    return disc(x) if cond is None else disc(x, cond)


def r1_penalty(disc: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B,), mean over the batch of |grad_x D(x[, cond])|^2) with a graph for the backward."""
    # differentiate w.r.t. a non-leaf copy of x: FlopCounterMode's module hooks reject a leaf
    # input in autograd.grad (torch 2.x), and the trainer counts FLOPs under that mode
    x = x.detach().requires_grad_(True).clone()
    d = judge(disc, x, cond)                                               # (B,)
    (g,) = torch.autograd.grad(d.sum(), x, create_graph=True)              # (B, C, H, W)
    return d, g.pow(2).flatten(1).sum(1).mean()


def discriminator_phase(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, c: ModelConfig, *,
                        real_cond: torch.Tensor | None = None,
                        fake_cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The "disc" phase's losses: D on ``real`` (B, C, H, W) (with the R1 penalty when
    ``c.r1_gamma > 0``) and on ``fake`` (B', C, H, W), made by the caller without a graph.
    A conditional D also takes ``real_cond`` (B, cond_dim), the real images' conditions, and
    ``fake_cond`` (B', cond_dim), those the fakes were made for.

    Returns ``loss`` = adversarial loss + gamma/2 * R1, and the detached terms ``adv``, ``r1``,
    ``d_real`` and ``d_fake`` (mean logits) to log.
    """
    if c.r1_gamma > 0:
        d_real, r1 = r1_penalty(disc, real, real_cond)                     # (B,), scalar
    else:
        d_real, r1 = judge(disc, real, real_cond), torch.zeros((), device=real.device)
    d_fake = judge(disc, fake, fake_cond)                                  # (B',)
    adv = disc_loss(c.loss, d_real, d_fake)
    return {"loss": adv + 0.5 * c.r1_gamma * r1, "adv": adv.detach(), "r1": r1.detach(),
            "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
