"""bits/dim from a model's log_prob on 8-bit images: -log p / (C*H*W*ln 2), labelled exact or bound."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..errors import ZooError
from ..images import to_float


@torch.no_grad()
def bits_per_dim(model, images: torch.Tensor, *, batch_size: int = 256, seed: int = 0,
                 progress: bool = False, **kw) -> dict:
    """Mean bits/dim of uint8 ``images`` (N,C,H,W) under ``model``, with its standard error.

    Each batch moves to the model's device; the per-image values come back to the CPU in float64.
    Bounds that draw noise (IWAE, variational dequantization, the diffusion VLB) use the global
    torch RNG (and the model's CUDA device's), seeded here with ``seed`` and restored afterwards.
    """
    if model.likelihood == "none":
        raise ZooError(f"family {model.name!r} has no likelihood")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] < 1:
        raise ZooError(f"expected uint8 (N,C,H,W) images with N >= 1, got {images.dtype} {tuple(images.shape)}")
    model.eval()
    device = model.device
    dims = images[0].numel()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        vals = []
        chunks = range(0, images.shape[0], batch_size)
        for s in tqdm(chunks, desc=f"bits/dim {model.name}", unit="batch", disable=not progress, leave=False):
            lp = model.log_prob(to_float(images[s:s + batch_size].to(device)), **kw)
            vals.append(-lp.to("cpu", torch.float64) / (dims * math.log(2)))
    v = torch.cat(vals)
    if not torch.isfinite(v).all():
        raise ZooError(f"non-finite log_prob from {model.name}")
    sem = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"bpd": float(v.mean()), "bpd_sem": sem, "kind": model.likelihood, "n": len(v), **kw}
