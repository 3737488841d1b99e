"""Invertible layers for normalizing flows (Glow / RealNVP): each maps (B, C, H, W) to the same
number of values, ``forward(x) -> (y, logdet)`` with ``logdet`` of shape (B,) equal to
log|det dy/dx|, and ``inverse(y) -> x``.

Layers: Squeeze (space-to-depth), ActNorm (per-channel affine with data-dependent init),
InvConv1x1LU (invertible 1x1 convolution, LU-parameterized), AffineCoupling (half the
channels scaled and shifted by a CNN of the other half), GaussianSplit (the conditional
Gaussian prior of a factored-out half, written as a bijection to standard-normal noise) and
GaussianPrior (a Gaussian given an embedding, the same kind of bijection). GaussianSplit
optionally and GaussianPrior always take an embedding ``cond`` (B, cond_dim); AffineCoupling's
optional ``cond`` is a feature map (B, cond_channels, H, W) instead.
Hand-written because torch has no flow layers; checked against brute-force Jacobians in
tests/test_coupling.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _zeros(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


def zero_linear(cin: int, cout: int) -> nn.Linear:
    """A Linear with zero weight and bias, built without drawing from the global RNG
    (``torch.nn.utils.skip_init``), so adding one leaves every later random initialization as it was."""
    layer = torch.nn.utils.skip_init(nn.Linear, cin, cout)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Squeeze(nn.Module):
    """Space-to-depth by ``factor``: (B, C, H, W) -> (B, C*f*f, H/f, W/f). A permutation: logdet 0."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"Squeeze({f}) needs H and W divisible by {f}, got {h}x{w}")
        y = x.view(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)  # (B, C, f, f, H/f, W/f)
        return y.reshape(b, c * f * f, h // f, w // f), _zeros(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        f = self.factor
        x = y.view(b, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)  # (B, C, H/f, f, W/f, f)
        return x.reshape(b, c // (f * f), h * f, w * f)


class ActNorm(nn.Module):
    """y = (x + bias) * exp(log_scale) per channel; logdet = H*W*sum(log_scale).

    Data-dependent initialization (Glow): the first forward pass in training mode sets bias and
    log_scale so that the output of that batch has zero mean and unit variance per channel.
    The ``initialized`` flag is a registered buffer, so save/load and resume keep it.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias = -mean and log_scale = -log(std + 1e-6) from batch x (B, C, H, W)."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)                        # (1, C, 1, 1)
        std = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()  # (1, C, 1, 1)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1LU(nn.Module):
    """Invertible 1x1 convolution with W = P L (U + diag(sign * exp(log_s))) (Glow, LU form).

    P (a permutation) and sign are fixed buffers; L is unit lower-triangular and U strictly
    upper-triangular (masked full matrices), so W is invertible for every parameter value and
    log|det W| = sum(log_s) costs O(C). Initialized from a random rotation (global torch RNG).
    """

    def __init__(self, channels: int):
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels))[0]   # random orthogonal (C, C)
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo = self.lower * self.lower_mask + self.eye                                  # (C, C) unit lower
        up = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))  # (C, C) upper
        return lo, up

    def weight(self) -> torch.Tensor:
        """The (C, C) matrix W."""
        lo, up = self._factors()
        return self.perm @ lo @ up

    def inverse_weight(self) -> torch.Tensor:
        """W^-1 = U^-1 L^-1 P^T by two triangular solves."""
        lo, up = self._factors()
        x = torch.linalg.solve_triangular(lo, self.perm.T, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(up, x, upper=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        y = F.conv2d(x, self.weight().view(c, c, 1, 1))
        logdet = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        return F.conv2d(y, self.inverse_weight().view(c, c, 1, 1))


class CouplingNet(nn.Sequential):
    """conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3 (zero-initialized, so the coupling starts
    near the identity), as in Glow's coupling networks."""

    def __init__(self, cin: int, hidden: int, cout: int):
        last = nn.Conv2d(hidden, cout, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)


class AffineCoupling(nn.Module):
    """Affine coupling: x = [xa, xb]; yb = (xb + shift) * exp(log_scale), (shift, raw) = NN(xa[, cond]),
    log_scale = bound * tanh(raw / bound).

    The tanh bound keeps |log_scale| < ``bound`` in both directions, so the inverse (sampling)
    can grow values by at most exp(bound) per layer. Glow's sigmoid(raw + 2) scale is bounded
    above only: for latents a little off the training distribution its inverse divided by a
    vanishing sigmoid and most temperature-1 samples of an under-trained model overflowed to
    inf/NaN. With the zero-initialized last conv each coupling starts as the identity.
    logdet = sum log_scale. ``cond`` (B, cond_channels, H, W) is an optional conditioning input
    (used by the variational dequantizer).
    """

    def __init__(self, channels: int, hidden: int, cond_channels: int = 0, bound: float = 2.0):
        super().__init__()
        if channels < 2:
            raise ValueError(f"AffineCoupling needs at least 2 channels, got {channels} (squeeze first)")
        self.ca = channels // 2          # channels passed through
        self.cb = channels - self.ca     # channels transformed
        self.bound = bound
        self.net = CouplingNet(self.ca + cond_channels, hidden, 2 * self.cb)

    def _shift_logscale(self, xa: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(xa if cond is None else torch.cat([xa, cond], 1))  # (B, 2*cb, H, W)
        shift, raw = h[:, 0::2], h[:, 1::2]                               # each (B, cb, H, W)
        return shift, self.bound * torch.tanh(raw / self.bound)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, :self.ca], x[:, self.ca:]
        shift, log_scale = self._shift_logscale(xa, cond)
        yb = (xb + shift) * torch.exp(log_scale)
        return torch.cat([xa, yb], 1), log_scale.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        ya, yb = y[:, :self.ca], y[:, self.ca:]
        shift, log_scale = self._shift_logscale(ya, cond)
        return torch.cat([ya, yb * torch.exp(-log_scale) - shift], 1)


class GaussianSplit(nn.Module):
    """The learned prior of a factored-out half, p(z2 | z1[, c]) = N(mean, exp(log_std)^2),
    as a bijection x = [z1, z2] -> y = [z1, (z2 - mean) * exp(-log_std)], logdet = -sum log_std.

    After it, the second half is standard-normal noise under the model, so a flow ending in
    standard normals gets log p(z2 | z1) = log N(y2; 0, I) + logdet. mean and log_std come from
    a zero-initialized 3x3 conv of z1 (Glow's split2d prior), so it starts as N(0, I); log_std
    is tanh-bounded to (-bound, bound) for the same reason as AffineCoupling's scale.

    With ``cond_dim > 0`` the prior also takes an embedding c (B, cond_dim): a zero-initialized
    Linear of c adds a per-channel offset to the conv's (mean, log_std) output, so it starts as the
    unconditional prior. z1 passes through unchanged either way, so the map stays a bijection of x
    for every c. With ``cond_dim = 0`` no such layer exists (the state dict is unchanged).
    """

    def __init__(self, channels: int, bound: float = 4.0, cond_dim: int = 0):
        super().__init__()
        self.bound = bound
        self.ca = channels - channels // 2  # kept half
        self.cb = channels // 2             # factored-out half
        self.conv = nn.Conv2d(self.ca, 2 * self.cb, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.cond_proj = zero_linear(cond_dim, 2 * self.cb) if cond_dim > 0 else None

    def _stats(self, z1: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(z1)                   # (B, 2*cb, H, W)
        if self.cond_proj is not None:
            if cond is None:
                raise ValueError("this GaussianSplit was built with cond_dim > 0: give cond")
            h = h + self.cond_proj(cond)[:, :, None, None]   # per-channel offsets (B, 2*cb, 1, 1)
        return h[:, 0::2], self.bound * torch.tanh(h[:, 1::2] / self.bound)  # mean, log_std

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = x[:, :self.ca], x[:, self.ca:]
        mean, log_std = self._stats(z1, cond)
        return torch.cat([z1, (z2 - mean) * torch.exp(-log_std)], 1), -log_std.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        z1, e = y[:, :self.ca], y[:, self.ca:]
        mean, log_std = self._stats(z1, cond)
        return torch.cat([z1, mean + e * torch.exp(log_std)], 1)


class GaussianPrior(nn.Module):
    """A Gaussian over (C, H, W) given an embedding c (B, cond_dim), p(z | c) = N(mean(c),
    exp(log_std(c))^2) elementwise, as a bijection z -> y = (z - mean) * exp(-log_std) with
    logdet = -sum log_std, so that log p(z | c) = log N(y; 0, I) + logdet.

    mean and log_std (each (B, C, H, W)) come from one Linear of c; log_std is tanh-bounded to
    (-bound, bound) like GaussianSplit's. This is Glow's class-conditional top prior, with a mean
    and scale per element instead of per channel: nothing else in the prior tells the top level's
    positions apart. The bias starts at zero, so the prior of the null condition c = 0 starts as
    N(0, I); the weight starts at zero too (``init_scale = 0``: N(0, I) for every c, no RNG draw)
    or drawn from N(0, init_scale^2 / cond_dim) (global RNG), so that for an embedding of
    unit-variance entries each mean and log_std starts at about +-init_scale.
    """

    def __init__(self, shape: tuple[int, int, int], cond_dim: int, bound: float = 4.0, init_scale: float = 0.0):
        super().__init__()
        if cond_dim < 1:
            raise ValueError(f"GaussianPrior needs cond_dim >= 1, got {cond_dim}")
        self.shape = tuple(shape)
        self.bound = bound
        self.proj = zero_linear(cond_dim, 2 * math.prod(self.shape))
        if init_scale > 0:
            nn.init.normal_(self.proj.weight, std=init_scale / math.sqrt(cond_dim))

    def _stats(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.proj(cond).view(cond.shape[0], 2, *self.shape).unbind(1)   # each (B, C, H, W)
        return mean, self.bound * torch.tanh(raw / self.bound)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self._stats(cond)
        return (x - mean) * torch.exp(-log_std), -log_std.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._stats(cond)
        return mean + y * torch.exp(log_std)


class FlowStep(nn.Module):
    """One Glow step: ActNorm -> InvConv1x1LU -> AffineCoupling."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1LU(channels), AffineCoupling(channels, hidden)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = _zeros(x)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y
