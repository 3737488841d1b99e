"""A small UNet noise predictor with a time (and optional noise-level and text) embedding.

``widths=(16, 32, 64)`` means three resolution levels (28 -> 14 -> 7 for 28x28 inputs); a
latent of 4x7x7 works with ``widths=(64, 128)`` (7 -> 4) or a single level. Each level has
``blocks`` time-conditioned residual blocks in the encoder and in the decoder, the encoder
output of every level is concatenated into the decoder at the same level, and the lowest
level holds self-attention (torch's scaled_dot_product_attention), with ``mid_blocks``
extra residual blocks on either side (0: the lowest level's encoder and decoder blocks
flank it). Odd sizes are fine: the decoder upsamples to the skip's exact size.

Conditioning for super-resolution (the cascade's decoder, ``zoo.models.cascade``): the
low-resolution image, upsampled, is concatenated to x_t as extra input channels (so
``in_ch`` = 2C there), and ``noise_cond=True`` adds an embedding of the noise-augmentation
level of that image (a float in [0, 1] per sample: the same sinusoidal embedding and MLP as
the timestep, on level * 1000) to the timestep embedding, so the network knows how corrupted
its conditioning is (Ho et al. 2021; Saharia et al. 2022).

Conditioning on a text embedding (``cond_dim > 0``): a small MLP maps ``cond`` (B, cond_dim) to
the embedding width and adds it to the timestep embedding, so it reaches every residual block
through the same scale-and-shift (FiLM) path as the timestep. It is built after every other
module, so the other modules draw the same initial weights as in a UNet without it.

``zero_init`` (default True) starts every residual block, the attention and the output layer at
zero, so the untrained network is the identity on its skips and outputs zeros whatever its inputs
(Ho et al. 2020). False leaves those layers at torch's default init (no extra random draws: the
default init runs either way), so an untrained network already depends on its conditioning.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .conv import groups_for


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017) of timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().unsqueeze(1) * freqs.unsqueeze(0)                                       # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def embedding_mlp(din: int, dim: int) -> nn.Sequential:
    """Linear(din, dim) -> SiLU -> Linear(dim, dim): maps a timestep, level or text embedding to the
    UNet's embedding width."""
    return nn.Sequential(nn.Linear(din, dim), nn.SiLU(), nn.Linear(dim, dim))


class TimeResBlock(nn.Module):
    """GN -> SiLU -> conv3 -> GN * (1 + scale) + shift (from the embedding) -> SiLU -> conv3, plus skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, zero_init: bool = True):
        super().__init__()
        self.n1 = nn.GroupNorm(groups_for(cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.n2 = nn.GroupNorm(groups_for(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        if zero_init:  # each block starts as the identity (Ho et al. 2020)
            nn.init.zeros_(self.c2.weight)
            nn.init.zeros_(self.c2.bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x (B, cin, H, W), emb (B, emb_dim) already passed through SiLU -> (B, cout, H, W)
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)   # (B, cout, 1, 1) each
        h = self.n2(h) * (1 + scale) + shift
        h = self.c2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual."""

    def __init__(self, ch: int, heads: int = 4, zero_init: bool = True):
        super().__init__()
        if ch % heads:
            raise ValueError(f"attention channels {ch} not divisible by heads {heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(groups_for(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).view(B, 3, self.heads, C // self.heads, H * W)   # (B, 3, nh, hd, L)
        q, k, v = qkv.transpose(-1, -2).unbind(1)                                     # (B, nh, L, hd) each
        h = F.scaled_dot_product_attention(q, k, v)                                   # (B, nh, L, hd)
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(h)


class UNet(nn.Module):
    """Noise predictor: (x (B, in_ch, H, W), t (B,) long[, aug_level (B,)][, cond=(B, cond_dim)]) -> (B, out_ch, H, W).

    ``noise_cond`` adds the embedding of a noise-augmentation level (``aug_level``). ``cond_dim > 0``
    adds the text-embedding MLP (``cond_mlp``); ``forward`` then needs ``cond``.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, widths: tuple[int, ...] = (16, 32, 64),
                 blocks: int = 1, attn_heads: int = 4, dropout: float = 0.0,
                 mid_blocks: int = 1, noise_cond: bool = False, cond_dim: int = 0, zero_init: bool = True):
        super().__init__()
        if not widths or blocks < 1:
            raise ValueError(f"need at least one level and one block, got widths={widths}, blocks={blocks}")
        out_ch = out_ch or in_ch
        if cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        self.widths, self.blocks, self.cond_dim = tuple(widths), blocks, cond_dim
        w0 = widths[0]
        emb_dim = 4 * w0
        self.time_dim = w0
        self.time_mlp = embedding_mlp(w0, emb_dim)
        self.aug_mlp = embedding_mlp(w0, emb_dim) if noise_cond else None
        self.conv_in = nn.Conv2d(in_ch, w0, 3, padding=1)
        L = len(widths)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i, w in enumerate(widths):
            cin = w0 if i == 0 else widths[i - 1]
            self.enc.append(nn.ModuleList([TimeResBlock(cin if b == 0 else w, w, emb_dim, dropout, zero_init)
                                           for b in range(blocks)]))
            if i + 1 < L:
                self.down.append(nn.Conv2d(w, w, 3, stride=2, padding=1))  # H -> ceil(H / 2)
        wl = widths[-1]
        self.mid = nn.ModuleList([TimeResBlock(wl, wl, emb_dim, dropout, zero_init) for _ in range(2 * mid_blocks)])
        self.attn = SelfAttention2d(wl, attn_heads, zero_init)
        self.dec = nn.ModuleList()
        self.up = nn.ModuleList()
        for i, w in enumerate(widths):  # index i serves level i; run in reverse
            self.dec.append(nn.ModuleList([TimeResBlock(2 * w if b == 0 else w, w, emb_dim, dropout, zero_init)
                                           for b in range(blocks)]))
            if i + 1 < L:
                self.up.append(nn.Conv2d(widths[i + 1], w, 3, padding=1))  # after nearest upsampling
        self.norm_out = nn.GroupNorm(groups_for(w0), w0)
        self.conv_out = nn.Conv2d(w0, out_ch, 3, padding=1)
        if zero_init:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        # last, so that every module above draws the same initial weights as without it
        self.cond_mlp = embedding_mlp(cond_dim, emb_dim) if cond_dim > 0 else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, aug_level: torch.Tensor | None = None, *,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))              # (B, E)
        if self.aug_mlp is not None:  # noise-augmentation level of the conditioning, (B,) in [0, 1]
            if aug_level is None:
                raise ValueError("this UNet is noise-conditioned: give aug_level (B,)")
            emb = emb + self.aug_mlp(timestep_embedding(aug_level * 1000.0, self.time_dim))
        if self.cond_mlp is not None:  # text embedding (B, cond_dim); the null condition is zeros
            if cond is None:
                raise ValueError("this UNet is text-conditioned: give cond (B, cond_dim)")
            emb = emb + self.cond_mlp(cond)                                    # (B, E)
        elif cond is not None:
            raise ValueError("this UNet takes no cond (built with cond_dim=0)")
        emb = F.silu(emb)
        h = self.conv_in(x)                                                    # (B, w0, H, W)
        skips = []
        for i, blocks in enumerate(self.enc):
            for blk in blocks:
                h = blk(h, emb)
            skips.append(h)                                                    # (B, w_i, H_i, W_i)
            if i < len(self.down):
                h = self.down[i](h)
        m = len(self.mid) // 2                                                 # lowest resolution:
        for blk in self.mid[:m]:                                               # [res] -> attention -> [res]
            h = blk(h, emb)
        h = self.attn(h)
        for blk in self.mid[m:]:
            h = blk(h, emb)
        for i in reversed(range(len(self.dec))):
            if i < len(self.up):
                h = self.up[i](F.interpolate(h, size=skips[i].shape[-2:], mode="nearest"))  # (B, w_i, H_i, W_i)
            h = torch.cat([h, skips[i]], dim=1)                                # (B, 2 w_i, H_i, W_i)
            for blk in self.dec[i]:
                h = blk(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))
