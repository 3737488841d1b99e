"""Convolutional encoder/decoder blocks shared by the VAE, VAE-GAN, VQ-VAE and latent AE.

Resolution levels: ``widths=(32, 64, 128)`` means three levels, with a stride-2 downsample
between consecutive levels, so 28x28 becomes 7x7 (28 -> 14 -> 7).

Every convolution after the first is pre-activated (GroupNorm -> SiLU -> conv), the resampling
ones included, so ``blocks=0`` is a plain stack of strided convs with a nonlinearity between
each pair, not a linear map with one activation at the end.

Conditioning on an embedding ``cond`` (B, D): every block here is built unconditional, and
``add_conditioning(D)`` adds its conditioning layers afterwards, so that a family can create them
after all its other modules: the existing parameters then draw the same initial values as in the
unconditional model, and a model that never calls it (``cond_dim = 0``) is unchanged. The conv
stacks take the condition by :class:`FiLM` after each of their GroupNorms (adaptive group norm);
the :class:`Discriminator` by the projection of Miyato & Koyama (2018).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ZooError


def latent_side(image_size: int, widths) -> int:
    """Side of the grid ConvEncoder(widths) maps an image_size square to: one stride-2 step between
    consecutive levels. A one-line ZooError when image_size does not divide evenly."""
    levels = len(widths)
    down = 2 ** (levels - 1)
    if image_size % down:
        raise ZooError(f"image_size {image_size} is not divisible by {down} ({levels} levels)")
    return image_size // down


def pre_act(ch: int) -> list[nn.Module]:
    """GroupNorm -> SiLU over ``ch`` channels: what goes before every conv but the first."""
    return [nn.GroupNorm(groups_for(ch), ch), nn.SiLU()]


def groups_for(ch: int) -> int:
    """GroupNorm groups: 8 where it divides, else the largest divisor <= 8."""
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018) of a Sequential stack by a condition.

    Right after each GroupNorm directly in ``net`` (not those inside its residual blocks), the
    normalised map h (B, w, H, W) becomes ``h * (1 + scale) + shift`` with per-channel ``scale``
    and ``shift`` (B, w) linear in ``cond`` (B, cond_dim): the conditional normalisation of
    conditional BN / adaptive GroupNorm. One linear layer makes every site's (scale, shift).
    """

    def __init__(self, cond_dim: int, net: nn.Sequential):
        super().__init__()
        self.sites = tuple(i for i, m in enumerate(net) if isinstance(m, nn.GroupNorm))
        if not self.sites:
            raise ValueError("FiLM needs a stack with a GroupNorm to modulate")
        self.widths = [net[i].num_channels for i in self.sites]
        self.proj = nn.Linear(cond_dim, 2 * sum(self.widths))

    def forward(self, net: nn.Sequential, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``net(x)`` modulated by ``cond`` (B, cond_dim); ``net`` is the stack this FiLM was built for."""
        scale, shift = self.proj(cond).chunk(2, dim=1)                     # (B, sum widths) each
        mods = iter(zip(scale.split(self.widths, 1), shift.split(self.widths, 1)))
        for i, layer in enumerate(net):
            x = layer(x)
            if i in self.sites:
                s, t = next(mods)                                          # (B, w) each
                x = x * (1 + s[:, :, None, None]) + t[:, :, None, None]    # (B, w, H, W)
        return x


def expect_cond(conditional: bool, cond: torch.Tensor | None, what: str) -> None:
    """A ValueError unless ``cond`` is given exactly when the block (``what``) is conditional."""
    if conditional and cond is None:
        raise ValueError(f"this {what} is conditional: give cond (B, cond_dim)")
    if not conditional and cond is not None:
        raise ValueError(f"this {what} is unconditional: it takes no cond")


def run_stack(net: nn.Sequential, film: FiLM | None, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """``net(x)`` for an unconditional stack (``film`` and ``cond`` None), else modulated by ``film``
    at ``cond`` (B, cond_dim)."""
    expect_cond(film is not None, cond, "stack")
    return net(x) if film is None else film(net, x, cond)


class ResBlock(nn.Module):
    """Pre-activation residual block: GN -> SiLU -> conv3 -> GN -> SiLU -> conv3, plus skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1 = nn.GroupNorm(groups_for(cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.n2 = nn.GroupNorm(groups_for(cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) -> (B, cout, H, W)
        h = self.c1(torch.nn.functional.silu(self.n1(x)))
        h = self.c2(torch.nn.functional.silu(self.n2(h)))
        return self.skip(x) + h


class ConvEncoder(nn.Module):
    """(B, in_ch, H, W) -> (B, out_ch, H / 2**(L-1), W / 2**(L-1)) for L = len(widths)."""

    def __init__(self, in_ch: int, out_ch: int, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 1):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, widths[0], 3, padding=1)]
        for i, w in enumerate(widths):
            layers += [ResBlock(w, w) for _ in range(blocks)]
            if i + 1 < len(widths):
                layers += [*pre_act(w), nn.Conv2d(w, widths[i + 1], 4, stride=2, padding=1)]  # downsample x2
        layers += [*pre_act(widths[-1]), nn.Conv2d(widths[-1], out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.film = None   # FiLM after add_conditioning

    def add_conditioning(self, cond_dim: int) -> None:
        """Make the encoder take ``cond`` (B, cond_dim): FiLM after each level's pre-activation norm."""
        self.film = FiLM(cond_dim, self.net)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return run_stack(self.net, self.film, x, cond)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: (B, in_ch, h, w) -> (B, out_ch, h * 2**(L-1), w * 2**(L-1))."""

    def __init__(self, in_ch: int, out_ch: int, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 1):
        super().__init__()
        rev = tuple(reversed(widths))
        layers: list[nn.Module] = [nn.Conv2d(in_ch, rev[0], 3, padding=1)]
        for i, w in enumerate(rev):
            layers += [ResBlock(w, w) for _ in range(blocks)]
            if i + 1 < len(rev):
                layers += [*pre_act(w), nn.ConvTranspose2d(w, rev[i + 1], 4, stride=2, padding=1)]  # upsample x2
        layers += [*pre_act(rev[-1]), nn.Conv2d(rev[-1], out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.film = None   # FiLM after add_conditioning

    def add_conditioning(self, cond_dim: int) -> None:
        """Make the decoder take ``cond`` (B, cond_dim): FiLM after each level's pre-activation norm."""
        self.film = FiLM(cond_dim, self.net)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return run_stack(self.net, self.film, z, cond)


def spectral(layer: nn.Module, enabled: bool = True) -> nn.Module:
    """``layer`` with spectral normalisation (torch's parametrization, one power iteration per
    training forward) when ``enabled``, else ``layer`` unchanged."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


class Discriminator(nn.Module):
    """Conv critic shared by the GAN and the VAE-GAN: (B, C, H, W) -> logits (B,).

    One 4x4 stride-2 conv per entry of ``widths`` (28 -> 14 -> 7 for two), then a 3x3 conv at the
    last resolution whose activations are the *feature map* used for feature-space losses, then a
    linear layer on the flattened features. LeakyReLU(0.2) between layers, every layer spectrally
    normalised (Miyato et al. 2018) unless ``spectral_norm=False``. No batch statistics anywhere,
    so the logit of image i depends only on image i.

    Conditional (after :meth:`add_conditioning`): the projection discriminator of Miyato & Koyama
    (2018), their f(x, y) = y^T V phi(x) + psi(phi(x)) with the class one-hot y replaced by the
    embedding c: D(x, c) = psi(phi(x)) + <V c, phi(x)>. phi(x) is the flattened feature map h
    (what the head psi reads) and V is tied across positions, <V c, phi(x)> = <E c, mean_ij h_ij>,
    with ``embed`` E = Linear(cond_dim, F) without bias (so the null condition c = 0 leaves the
    unconditional psi(phi(x))) and spectrally normalised like every other layer (their code
    normalises the embedding too). The paper pools by a sum; the mean keeps |<V c, phi(x)>| within
    |c| |phi(x)|, the bound psi's unit spectral norm gives the head; a sum over the h*w positions
    would not.
    """

    def __init__(self, in_ch: int, image_size: int, widths: tuple[int, ...] = (32, 64), spectral_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_ch, image_size
        for w in widths:
            layers += [spectral(nn.Conv2d(c, w, 4, stride=2, padding=1), spectral_norm), nn.LeakyReLU(0.2)]
            c, size = w, size // 2   # k=4, s=2, p=1 halves (floor) the resolution
        layers += [spectral(nn.Conv2d(c, c, 3, padding=1), spectral_norm), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = spectral(nn.Linear(c * size * size, 1), spectral_norm)
        self.feature_shape = (c, size, size)
        self.spectral_norm = spectral_norm
        self.embed = None   # the projection's embedding after add_conditioning

    def add_conditioning(self, cond_dim: int) -> None:
        """Make D a projection discriminator of ``cond`` (B, cond_dim): adds ``embed``."""
        self.embed = spectral(nn.Linear(cond_dim, self.feature_shape[0], bias=False), self.spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> feature map (B, F, h, w) of the last conv layer (after its activation)."""
        return self.body(x)

    def logits(self, h: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Feature map (B, F, h, w) from :meth:`features` -> logits (B,); a conditional D needs
        ``cond`` (B, cond_dim) and adds the projection term."""
        expect_cond(self.embed is not None, cond, "discriminator")
        out = self.head(h.flatten(1)).squeeze(1)                           # (B,) psi(phi(x))
        if self.embed is None:
            return out
        return out + (self.embed(cond) * h.mean((2, 3))).sum(1)            # + <E c, mean-pooled h>

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:  # (B, C, H, W) -> (B,)
        return self.logits(self.features(x), cond)
