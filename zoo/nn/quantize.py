"""Vector quantizer (van den Oord et al. 2017) with EMA codebook updates and dead-code restarts.

Self-contained: it knows nothing of any family, so the VQ-VAE and a latent-diffusion first
stage can both use it. Usage::

    vq = VectorQuantizer(num_codes=256, dim=32)
    vq.init_codebook(z)                  # optional: seed the codebook from encoder outputs
    z_q, idx, stats = vq(z)              # z (B, D, H, W) -> z_q (B, D, H, W), idx (B, H, W)
    loss = recon + stats["commit_loss"] + stats["codebook_loss"]
    x_from_codes = vq.lookup(idx)        # (B, H, W) -> (B, D, H, W)

- Nearest code by squared Euclidean distance, ``|z|^2 - 2 z.e + |e|^2``, in row chunks so
  the (rows, K) distance matrix stays small.
- Straight-through gradient: ``z_q = z + (e - z).detach()``, so d loss / d z = d loss / d z_q.
- ``commit_loss = beta * mean((z - sg(e))^2)`` pulls the encoder towards its codes.
- Codebook updates (``ema=True``, the default): exponential moving averages of the per-code
  assignment counts and of the sums of the assigned vectors, with Laplace-smoothed counts;
  the codebook is a buffer, updated inside ``forward`` in training mode only, and
  ``codebook_loss`` is 0. With ``ema=False`` the codebook is a parameter trained by the
  optimizer through ``codebook_loss = mean((sg(z) - e)^2)``.
- Dead-code restart: a code that no vector chose for ``dead_after`` consecutive training
  forwards is moved onto a randomly chosen encoder vector of the current batch (drawn with the
  global torch RNG, which the trainer seeds and checkpoints). ``dead_after=0`` disables it.
- Usage statistics for the batch: perplexity ``exp(H(p))`` of the code histogram ``p`` and
  the number of codes used at least once (``live_codes``).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .. import dist


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device_type``; a no-op where the device has no autocast (e.g. meta)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def usage_stats(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity exp(-sum p log p) and number of used codes of a code histogram ``counts`` (K,)."""
    counts = counts.double()
    p = counts / counts.sum().clamp(min=1)
    entropy = -(p * torch.log(p.clamp(min=1e-30))).sum()
    return torch.exp(entropy).float(), (counts > 0).sum().float()


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantization of (B, D, H, W) feature maps, straight-through gradients."""

    def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, eps: float = 1e-5, dead_after: int = 100, chunk: int = 4096):
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be >= 1, got {num_codes}, {dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if dead_after < 0:
            raise ValueError(f"dead_after must be >= 0, got {dead_after}")
        self.num_codes, self.dim = num_codes, dim
        self.beta, self.ema, self.decay, self.eps = beta, ema, decay, eps
        self.dead_after, self.chunk = dead_after, chunk
        init = torch.randn(num_codes, dim) / dim ** 0.5           # (K, D); replaced by init_codebook
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(num_codes))   # as if each code had seen itself once
            self.register_buffer("ema_sum", init.clone())               # (K, D)
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.long))

    # ---- lookup -------------------------------------------------------------------------
    @torch.no_grad()
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``flat`` (N, D): returns (N,) int64.

        Distances are computed in float32 or wider, also under autocast (bf16 would misrank codes).
        """
        dtype = torch.promote_types(flat.dtype, torch.float32)
        flat = flat.to(dtype)
        e = self.codebook.detach().to(dtype)                         # (K, D)
        e_sq = (e * e).sum(1)                                         # (K,)
        out = [torch.zeros(0, dtype=torch.long, device=flat.device)]
        with _autocast_off(flat.device.type):
            for s in range(0, flat.shape[0], self.chunk):
                f = flat[s:s + self.chunk]                            # (n, D)
                # |f|^2 is the same for every code of a row, so it does not change the argmin
                d = torch.addmm(e_sq.unsqueeze(0), f, e.t(), alpha=-2.0)  # (n, K) = |e|^2 - 2 f.e
                out.append(d.argmin(1))
        return torch.cat(out)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Code indices (B, H, W) of feature maps z (B, D, H, W); no state is updated."""
        b, d, h, w = z.shape
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, d)         # (B*H*W, D)
        return self.nearest(flat).view(b, h, w)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Codes for indices (B, H, W) as feature maps (B, D, H, W)."""
        return F.embedding(idx, self.codebook).permute(0, 3, 1, 2).contiguous()

    # ---- training -----------------------------------------------------------------------
    @torch.no_grad()
    def init_codebook(self, z: torch.Tensor) -> None:
        """Set every code to a randomly chosen vector of z (B, D, H, W) (global torch RNG)."""
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).to(self.codebook.dtype)
        pick = self._random_rows(flat, self.num_codes)
        self.codebook.data.copy_(pick)
        if self.ema:
            self.ema_sum.copy_(pick)
            self.ema_count.fill_(1.0)
        self.unused_steps.zero_()

    @staticmethod
    def _random_rows(flat: torch.Tensor, n: int) -> torch.Tensor:
        """n rows of flat (N, D), distinct where N >= n, chosen with the global CPU RNG
        (the one the trainer seeds and checkpoints, whatever the device)."""
        if flat.shape[0] >= n:
            pick = torch.randperm(flat.shape[0], device="cpu")[:n]
        else:
            pick = torch.randint(0, flat.shape[0], (n,), device="cpu")
        return flat[pick.to(flat.device)]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantize z (B, D, H, W): returns z_q (straight-through), indices (B, H, W) and stats.

        stats: ``commit_loss`` and ``codebook_loss`` (differentiable, add both to the loss),
        ``perplexity`` and ``live_codes`` of this batch (detached). In training mode the EMA
        codebook and the dead-code counters are updated after the lookup.
        """
        b, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"expected {self.dim} channels, got {d}")
        z = z.to(torch.promote_types(z.dtype, self.codebook.dtype))  # float32 under autocast too
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)                  # (N, D), N = B*H*W
        idx = self.nearest(flat.detach())                              # (N,)
        e = F.embedding(idx, self.codebook)                            # (N, D), grads reach the codebook if a parameter
        commit = self.beta * F.mse_loss(flat, e.detach())
        codebook_loss = F.mse_loss(flat.detach(), e) if not self.ema else flat.new_zeros(())
        q = flat + (e - flat).detach()                                 # straight-through
        z_q = q.view(b, h, w, d).permute(0, 3, 1, 2).contiguous()     # (B, D, H, W)
        counts = torch.bincount(idx, minlength=self.num_codes)         # (K,)
        if self.training:
            self._update(flat.detach(), idx, counts)
        perplexity, live = usage_stats(counts)
        stats = {"commit_loss": commit, "codebook_loss": codebook_loss,
                 "perplexity": perplexity, "live_codes": live}
        return z_q, idx.view(b, h, w), stats

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA codebook step (if ema) and dead-code restarts, from one batch's assignments."""
        if dist.active():  # under DDP: the counts of the whole batch, every rank's share
            counts = dist.all_reduce(counts)
        if self.ema:
            flat = flat.to(self.codebook.dtype)
            sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)     # (K, D)
            if dist.active():
                sums = dist.all_reduce(sums)
            self.ema_count.mul_(self.decay).add_(counts.to(self.ema_count.dtype), alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_after > 0:
            dead = (self.unused_steps >= self.dead_after).nonzero().squeeze(1)   # (n_dead,)
            if dead.numel():
                # under DDP every rank takes rank 0's draw (from rank 0's share of the batch)
                new = dist.broadcast_(self._random_rows(flat, dead.numel()).to(self.codebook.dtype))
                self.codebook.data[dead] = new
                if self.ema:
                    self.ema_sum[dead] = new
                    self.ema_count[dead] = 1.0
                self.unused_steps[dead] = 0
