"""DistributedDataParallel for the trainer's phases (used only under torchrun, see ``zoo.dist``).

The trainer optimizes a family through ``model.loss(x, labels, phase=p)``, not ``forward``, and a
family with several phases (GAN, VAE-GAN) or stages (VQ-VAE, latent diffusion) steps disjoint
parameter groups. So each phase gets its own DDP wrapper around a small module whose forward is
that phase's loss; the parameters of the other phases are registered as ignored, so a phase's
backward all-reduces exactly its own group's gradients (averaged over ranks: with per-rank means
over equal shares of the batch, the gradient of the global batch mean). Buffers are broadcast
from rank 0 before each forward (DDP's default), which keeps spectral-norm vectors and similar
state identical on every rank.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..api import Generator


class PhaseLoss(nn.Module):
    """``forward(x, labels, eager)`` = the model's loss dict for one phase (``eager``: skip ``fn``,
    the possibly compiled loss, for the one step per phase whose FLOPs are counted)."""

    def __init__(self, model: Generator, phase: str, fn: Callable):
        super().__init__()
        self.model, self.phase, self.fn = model, phase, fn

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None, eager: bool) -> dict[str, torch.Tensor]:
        return (self.model.loss if eager else self.fn)(x, labels, phase=self.phase)


def wrap_phase(model: Generator, phase: str, params: list[nn.Parameter], fn: Callable,
               device: str) -> DistributedDataParallel | None:
    """A DDP wrapper of ``phase``'s loss that syncs only ``params`` (None if none needs a gradient)."""
    mine = {id(p) for p in params if p.requires_grad}
    if not mine:
        return None
    module = PhaseLoss(model, phase, fn)
    ignore = [f"model.{n}" for n, p in model.named_parameters() if id(p) not in mine]
    # DDP's own switch for parameters it must leave alone (here: the other phases' groups)
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignore)
    dev = torch.device(device)
    return DistributedDataParallel(module, device_ids=[dev] if dev.type == "cuda" else None,
                                   static_graph=True)
