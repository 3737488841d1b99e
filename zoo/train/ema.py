"""The EMA copy of the model that sampling and ``model.safetensors`` use."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Exponential moving average of all floating parameters of a model; buffers are copied.

    Step ``s`` (1-based) moves each parameter by ``lerp_(p, 1 - d)`` with the warmed-up decay
    ``d = min(decay, (1 + s) / (10 + s))``, so the random initial weights are not frozen in.

    Why not ``torch.optim.swa_utils.AveragedModel``: it would need bending in three places to keep
    the numbers and the files: (1) its first ``update_parameters`` copies the model instead of
    averaging (here the copy starts equal to the model and step 1 already averages), so it would
    need a priming call; (2) its EMA helpers use a fixed decay, so the warm-up would be a custom
    ``avg_fn`` reading its ``n_averaged`` tensor (a device sync per step on a GPU); (3) it wraps
    the model as ``.module`` with an extra ``n_averaged`` buffer, which renames every ``ema.*``
    tensor in the checkpoint, so existing checkpoints would need a key translation. That is more
    code than this class, for the same arithmetic.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in ``model``'s weights after optimizer step ``step`` (1-based)."""
        d = min(self.decay, (1 + step) / (10 + step))  # warm-up: early weights are not frozen in
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p, 1.0 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)
        self.model.config = model.config  # configs may be filled in by begin_stage (e.g. latent scale)
