"""Autoregressive pixel transformer (ImageGPT-style) with an exact likelihood.

An image becomes a sequence of T = H*W tokens in raster order, one token per pixel:
- grayscale (C = 1): the 8-bit level itself, 256 tokens (``zoo.images.to_levels``), so
  ``log_prob`` is the exact log-probability of the 8-bit image and bits/dim are pixel bits/dim;
- RGB (C = 3): the index of the nearest colour in a palette of ``palette_size`` colours fitted
  by k-means on training pixels (ImageGPT). ``log_prob`` is then the exact log-probability of
  the *palette tokens*, not of the 8-bit image; bits/dim = -log_prob / (3*H*W*ln 2) are "over
  palette tokens" (``bpd_units``) and are not comparable with pixel bits/dim.

The network is the shared ``zoo.nn.transformer.CausalTransformer``. Training minimises the
next-token cross-entropy; sampling draws one token per network evaluation with a KV cache
(temperature, top-k, per-sample generators).

Conditional (``cond_dim > 0``): the text embedding is projected and added to the input at every
position (``CausalTransformer(cond_dim=...)``); ``log_prob(x, cond)`` is then the exact log p(x | cond)
(the null condition when cond is None). Sampling takes classifier-free guidance on the logits,
``guidance`` w: ``null + w * (cond - null)`` from one doubled-batch evaluation per token (two
evaluations per token in ``nfe``), temperature and top-k after mixing.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..api import Generator, ModelConfig, register_model
from ..errors import ZooError
from ..images import to_levels
from ..nn.transformer import CausalTransformer


@dataclasses.dataclass
class PixelGPTConfig(ModelConfig):
    # sized for the 10 TFLOP budget: 0.205 GFLOP per 28x28 image (fwd+bwd, FlopCounterMode), so
    # 10 TFLOP is ~49k images; local attention costs 1/9 of full attention (see results/pixel_gpt)
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    mlp_ratio: int = 4
    dropout: float = 0.0
    window_rows: int = 2          # 0: full causal attention; r > 0: attend to the r rows above + own row
    palette_size: int = 256       # RGB only: k-means colours (tokens)
    kmeans_pixels: int = 100_000  # RGB only: training pixels the palette is fitted on
    kmeans_iters: int = 20
    temperature: float = 1.0      # default sampler temperature
    top_k: int = 0                # default sampler top-k (0: no truncation)
    lr: float = 4e-3              # chosen at batch 128 (~380 steps in 10 TFLOP); kept at the recipe's batch 8 (results/pixel_gpt)
    warmup_steps: int = 20        # linear learning-rate warm-up (optimizer steps)
    eval_batch: int = 64          # images per chunk in log_prob


@register_model("pixel_gpt")
class PixelGPT(Generator):
    """Raster-order pixel transformer: exact log-likelihood, KV-cache sampling."""

    Config = PixelGPTConfig
    likelihood = "exact"
    guidance = True

    # the recipe at every budget: batch 8 (training is step-limited under a FLOP budget); the sweep
    # behind it is in results/pixel_gpt/README.md ("Recipe for the budget")
    budget_rules = ((float("inf"), {"train.batch_size": 8}),)
    # the size axis (Generator.size_fields): the transformer (2 heads)
    size_fields = {"d_model": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md
    size_rule = (0.402, 4.125)
    # the depth axis: transformer layers
    depth_fields = {"n_layers": 1}

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"d_model": 16, "n_layers": 1, "n_heads": 2, "palette_size": 16,
                             "kmeans_pixels": 5000, "lr": 3e-3, "warmup_steps": 0, **fields})

    def __init__(self, config: PixelGPTConfig):
        super().__init__(config)
        c = config
        if c.channels not in (1, 3):
            raise ZooError(f"pixel_gpt needs 1 (grayscale) or 3 (RGB) channels, got {c.channels}")
        self.rgb = c.channels == 3
        vocab = c.palette_size if self.rgb else 256
        #: what bits/dim from log_prob measure (see the module docstring)
        self.bpd_units = "palette tokens" if self.rgb else "pixels"
        self.net = CausalTransformer(vocab, (c.image_size, c.image_size), c.d_model, c.n_layers, c.n_heads,
                                     c.mlp_ratio, c.dropout, window_rows=c.window_rows, cond_dim=c.cond_dim)
        if self.rgb:
            # colours in [-1, 1]; a placeholder grid until begin_stage fits them (saved with the weights)
            self.register_buffer("palette", _grid_palette(c.palette_size))

    # ---- tokens <-> images ---------------------------------------------------------------
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B,C,H,W) in [-1,1] -> tokens (B, H*W) int64 in raster order."""
        if x.dim() != 4 or x.shape[1] != self.config.channels:
            raise ZooError(f"expected images (B,{self.config.channels},H,W), got {tuple(x.shape)}")
        if not self.rgb:
            return to_levels(x).flatten(1)                                      # (B, T)
        pix = x.permute(0, 2, 3, 1).reshape(-1, 3)                              # (B*T, 3)
        d = torch.cdist(pix, self.palette)                                      # (B*T, K)
        return d.argmin(1).view(x.shape[0], -1)                                 # (B, T)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T) -> images (B,C,H,W) in [-1, 1]."""
        b, s = tokens.shape[0], self.config.image_size
        if not self.rgb:
            return (tokens.float() / 127.5 - 1.0).view(b, 1, s, s)
        return self.palette[tokens].view(b, s, s, 3).permute(0, 3, 1, 2).contiguous()

    def begin_stage(self, stage, images):
        """RGB: fit the palette by k-means (scipy) on a seeded random subset of training pixels."""
        if not self.rgb:
            return
        from scipy.cluster.vq import kmeans2
        c = self.config
        pix = images.permute(0, 2, 3, 1).reshape(-1, 3)                         # (N*H*W, 3) uint8
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(pix.shape[0], generator=g, device="cpu")[:c.kmeans_pixels]
        data = pix[idx].double().numpy() / 127.5 - 1.0
        k = min(c.palette_size, len(data))
        centres, _ = kmeans2(data, k, iter=c.kmeans_iters, minit="++", rng=np.random.default_rng(0))
        pal = _grid_palette(c.palette_size).double()
        pal[:k] = torch.from_numpy(centres)
        self.palette.copy_(pal.float())

    # ---- training ------------------------------------------------------------------------
    def configure_optimizer(self, phase, params):
        """AdamW with a linear warm-up over ``warmup_steps``, read from the optimizer's own step
        count so it survives checkpoint/resume.

        The warm-up multiplies whatever lr the trainer's own schedule (``train.warmup_steps``,
        ``train.lr_decay``) gives: that schedule's ``LambdaLR`` sets each group's lr afresh from its
        ``initial_lr`` after every step, so the factor here is applied once per step and never
        compounds. Without a trainer schedule the lr is set from ``config.lr``."""
        opt = torch.optim.AdamW(params, lr=self.config.lr, betas=(0.9, 0.95), weight_decay=0.0)
        warm, base = self.config.warmup_steps, self.config.lr

        def warmup(optimizer, args, kwargs):
            st = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
            step = int(st["step"]) + 1 if "step" in st else 1                   # the step about to run
            for group in optimizer.param_groups:
                group["lr"] = (group["lr"] if "initial_lr" in group else base) * min(1.0, step / warm)
        if warm > 0:
            opt.register_step_pre_hook(warmup)
        return opt

    def loss(self, x, cond=None, *, phase="main"):
        tokens = self.tokenize(x)                                               # (B, T)
        cond = self.condition_for_training(cond, x.shape[0]) if self.is_conditional else None  # (B, cond_dim) or None
        logits = self.net(tokens, cond=cond)                                    # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())           # nats per token
        per_dim = nll * tokens.shape[1] / x[0].numel()
        return {"loss": nll, "bpd": per_dim.detach() / math.log(2)}

    @torch.no_grad()
    def log_prob(self, x, cond=None):
        """Exact log p(tokens) in nats per image, (B,): the sum over the T tokens of
        log-softmax(logits)[token]. Grayscale: the 8-bit image; RGB: its palette tokens.
        Conditional: log p(tokens | cond), given ``cond`` (B, cond_dim), else the null condition."""
        x = x.to(self.device)
        cond = self.condition_for_network(cond, x.shape[0])                                     # (B, cond_dim) or None
        out = []
        for s in range(0, x.shape[0], self.config.eval_batch):
            tokens = self.tokenize(x[s:s + self.config.eval_batch])             # (b, T)
            c = cond[s:s + self.config.eval_batch] if cond is not None else None
            logits = self.net(tokens, cond=c)                                   # (b, T, V)
            nll = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")  # (b, T)
            out.append(-nll.sum(1))
        return torch.cat(out)

    # ---- sampling ------------------------------------------------------------------------
    def _sampler(self, temperature: float | None, top_k: int | None, use_cache: bool,
                 guidance: float = 1.0) -> dict:
        t = self.config.temperature if temperature is None else float(temperature)
        k = self.config.top_k if top_k is None else int(top_k)
        w = float(guidance)
        if not t > 0:
            raise ZooError(f"temperature must be > 0, got {t}")
        if k < 0:
            raise ZooError(f"top_k must be >= 0 (0: no truncation), got {k}")
        if not isinstance(use_cache, bool):
            raise ZooError(f"use_cache must be true or false, got {use_cache!r}")
        if not 0 <= w < math.inf:
            raise ZooError(f"guidance must be a finite number >= 0, got {guidance}")
        return {"temperature": t, "top_k": k or None, "use_cache": use_cache, "guidance": w}

    def generate(self, gens, cond=None, *, temperature: float | None = None, top_k: int | None = None,
                 use_cache: bool = True, guidance: float = 1.0):
        """Sample tokens one at a time (KV cache unless ``use_cache=False``), then map to pixels.
        ``temperature`` divides the logits; ``top_k`` keeps the k most likely tokens (0: all);
        ``guidance`` is the classifier-free guidance scale on the logits (a conditional model given
        ``cond``; without cond it samples the null condition and guidance has no effect)."""
        opts = self._sampler(temperature, top_k, use_cache, guidance)
        if not self.is_conditional:
            opts.pop("guidance")
        else:
            opts["cond"] = self.condition_for_network(cond, len(gens)) if cond is not None else None  # None: the null condition
        tokens = self.net.sample(gens, **opts)                                  # (B, T)
        return self.detokenize(tokens)

    def trajectory(self, n, *, seed=0, frames=8, **sampler):
        """uint8 (n, frames, C, H, W): the image as drawn so far at ``frames`` evenly spaced steps
        (pixels not yet sampled shown as mid-gray); the last frame is the finished sample."""
        if frames < 1:
            raise ZooError(f"frames must be >= 1, got {frames}")
        final = self.sample(n, seed=seed, **sampler)                          # (n, C, H, W) uint8
        T = self.net.seq_len
        pos = torch.arange(T, device=final.device).view(1, 1, self.config.image_size, self.config.image_size)
        out = []
        for f in range(frames):
            done = round((f + 1) * T / frames)                                # tokens drawn by this frame
            out.append(torch.where(pos < done, final, torch.full_like(final, 128)))
        return torch.stack(out, 1)

    def nfe(self, *, temperature: float | None = None, top_k: int | None = None, use_cache: bool = True,
            guidance: float = 1.0) -> int:
        """One network evaluation per token (over one new position with the cache, over the whole
        prefix without it); two per token for a conditional model guided with w not 0 or 1 (the null
        and cond rows: one doubled-batch call)."""
        w = self._sampler(temperature, top_k, use_cache, guidance)["guidance"]
        return self.net.seq_len * (2 if self.is_conditional and w not in (0, 1) else 1)


def _grid_palette(k: int) -> torch.Tensor:
    """The first k colours of an n x n x n grid in [-1, 1]^3 (n = ceil(k^(1/3))): (k, 3)."""
    n = max(2, math.ceil(k ** (1 / 3) - 1e-9))
    lv = torch.linspace(-1, 1, n)
    grid = torch.stack(torch.meshgrid(lv, lv, lv, indexing="ij"), -1).reshape(-1, 3)
    return grid[:k].clone()
