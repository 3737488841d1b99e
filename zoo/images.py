"""The one conversion between stored uint8 images and the float range models see.

Models receive images in [-1, 1]: ``x = u / 127.5 - 1`` for 8-bit values u in {0..255},
so ``u = round((x + 1) * 127.5)`` recovers them exactly. Families with a discrete likelihood
use ``to_levels`` to get the integer pixel values back.
"""
from __future__ import annotations

import torch

BINS = 256


def to_float(u: torch.Tensor) -> torch.Tensor:
    """uint8 (N,C,H,W) in {0..255} -> float32 in [-1, 1]."""
    if u.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {u.dtype}")
    return u.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in {0..255} on the CPU (values outside are clamped)."""
    return ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> int64 pixel levels in {0..255} (same rounding as to_uint8)."""
    return ((x.detach() + 1.0) * 127.5).round().clamp(0, 255).long()
