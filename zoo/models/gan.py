"""DCGAN-style generator against a spectrally normalised discriminator (no likelihood).

Two optimizer phases per step, each recomputing its own forward pass:
  "disc"  D on real images and on generator samples drawn under no_grad (so detached),
  "gen"   G through D, with D's parameters frozen for that forward (no gradient is spent on them).
Loss ``"ns"`` is the non-saturating loss of Goodfellow et al. 2014; ``"hinge"`` the hinge loss of
Lim & Ye 2017 / Miyato et al. 2018. An optional R1 penalty (Mescheder et al. 2018) on real images
is off by default: every layer of D is already spectrally normalised, which bounds its Lipschitz
constant, and R1's double backward through D costs 44% more FLOPs in the disc phase (25% of a
step at the default size), a share of the fixed training budget better spent on more steps.

Adam with beta1 = 0.5 and a learning rate of 5e-4 for both networks: the FLOP budget buys only
about 930 steps at batch 128, and spectral normalisation keeps D stable over a wide range of
learning rates (Miyato et al. 2018, up to 1e-3), so the default is on the fast side of the usual 2e-4.

The generator uses GroupNorm rather than BatchNorm: sample i then never depends on the rest of
the batch, and the EMA copy of the weights the trainer samples from needs no BatchNorm running
statistics re-estimated for the averaged weights.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..api import Generator, ModelConfig, register_model
from ..errors import ZooError
from ..nn.conv import Discriminator, groups_for

GAN_LOSSES = ("ns", "hinge")


@dataclasses.dataclass
class GANConfig(ModelConfig):
    latent_dim: int = 64
    g_widths: tuple[int, ...] = (64, 32, 16)  # generator channels per level, coarse to fine (7 -> 14 -> 28)
    d_widths: tuple[int, ...] = (32, 64)      # discriminator channels per stride-2 conv (28 -> 14 -> 7)
    loss: str = "ns"                          # "ns" (non-saturating) | "hinge"
    r1_gamma: float = 0.0                     # weight of the R1 penalty gamma/2 E|grad_x D(x)|^2; 0: off
    spectral_norm: bool = True                # spectral normalisation of every discriminator layer
    lr: float = 5e-4                          # generator learning rate
    lr_d: float = 5e-4                        # discriminator learning rate
    beta1: float = 0.5                        # Adam betas of both phases
    beta2: float = 0.99


class DCGANGenerator(nn.Module):
    """z (B, D) -> images (B, C, H, W) in (-1, 1): linear to the coarsest map, then
    [GroupNorm, ReLU, 4x4 stride-2 ConvTranspose] per level, then GroupNorm, ReLU, 3x3 conv, tanh."""

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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.w0, self.base, self.base)  # (B, w0, h, w)
        return self.net(h)                                              # (B, C, H, W)


@contextlib.contextmanager
def frozen(module: nn.Module):
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


def r1_penalty(disc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B,), mean over the batch of |grad_x D(x)|^2) with a graph for the backward."""
    # differentiate w.r.t. a non-leaf copy of x: FlopCounterMode's module hooks reject a leaf
    # input in autograd.grad (torch 2.x), and the trainer counts FLOPs under that mode
    x = x.detach().requires_grad_(True).clone()
    d = disc(x)                                                            # (B,)
    (g,) = torch.autograd.grad(d.sum(), x, create_graph=True)              # (B, C, H, W)
    return d, g.pow(2).flatten(1).sum(1).mean()


def truncated_normal(gens: list[torch.Generator], dim: int, bound: float | None) -> torch.Tensor:
    """(B, dim) standard normal draws, or draws truncated to [-bound, bound] by inverse CDF
    (one uniform per entry, so each row depends only on its own generator)."""
    if bound is None:
        return rng.randn(gens, dim)
    if not bound > 0:
        raise ZooError(f"truncation must be > 0, got {bound}")
    lo = torch.special.ndtr(torch.tensor(-float(bound), dtype=torch.float64))
    u = rng.rand(gens, dim, dtype=torch.float64)                           # (B, dim)
    return torch.special.ndtri(lo + u * (1 - 2 * lo)).float()


@register_model("gan")
class GAN(Generator):
    """DCGAN-style GAN with a spectral-norm discriminator, non-saturating or hinge loss."""

    Config = GANConfig
    phases = ("disc", "gen")
    likelihood = "none"

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"latent_dim": 8, "g_widths": (16, 8, 8), "d_widths": (8, 16), **fields})

    def __init__(self, config: GANConfig):
        super().__init__(config)
        c = config
        if c.loss not in GAN_LOSSES:
            raise ZooError(f"unknown GAN loss {c.loss!r} (choose {' or '.join(GAN_LOSSES)})")
        if c.r1_gamma < 0:
            raise ZooError(f"r1_gamma must be >= 0, got {c.r1_gamma}")
        self.gen = DCGANGenerator(c.latent_dim, c.channels, c.image_size, c.g_widths)
        self.disc = Discriminator(c.channels, c.image_size, c.d_widths, spectral_norm=c.spectral_norm)

    def param_groups(self):
        return {"disc": list(self.disc.parameters()), "gen": list(self.gen.parameters())}

    def configure_optimizer(self, phase, params):
        lr = self.config.lr_d if phase == "disc" else self.config.lr
        return torch.optim.Adam(params, lr=lr, betas=(self.config.beta1, self.config.beta2))

    def loss(self, x, labels=None, *, phase="disc"):
        c = self.config
        z = torch.randn(x.shape[0], c.latent_dim)                          # (B, D)
        if phase == "disc":
            with torch.no_grad():
                fake = self.gen(z)                                         # (B, C, H, W), detached
            if c.r1_gamma > 0:
                d_real, r1 = r1_penalty(self.disc, x)
            else:
                d_real, r1 = self.disc(x), torch.zeros(())
            d_fake = self.disc(fake)
            adv = disc_loss(c.loss, d_real, d_fake)
            return {"loss": adv + 0.5 * c.r1_gamma * r1, "adv": adv.detach(), "r1": r1.detach(),
                    "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
        if phase == "gen":
            fake = self.gen(z)
            with frozen(self.disc):
                d_fake = self.disc(fake)                                   # (B,)
            loss = gen_loss(c.loss, d_fake)
            return {"loss": loss, "d_fake": d_fake.mean().detach()}
        raise ZooError(f"unknown phase {phase!r} for gan (phases: disc, gen)")

    def generate(self, gens, labels=None, *, truncation: float | None = None):
        """Decode z ~ N(0, I), or a normal truncated to [-truncation, truncation] per coordinate."""
        z = truncated_normal(gens, self.config.latent_dim, truncation)     # (B, D)
        return self.gen(z)


# ---- mode-collapse check, used by the tests and on the trained runs ----------------------
def collapse_report(samples: torch.Tensor, real: torch.Tensor, *, max_share: float = 0.5,
                    min_std_ratio: float = 0.5) -> dict:
    """Diversity of uint8 ``samples`` (N,C,H,W) against uint8 ``real`` images of the data.

    ``std_ratio``: mean over pixels of the per-pixel std across samples, divided by the same for
    ``real`` (a collapsed generator repeats a few images, so its pixels barely vary: ratio -> 0).
    If ``zoo.metrics.features`` provides the ``fmnist-cnn`` classifier and the images are
    1x28x28, also the predicted class histogram of the samples and the largest class share.
    ``collapsed`` is True when std_ratio < min_std_ratio or max class share >= max_share.
    """
    def pix_std(u: torch.Tensor) -> float:
        return float((u.double() / 127.5 - 1).std(dim=0).mean())
    rep: dict = {"n": int(samples.shape[0]), "std_samples": pix_std(samples), "std_real": pix_std(real)}
    rep["std_ratio"] = rep["std_samples"] / max(rep["std_real"], 1e-12)
    collapsed = rep["std_ratio"] < min_std_ratio
    probs, why = _class_probs(samples)
    if probs is not None:
        hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1])
        rep["class_hist"] = hist.tolist()
        rep["max_class_share"] = float(hist.max()) / samples.shape[0]
        collapsed = collapsed or rep["max_class_share"] >= max_share
    else:
        rep["class_check"] = f"skipped: {why}"
    rep["collapsed"] = bool(collapsed)
    return rep


def _class_probs(images: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """(fmnist-cnn class probabilities (N, K) of uint8 images, "") or (None, why not)."""
    if tuple(images.shape[1:]) != (1, 28, 28):
        return None, "images are not 1x28x28"
    try:
        from ..metrics.features import get_extractor
    except ImportError:
        return None, "zoo.metrics.features is not installed"
    try:
        return get_extractor("fmnist-cnn").class_probs(images), ""
    except ZooError as e:  # e.g. classifier weights not trained yet
        return None, str(e)
