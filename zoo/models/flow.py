"""Glow-style multi-scale normalizing flow over dequantized 8-bit pixels.

Each level: squeeze (space-to-depth x2), K steps of (ActNorm, LU 1x1 conv, affine coupling),
then (all but the last level) factor out half the channels under a learned conditional
Gaussian prior. For 1x28x28: 1x28x28 -> 4x14x14 -> K steps -> out 2x14x14, keep 2x14x14
-> 8x7x7 -> K steps -> out 8x7x7. The flow maps an image to standard-normal noise e (C*H*W
values); sampling draws e ~ N(0, T^2 I) and inverts it (one network evaluation).

Units. Pixel levels k in {0..255}^D (D = C*H*W), dequantization noise u in [0,1)^D,
w = k + u in [0,256)^D. The flow models v = w/256 - 0.5 in [-0.5, 0.5)^D, and its density
p_v(v) = N(e(v); 0, I) |det de/dv| is computed exactly. Because dv/dw = 1/256 in every dim,

    log p_w(w) = log p_v(v) + D*log(dv/dw) = log p_v(v) - D*log(256).

The discrete image has P(k) = integral over [0,1)^D of p_w(k + u) du, so for any density
q(u | k) on [0,1)^D Jensen's inequality gives

    log P(k) >= E_{u ~ q}[log p_w(k + u) - log q(u | k)]     (uniform q: log q = 0),

bits/dim = -log P / (D ln 2). ``log_prob`` returns this bound (one u per image by default,
or the tighter importance-weighted bound with ``k`` > 1), so the family declares
``likelihood = "bound"``: the continuous density is exact, the discrete likelihood is not.

Conditioning (``cond_dim > 0``). The bijection v <-> e stays unconditional; only the base
density depends on the text embedding c: the top level's Gaussian N(mean(c), std(c)^2) (a
GaussianPrior, per element) and the learned split priors p(z2 | z1, c) (GaussianSplit with a
per-channel offset from c) are written as bijections onto N(0, I) like the rest, so

    log p_v(v | c) = log N(e(v; c); 0, I) + log|det de/dv|

is exact for every c, and sampling inverts the same per-sample noise e through the prior of c.
The dequantizer q(u | x) is unconditional. ``cond = None`` is the null condition (zeros), which
training puts in place of a share ``cond_drop`` of the embeddings. At the start the split priors'
cond layers are zero and the top prior's bias is zero (a small random weight lets c matter from the
first step), so a new conditional model has the unconditional model's density at the null condition.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..api import Generator, ModelConfig, halvings, register_model
from ..distributions import standard_normal_logp
from ..errors import ZooError
from ..images import BINS, to_float, to_levels, to_uint8
from ..nn.coupling import AffineCoupling, FlowStep, GaussianPrior, GaussianSplit, InvConv1x1LU, Squeeze

DEQUANT = ("uniform", "variational")
SPLIT_PRIORS = ("learned", "normal")
# Initial scale of the conditional top prior's weight (GaussianPrior's init_scale). Not 0: a zero
# layer would make an untrained model's density ignore cond (the contract's test_loss_depends_on_cond
# checks that it does not); at 0.3 a tiny model's first loss moves by ~0.5% (at 1.0, by ~20%).
COND_INIT_SCALE = 0.3


class VariationalDequantizer(nn.Module):
    """q(u | x) on (0,1)^D (Flow++): u = sigmoid(g(eps; x)), eps ~ N(0, I), where g is a small
    conditional flow (LU 1x1 convs and affine couplings conditioned on CNN features of x)
    acting on the squeezed noise (4C, H/2, W/2). log q(u|x) = log N(eps) - log|det du/deps|.
    """

    def __init__(self, channels: int, hidden: int, steps: int):
        super().__init__()
        c4 = 4 * channels
        self.squeeze = Squeeze(2)
        self.context = nn.Sequential(nn.Conv2d(c4, hidden, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU())
        self.convs = nn.ModuleList([InvConv1x1LU(c4) for _ in range(steps)])
        self.couplings = nn.ModuleList([AffineCoupling(c4, hidden, cond_channels=hidden) for _ in range(steps)])

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) in [-1,1] -> u (B,C,H,W) in (0,1) and log q(u|x) (B,). eps: squeezed noise
        (B,4C,H/2,W/2), drawn from the global RNG when None."""
        xs, _ = self.squeeze(x)                          # (B, 4C, H/2, W/2)
        ctx = self.context(xs)                           # (B, hidden, H/2, W/2)
        h = torch.randn_like(xs) if eps is None else eps
        log_q = standard_normal_logp(h).flatten(1).sum(1)
        for conv, coupling in zip(self.convs, self.couplings):
            h, ld = conv(h)
            log_q = log_q - ld
            h, ld = coupling(h, ctx)
            log_q = log_q - ld
        # d sigmoid(h)/dh = sigmoid(h) sigmoid(-h)
        log_q = log_q - (F.logsigmoid(h) + F.logsigmoid(-h)).flatten(1).sum(1)
        return self.squeeze.inverse(torch.sigmoid(h)), log_q


@dataclasses.dataclass
class FlowConfig(ModelConfig):
    levels: int = 2               # squeeze / K steps / split levels (image_size must divide by 2**levels)
    steps: int = 8                # K: flow steps (ActNorm, 1x1 conv, coupling) per level
    hidden: int = 48              # width of each coupling CNN
    split_prior: str = "learned"  # factored-out halves: "learned" conditional Gaussian or "normal" N(0, I)
    dequant: str = "uniform"      # "uniform" or "variational" (Flow++: a conditional flow q(u|x))
    dequant_steps: int = 4        # coupling steps of the variational dequantizer
    dequant_hidden: int = 32      # width of the variational dequantizer's CNNs
    temperature: float = 0.7      # default sampling temperature (std of the base noise); results/flow/README.md
                                  # ("Sampling temperature") has why it is not 1
    iw_samples: int = 1           # dequantization draws per image in log_prob (importance-weighted if > 1)
    init_batch: int = 512         # training images for ActNorm's data-dependent initialization
    lr: float = 2e-3              # Adam learning rate


@register_model("flow")
class Flow(Generator):
    """Glow-style multi-scale flow (ActNorm, LU 1x1 conv, affine coupling); dequantization bound.
    With ``cond_dim > 0`` its prior (not its bijection) is conditioned on a text embedding."""

    Config = FlowConfig
    likelihood = "bound"
    has_latent = True

    # the recipe at every budget: batch 32 (training is step-limited under a FLOP budget) and a cosine
    # decay of the lr to 0 over the run (at a constant lr the samples got worse past 10 TFLOP while the
    # bits/dim kept falling); the trials behind both are in results/flow/README.md ("Recipe for the
    # budget", "Learning-rate decay")
    budget_rules = ((float("inf"), {"train.batch_size": 32, "train.lr_decay": "cosine"}),)
    # the size axis (Generator.size_fields): every coupling CNN, and the variational dequantizer's
    size_fields = {"hidden": 4, "dequant_hidden": 4}
    # the depth axis: flow steps per level, and the variational dequantizer's
    depth_fields = {"steps": 1, "dequant_steps": 1}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md (FID at temperature 0.7; flat within a few FID around each minimum)
    size_rule = (0.778, 4.164)
    # every bench cell samples at temperature 0.7, whatever temperature its run's config holds; 1 does
    # better on fmnist-cnn features but worse on Inception's (results/flow/README.md)
    sampler_settings = {"temperature": 0.7}

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"steps": 2, "hidden": 16, "dequant_steps": 2, "dequant_hidden": 8,
                             "init_batch": 64, **fields})

    @classmethod
    def lower_resolution_config(cls, config: FlowConfig, factor: int) -> FlowConfig:
        """log2(factor) ``levels`` fewer, keeping at least one."""
        k = halvings(factor)
        if k and config.levels - k >= 1:
            return dataclasses.replace(config, levels=config.levels - k)
        return config

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        c = config
        if c.levels < 1 or c.steps < 0:
            raise ZooError(f"flow needs levels >= 1 and steps >= 0, got levels={c.levels}, steps={c.steps}")
        if c.image_size % 2 ** c.levels:
            raise ZooError(f"image_size {c.image_size} is not divisible by 2**levels = {2 ** c.levels}")
        if c.dequant not in DEQUANT:
            raise ZooError(f"unknown dequant {c.dequant!r} (choose {' or '.join(DEQUANT)})")
        if c.split_prior not in SPLIT_PRIORS:
            raise ZooError(f"unknown split_prior {c.split_prior!r} (choose {' or '.join(SPLIT_PRIORS)})")
        if c.iw_samples < 1:
            raise ZooError(f"iw_samples must be >= 1, got {c.iw_samples}")
        if c.cond_dim < 0:
            raise ZooError(f"cond_dim must be >= 0, got {c.cond_dim}")
        self.squeeze = Squeeze(2)
        self.blocks = nn.ModuleList()
        self.noise_shapes: list[tuple[int, int, int]] = []  # the noise factored out at each level
        ch, size = c.channels, c.image_size
        for i in range(c.levels):
            ch, size = 4 * ch, size // 2
            layers: list[nn.Module] = [FlowStep(ch, c.hidden) for _ in range(c.steps)]
            if i < c.levels - 1:
                if c.split_prior == "learned":
                    layers.append(GaussianSplit(ch, cond_dim=c.cond_dim))  # its cond layer draws no RNG
                self.noise_shapes.append((ch // 2, size, size))
                ch -= ch // 2
            else:
                self.noise_shapes.append((ch, size, size))
            self.blocks.append(nn.ModuleList(layers))
        self.dequantizer = (VariationalDequantizer(c.channels, c.dequant_hidden, c.dequant_steps)
                            if c.dequant == "variational" else None)
        # the conditional top prior, built last, so its one RNG draw (its weight) comes after every other
        # module's (the splits' cond layers draw none): a conditional model's bijection starts as the
        # unconditional one's. None at all for an unconditional model: its modules and RNG are as before
        self.top_prior = (GaussianPrior(self.noise_shapes[-1], c.cond_dim, init_scale=COND_INIT_SCALE)
                          if c.cond_dim > 0 else None)

    # ---- the bijection v <-> e --------------------------------------------------------------
    def _condition_like(self, cond: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor | None:
        """``condition_for_network`` for a batch like ``ref``, in ref's dtype and on its device."""
        c = self.condition_for_network(cond, ref.shape[0])   # (B, cond_dim) or None
        return None if c is None else c.to(device=ref.device, dtype=ref.dtype)

    def to_noise(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B,C,H,W) in the model range -> standard-normal noise e (B, D) and log|det de/dv| (B,).
        ``cond`` (B, cond_dim) of a conditional model (None: the null condition) enters only the priors."""
        c = self._condition_like(cond, v)
        h, logdet = v, v.new_zeros(v.shape[0])
        out = []
        for i, block in enumerate(self.blocks):
            h, _ = self.squeeze(h)
            for layer in block:
                h, ld = layer(h, c) if isinstance(layer, GaussianSplit) else layer(h)
                logdet = logdet + ld
            if i < len(self.blocks) - 1:
                keep = h.shape[1] - h.shape[1] // 2
                out.append(h[:, keep:].flatten(1))       # factored out: (B, ch//2 * size * size)
                h = h[:, :keep]
        if self.top_prior is not None:
            h, ld = self.top_prior(h, c)                 # the top level's N(mean(c), std(c)^2) -> N(0, I)
            logdet = logdet + ld
        out.append(h.flatten(1))
        return torch.cat(out, 1), logdet

    def from_noise(self, e: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of ``to_noise``: e (B, D) -> v (B,C,H,W), for the same ``cond``."""
        c = self._condition_like(cond, e)
        parts = list(e.split([math.prod(s) for s in self.noise_shapes], 1))
        h = parts[-1].view(e.shape[0], *self.noise_shapes[-1])
        if self.top_prior is not None:
            h = self.top_prior.inverse(h, c)
        for i in reversed(range(len(self.blocks))):
            if i < len(self.blocks) - 1:
                h = torch.cat([h, parts[i].view(e.shape[0], *self.noise_shapes[i])], 1)
            for layer in reversed(self.blocks[i]):
                h = layer.inverse(h, c) if isinstance(layer, GaussianSplit) else layer.inverse(h)
            h = self.squeeze.inverse(h)
        return h

    def log_density(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact continuous log p_v(v) (B,) for v (B,C,H,W) in [-0.5, 0.5); log p_v(v | cond) for a
        conditional model (cond None: the null condition)."""
        e, logdet = self.to_noise(v, cond)
        return standard_normal_logp(e).sum(1) + logdet

    # ---- dequantization -------------------------------------------------------------------
    def dequantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) in [-1,1] -> v = (k + u)/256 - 0.5 and log q(u|k) (B,), u from the global RNG."""
        k = to_levels(x).to(x.dtype)                                 # (B,C,H,W) in {0..255}
        if self.dequantizer is None:
            u, log_q = torch.rand_like(x), x.new_zeros(x.shape[0])
        else:
            u, log_q = self.dequantizer(x)
        return (k + u) / BINS - 0.5, log_q

    def elbo(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """One-draw dequantization bound log p_w(k+u | cond) - log q(u|k) <= log P(k | cond), nats (B,)."""
        v, log_q = self.dequantize(x)
        dims = x[0].numel()
        # log p_w(w) = log p_v(v) + D*log(dv/dw), dv/dw = 1/256 (see module docstring)
        return self.log_density(v, cond) - dims * math.log(BINS) - log_q

    # ---- training -------------------------------------------------------------------------
    def loss(self, x, cond=None, *, phase="main"):
        dims = x[0].numel()
        if self.is_conditional:   # prompt dropout (global RNG); an unconditional model draws nothing here
            cond = self.condition_for_training(cond, x.shape[0])                  # (B, cond_dim)
        nll = -self.elbo(x, cond).mean() / dims                      # nats per dim
        return {"loss": nll, "bpd": nll.detach() / math.log(2)}

    def _uninitialized(self) -> bool:
        return any(not bool(b) for n, b in self.named_buffers() if n.endswith("initialized"))

    def begin_stage(self, stage, images):
        """ActNorm data-dependent init (Glow) on ``init_batch`` random training images."""
        if not self._uninitialized():
            return
        idx = torch.randperm(images.shape[0], device="cpu")[:self.config.init_batch]  # global CPU RNG
        was_training = self.training
        self.train()
        with torch.no_grad():
            self.loss(to_float(images[idx.to(images.device)]).to(self.device))
        self.train(was_training)

    @torch.no_grad()
    def log_prob(self, x, cond=None, *, k: int | None = None):
        """Dequantization lower bound on log P(x) in nats (B,): log (1/k) sum_i p_w(x+u_i)/q(u_i|x);
        of log P(x | cond) for a conditional model given ``cond`` (B, cond_dim) (None: the null condition).

        k = 1 is the usual one-draw bound; larger k is tighter. Uses the global RNG for u.
        """
        k = k or self.config.iw_samples
        if k < 1:
            raise ZooError(f"k must be >= 1, got {k}")
        x = x.to(self.device)
        vals = torch.stack([self.elbo(x, cond) for _ in range(k)])    # (k, B)
        return torch.logsumexp(vals, 0) - math.log(k)

    # ---- sampling -------------------------------------------------------------------------
    def _temperature(self, opts: dict) -> float:
        opts = dict(opts)
        t = opts.pop("temperature", None)
        if opts:
            raise ZooError(f"unknown flow sampler option(s): {', '.join(sorted(opts))} (known: temperature)")
        t = self.config.temperature if t is None else float(t)
        if not t >= 0:
            raise ZooError(f"temperature must be >= 0, got {t}")
        return t

    def decode(self, e: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Noise e (B, D) -> images (B,C,H,W) in [-1,1] on the 256-level grid (w = 256(v+0.5), k = floor w),
        through the prior of ``cond`` for a conditional model (None: the null condition)."""
        v = self.from_noise(e, cond)
        # an overflowing inverse (rare with the bounded scales) must still give a valid image:
        # +-inf clamp to the end levels below, NaN (from inf - inf) becomes mid-grey
        v = torch.nan_to_num(v, nan=0.0)
        k = torch.floor((v + 0.5) * BINS).clamp(0, BINS - 1)
        return k / 127.5 - 1.0

    def generate(self, gens, cond=None, **sampler):
        """Decode e ~ N(0, T^2 I), image i's e from gens[i] alone whatever ``cond`` is; a conditional
        model maps it through the prior of ``cond`` (T scales the prior's std) or, for None, the null one."""
        t = self._temperature(sampler)
        e = rng.randn(gens, sum(math.prod(s) for s in self.noise_shapes))   # (B, D)
        return self.decode(t * e, cond)

    def nfe(self, **sampler):
        self._temperature(sampler)
        return 1

    @torch.no_grad()
    def interpolate(self, a, b, *, steps=8):
        """Decode ``steps`` points on the line between the noise of uint8 images a and b (each taken
        at its bins' centres; a conditional model's under the null condition): uint8 (steps, C, H, W) on the CPU."""
        was_training = self.training
        self.eval()
        try:
            k = torch.stack([a, b]).to(self.device, torch.float32)     # (2,C,H,W) levels
            e, _ = self.to_noise((k + 0.5) / BINS - 0.5)                # bin centres, no noise
            w = torch.linspace(0, 1, steps, device=e.device).unsqueeze(1)  # (steps, 1)
            return to_uint8(self.decode((1 - w) * e[0] + w * e[1]))
        finally:
            self.train(was_training)
