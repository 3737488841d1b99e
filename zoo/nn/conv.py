"""Convolutional encoder/decoder blocks shared by the VAE, VAE-GAN, VQ-VAE and latent AE.

Resolution levels: ``widths=(32, 64, 128)`` means three levels, with a stride-2 downsample
between consecutive levels, so 28x28 becomes 7x7 (28 -> 14 -> 7).
"""
from __future__ import annotations

import torch
from torch import nn


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
                layers.append(nn.Conv2d(w, widths[i + 1], 4, stride=2, padding=1))  # downsample x2
        layers += [nn.GroupNorm(groups_for(widths[-1]), widths[-1]), nn.SiLU(),
                   nn.Conv2d(widths[-1], out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.downsample = 2 ** (len(widths) - 1)

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
                layers.append(nn.ConvTranspose2d(w, rev[i + 1], 4, stride=2, padding=1))  # upsample x2
        layers += [nn.GroupNorm(groups_for(rev[-1]), rev[-1]), nn.SiLU(),
                   nn.Conv2d(rev[-1], out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
