"""Convolutional encoder/decoder blocks shared by the VAE, VAE-GAN, VQ-VAE and latent AE.

Resolution levels: ``widths=(32, 64, 128)`` means three levels, with a stride-2 downsample
between consecutive levels, so 28x28 becomes 7x7 (28 -> 14 -> 7).

Every convolution after the first is pre-activated (GroupNorm -> SiLU -> conv), the resampling
ones included, so ``blocks=0`` is a plain stack of strided convs with a nonlinearity between
each pair, not a linear map with one activation at the end.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> feature map (B, F, h, w) of the last conv layer (after its activation)."""
        return self.body(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Feature map (B, F, h, w) from :meth:`features` -> logits (B,)."""
        return self.head(h.flatten(1)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,)
        return self.logits(self.features(x))
