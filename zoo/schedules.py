"""Noise schedules, the forward process and samplers for diffusion models.

Kept apart from the networks (like diffusers' schedulers): a sampler only sees a model
function ``out = net(x_t, t)`` returning epsilon or v for a batch ``x_t`` and integer
timesteps ``t`` (B,), so one implementation serves pixel and latent diffusion.

Conventions. Training timesteps are 0-indexed, ``t in {0, ..., T-1}``; index t is step t+1
of Ho et al. (2020). ``alpha_bar[t] = prod_{s<=t} (1 - beta_s)``, and the forward process is
``x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps``. Samplers visit a decreasing
list of timesteps (one network evaluation each) and then jump to the clean end, where
alpha_bar is 1. Every sampler returns its number of network evaluations, and can keep the
predicted x0 at chosen steps (for trajectories). All noise is drawn through ``zoo.rng`` from
per-sample generators, so sample i depends only on its own generator.

Each sampler is a scheduler object with diffusers' two calls, ``set_timesteps`` and ``step``;
``sample`` is a loop over one, and a user can write the loop by hand::

    s = make_sampler("dpm++2m", schedule, prediction="epsilon")
    s.set_timesteps(20)
    for t in s.timesteps:
        x = s.step(net(x, torch.full((len(x),), t)), t, x, generator=gens).prev_sample

Samplers, by their ``make_sampler`` names (classes DDPMSampler, DDIMSampler, DPMSolverPP2M and
DPMSolverPP2MSDE, in this order):
  ``ddpm``     ancestral sampling (Ho et al. 2020), all T steps by default; fewer steps use the
               respaced process of Nichol & Dhariwal (2021).
  ``ddim``     Song et al. (2021), any number of steps, eta = 0 (deterministic) .. 1.
  ``dpm++2m``  DPM-Solver++(2M) (Lu et al. 2022), multistep second order in log-SNR with data
               prediction; the last step (to the clean end, log-SNR = inf) is first order.
  ``dpm++2m-sde``  the stochastic DPM-Solver++(2M) of the same paper (its SDE solver, with the
               midpoint form of the second-order term): each step keeps e^{-h} of the current
               noise direction and draws the rest afresh, like ancestral sampling. At few steps
               it follows the reverse SDE that 1000-step DDPM samples, where an imperfect
               network's ODE samples (ddim, dpm++2m) are worse (results/diffusion).

Timestep spacing (``spacing``) for fewer steps than T:
  ``leading``  t = 0, c, 2c, ... with c = T // steps: the uniform schedule of the DDIM paper
               (it never visits t = T-1, so it starts from a slightly less noisy level).
  ``trailing`` t = round(T - k T / steps) - 1: starts at T-1 (Lin et al. 2024).
  ``linspace`` t = round(linspace(T-1, 0, steps)): both ends, T-1 and 0 (the default).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Sequence

import torch

from . import rng
from .config import check_choice
from .errors import ZooError

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
LOSS_WEIGHTS = ("uniform", "min-snr")
SAMPLERS = ("ddpm", "ddim", "dpm++2m", "dpm++2m-sde")
SPACINGS = ("linspace", "trailing", "leading")
VARIANCES = ("small", "large")


def check_loss_weight(kind: str, gamma: float, prediction: str) -> None:
    """One-line ZooError for a bad loss weighting (``NoiseSchedule.loss_weight``'s arguments)."""
    check_choice("loss_weight", kind, LOSS_WEIGHTS)
    if kind == "min-snr" and not gamma > 0:
        raise ZooError(f"snr_gamma must be > 0, got {gamma}")
    check_choice("prediction target", prediction, PREDICTIONS)


def _expand(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) in x's dtype and device, for broadcasting against x."""
    return a.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


class NoiseSchedule:
    """A discrete variance-preserving noise schedule with T steps (float64 constants)."""

    def __init__(self, kind: str = "cosine", timesteps: int = 1000):
        check_choice("noise schedule", kind, SCHEDULES)
        if timesteps < 2:
            raise ZooError(f"timesteps must be >= 2, got {timesteps}")
        self.kind, self.T = kind, timesteps
        if kind == "linear":  # Ho et al. 2020, rescaled so any T spans the same total noise
            scale = 1000.0 / timesteps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
        else:  # Nichol & Dhariwal 2021: alpha_bar(t) = f(t)/f(0), f = cos^2((t/T + s)/(1 + s) pi/2)
            s = 0.008
            steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.betas = betas                                     # (T,)
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)      # (T,)
        self._ab_ext = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])  # index t+1

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """alpha_bar at integer timesteps t (any shape; t = -1 is the clean end, alpha_bar = 1)."""
        t = torch.as_tensor(t, device="cpu").long()  # the table stays on the CPU in float64
        return self._ab_ext[t + 1]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The forward process q(x_t | x0): sqrt(ab_t) x0 + sqrt(1 - ab_t) noise; t is (B,)."""
        ab = _expand(self.alpha_bar(t), x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0 (Salimans & Ho 2022)."""
        ab = _expand(self.alpha_bar(t), x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
        """The regression target of the simple loss for ``prediction`` ("epsilon" or "v")."""
        check_choice("prediction target", prediction, PREDICTIONS)
        return noise if prediction == "epsilon" else self.v_target(x0, noise, t)

    def loss_weight(self, t: torch.Tensor, prediction: str, kind: str, gamma: float) -> torch.Tensor | None:
        """Per-sample weight (B,) of the simple loss at timesteps t, or None for "uniform" (plain MSE).

        "min-snr" is Min-SNR-gamma (Hang et al. 2023): the loss counted as an x0 error gets the weight
        min(SNR, gamma), SNR = ab/(1 - ab). An epsilon error is SNR times an x0 error and a v error
        (SNR + 1) times one, so the weight on the MSE is min(SNR, gamma)/SNR for "epsilon" and
        min(SNR, gamma)/(SNR + 1) for "v"."""
        check_loss_weight(kind, gamma, prediction)
        if kind == "uniform":
            return None
        ab = self.alpha_bar(t)                                    # (B,) float64
        snr = ab / (1 - ab)
        w = snr.clamp(max=gamma) / (snr if prediction == "epsilon" else snr + 1)
        return w.float()

    def split(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str,
              clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output (epsilon or v) at (x_t, t) -> (x0, eps) predictions.

        With ``clip``, x0 is clamped to [-clip, clip] and eps recomputed from the clamped x0
        so that x_t = sqrt(ab) x0 + sqrt(1 - ab) eps still holds.
        """
        check_choice("prediction target", prediction, PREDICTIONS)
        ab = _expand(self.alpha_bar(t), x_t)
        a, s = ab.sqrt(), (1 - ab).sqrt()
        if prediction == "epsilon":
            eps = out
            x0 = (x_t - s * eps) / a
        else:  # v
            x0 = a * x_t - s * out
            eps = s * x_t + a * out
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x_t - a * x0) / s
        return x0, eps

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                  t_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t_prev} | x_t, x0) for t_prev < t (t_prev = -1: clean end).

        With t_prev = t - 1 this is Ho et al. eq. 7; with a gap it is the respaced process.
        The variance is (B,) float64.
        """
        ab, ab_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        beta = 1 - ab / ab_prev                                     # beta of the (respaced) step
        c0 = ab_prev.sqrt() * beta / (1 - ab)
        ct = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
        return _expand(c0, x0) * x0 + _expand(ct, x_t) * x_t, self.posterior_variance(t, t_prev)

    def posterior_variance(self, t: torch.Tensor | int, t_prev: torch.Tensor | int) -> torch.Tensor:
        """beta tilde = (1 - ab_prev) / (1 - ab_t) * beta of the step t -> t_prev (float64)."""
        ab, ab_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        return (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)

    def step_beta(self, t: torch.Tensor, t_prev: torch.Tensor) -> torch.Tensor:
        """beta of the (possibly respaced) step t -> t_prev: 1 - ab_t / ab_prev, (B,) float64."""
        return 1 - self.alpha_bar(t) / self.alpha_bar(t_prev)


def timesteps(T: int, steps: int, spacing: str = "linspace", t_start: int | None = None) -> list[int]:
    """The decreasing training timesteps a ``steps``-step sampler evaluates the network at.

    ``t_start`` (default T-1) is the noisiest timestep allowed; sampling from a partly noised
    image x_{t_start} uses the timesteps 0..t_start only.
    """
    check_choice("timestep spacing", spacing, SPACINGS)
    top = T - 1 if t_start is None else int(t_start)
    if not 0 <= top < T:
        raise ZooError(f"t_start must be in [0, {T - 1}], got {t_start}")
    n = top + 1
    if not 1 <= steps <= n:
        raise ZooError(f"steps must be between 1 and {n}, got {steps}")
    if spacing == "linspace":
        ts = torch.linspace(top, 0, steps, dtype=torch.float64).round().long() if steps > 1 else torch.tensor([top])
    elif spacing == "trailing":
        ts = torch.arange(n, 0, -n / steps, dtype=torch.float64).round().long() - 1
    else:  # leading
        ts = (torch.arange(steps, dtype=torch.long) * (n // steps)).flip(0)
    out = ts.tolist()
    assert len(out) == steps and all(a > b for a, b in zip(out, out[1:])), out
    return out


@dataclasses.dataclass
class SamplerOutput:
    """Result of a sampler run."""
    x: torch.Tensor                      # (B, ...) the sample at the clean end
    nfe: int                             # network evaluations made (each on the whole batch)
    x0: dict[int, torch.Tensor]          # step index -> predicted x0 at that step (as requested)
    timesteps: list[int]                 # the training timesteps visited, in order


@dataclasses.dataclass
class StepOutput:
    """Result of one sampler step (diffusers' names)."""
    prev_sample: torch.Tensor            # (B, ...) x at the next timestep (the sample after the last step)
    pred_original_sample: torch.Tensor   # (B, ...) the predicted x0 at this step


def default_steps(sampler: str, T: int) -> int:
    """Steps a sampler uses when none are given: T for ddpm, 50 otherwise."""
    return T if sampler == "ddpm" else min(50, T)


def _check_eta(eta: float) -> None:
    """One-line ZooError unless DDIM's noise scale is in [0, 1]."""
    if not 0.0 <= eta <= 1.0:
        raise ZooError(f"eta must be in [0, 1], got {eta}")


class Sampler:
    """A sampler as steps, diffusers-style: ``set_timesteps`` chooses the timesteps (``.timesteps``,
    decreasing training timesteps), then ``step`` is called once per timestep, in order, with the
    network's output (epsilon or v, per ``prediction``) at (x, t) and returns x at the next timestep.
    The last step lands on the predicted x0 (the clean end) without noise. ``clip`` clamps the
    predicted x0 to [-clip, clip]. Noise comes from ``generator``: one generator per sample."""

    name: ClassVar[str]

    def __init__(self, schedule: NoiseSchedule, *, prediction: str = "epsilon", clip: float | None = None):
        check_choice("prediction target", prediction, PREDICTIONS)
        self.schedule, self.prediction, self.clip = schedule, prediction, clip
        self.timesteps: list[int] = []
        self._i = 0                                                    # index of the next step

    def set_timesteps(self, steps: int | None = None, *, spacing: str = "linspace",
                      t_start: int | None = None) -> None:
        """Set ``.timesteps``: ``steps`` of them (default: T for ddpm, 50 otherwise) by ``spacing``
        (see ``timesteps``), the noisiest being ``t_start`` (default T-1)."""
        span = self.schedule.T if t_start is None else int(t_start) + 1            # timesteps available
        steps = default_steps(self.name, span) if steps is None else int(steps)
        self.timesteps = timesteps(self.schedule.T, steps, spacing, t_start)
        self._i = 0

    def step(self, model_output: torch.Tensor, t: int, x: torch.Tensor, *,
             generator: list[torch.Generator] | None = None) -> StepOutput:
        """One step from x (B, ...) at timestep t (the next of ``.timesteps``, all samples alike) given
        the network's output there; ``generator`` holds one generator per sample (B of them) and is
        needed by the steps that draw noise. After the last step the next one is the first again."""
        i = self._i
        if not self.timesteps or int(t) != self.timesteps[i]:
            want = self.timesteps[i] if self.timesteps else "none (call set_timesteps first)"
            raise ZooError(f"step got timestep {int(t)}, expected {want}")
        t_prev = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1   # -1: the clean end
        B = x.shape[0]
        tb = torch.full((B,), int(t), dtype=torch.long, device=x.device)
        tpb = torch.full((B,), t_prev, dtype=torch.long, device="cpu")          # only indexes the CPU table
        x0, eps = self.schedule.split(model_output, x, tb, self.prediction, self.clip)
        # every sampler's last step lands on its x0 prediction (no noise)
        prev = x0 if t_prev < 0 else self._update(i, x, x0, eps, tb, tpb, generator)
        self._i = (i + 1) % len(self.timesteps)
        return StepOutput(prev_sample=prev, pred_original_sample=x0)

    def _update(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, tb: torch.Tensor,
                tpb: torch.Tensor, gens: list[torch.Generator] | None) -> torch.Tensor:
        """x at ``tpb`` from x at ``tb`` (step index i), given the (x0, eps) predictions."""
        raise NotImplementedError

    @staticmethod
    def _noise(gens: list[torch.Generator] | None, x: torch.Tensor) -> torch.Tensor:
        """Fresh standard normal noise shaped like x, one generator per sample."""
        if gens is None or len(gens) != x.shape[0]:
            raise ZooError(f"this step draws noise: pass one generator per sample ({x.shape[0]}) as generator=")
        return rng.randn(gens, *x.shape[1:])


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020); on fewer than T timesteps, the respaced process of
    Nichol & Dhariwal (2021). ``variance``: "small" (posterior beta tilde) or "large" (beta)."""

    name = "ddpm"

    def __init__(self, schedule: NoiseSchedule, *, prediction: str = "epsilon", clip: float | None = None,
                 variance: str = "small"):
        check_choice("variance", variance, VARIANCES)
        super().__init__(schedule, prediction=prediction, clip=clip)
        self.variance = variance

    def _update(self, i, x, x0, eps, tb, tpb, gens):
        mean, var = self.schedule.posterior(x0, x, tb, tpb)
        if self.variance == "large":
            var = self.schedule.step_beta(tb, tpb)
        return mean + _expand(var.sqrt(), x) * self._noise(gens, x)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021): ``eta`` = 0 is deterministic, 1 draws as much noise as DDPM."""

    name = "ddim"

    def __init__(self, schedule: NoiseSchedule, *, prediction: str = "epsilon", clip: float | None = None,
                 eta: float = 0.0):
        _check_eta(eta)
        super().__init__(schedule, prediction=prediction, clip=clip)
        self.eta = eta

    def _update(self, i, x, x0, eps, tb, tpb, gens):
        ab, ab_prev = self.schedule.alpha_bar(tb), self.schedule.alpha_bar(tpb)   # (B,) float64
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        dir_coef = (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt()
        x = _expand(ab_prev.sqrt(), x) * x0 + _expand(dir_coef, x) * eps
        if self.eta > 0:
            x = x + _expand(sigma, x) * self._noise(gens, x)
        return x


class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022): exact in the linear part, the x0 prediction extrapolated
    linearly in the half log-SNR lambda from the previous step's (first order on the first step)."""

    name = "dpm++2m"
    _x0_prev: torch.Tensor | None = None                               # the previous step's x0 prediction

    def _update(self, i, x, x0, eps, tb, tpb, gens):
        ab, ab_prev = self.schedule.alpha_bar(tb), self.schedule.alpha_bar(tpb)
        lam, lam_prev = _log_snr_half(ab), _log_snr_half(ab_prev)
        h = lam_prev - lam                                                 # > 0
        if i == 0:
            d = x0
        else:
            t_last = torch.full((x.shape[0],), self.timesteps[i - 1], device="cpu")
            r = (lam - _log_snr_half(self.schedule.alpha_bar(t_last))) / h
            d = _expand(1 + 0.5 / r, x0) * x0 - _expand(0.5 / r, x0) * self._x0_prev
        self._x0_prev = x0
        ratio = ((1 - ab_prev) / (1 - ab)).sqrt()                          # sigma_prev / sigma
        return self._combine(x, d, ab_prev, ratio, h, gens)

    def _combine(self, x, d, ab_prev, ratio, h, gens):
        """The step's update from x and the extrapolated x0 ``d``."""
        return _expand(ratio, x) * x - _expand(ab_prev.sqrt() * torch.expm1(-h), x) * d


class DPMSolverPP2MSDE(DPMSolverPP2M):
    """The stochastic DPM-Solver++(2M): e^{-h} of the noise direction kept, sqrt(1 - e^{-2h}) drawn afresh."""

    name = "dpm++2m-sde"

    def _combine(self, x, d, ab_prev, ratio, h, gens):
        fresh = -torch.expm1(-2 * h)                                       # 1 - e^{-2h}
        return (_expand(ratio * torch.exp(-h), x) * x + _expand(ab_prev.sqrt() * fresh, x) * d
                + _expand((1 - ab_prev).sqrt() * fresh.sqrt(), x) * self._noise(gens, x))


SAMPLER_CLASSES: dict[str, type[Sampler]] = {c.name: c for c in (DDPMSampler, DDIMSampler, DPMSolverPP2M,
                                                                  DPMSolverPP2MSDE)}


def make_sampler(sampler: str, schedule: NoiseSchedule, *, prediction: str = "epsilon",
                 clip: float | None = None, eta: float = 0.0, variance: str = "small") -> Sampler:
    """The scheduler object for ``sampler`` (one of SAMPLERS); every option is checked, and each
    sampler takes the ones it uses (``eta``: ddim, ``variance``: ddpm)."""
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("variance", variance, VARIANCES)
    _check_eta(eta)
    check_choice("prediction target", prediction, PREDICTIONS)
    own = {"ddpm": {"variance": variance}, "ddim": {"eta": eta}}.get(sampler, {})
    return SAMPLER_CLASSES[sampler](schedule, prediction=prediction, clip=clip, **own)


def sample(net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: Sequence[int],
           gens: list[torch.Generator], schedule: NoiseSchedule, *, sampler: str = "ddim",
           steps: int | None = None, eta: float = 0.0, prediction: str = "epsilon",
           spacing: str = "linspace", clip: float | None = None, variance: str = "small",
           keep: Sequence[int] = (), x_init: torch.Tensor | None = None,
           t_start: int | None = None) -> SamplerOutput:
    """Run a sampler from noise (or from ``x_init`` at ``t_start``) to the clean end.

    net: ``net(x_t, t)`` -> epsilon or v (per ``prediction``) for x_t (B, *shape), t (B,) long.
    shape: per-sample shape, e.g. (1, 28, 28). gens: one generator per sample (B of them);
    the initial noise (unless ``x_init`` is given) and any later noise come from them.
    steps: network evaluations (default: T for ddpm, 50 otherwise). eta: DDIM's noise scale.
    clip: clamp predicted x0 to [-clip, clip] (pixels: 1.0). variance: ddpm's step variance,
    "small" (posterior beta tilde) or "large" (beta). keep: step indices (0-based) whose x0
    prediction to return. x_init/t_start: start from a given x_{t_start} instead of noise.
    """
    s = make_sampler(sampler, schedule, prediction=prediction, clip=clip, eta=eta, variance=variance)
    s.set_timesteps(steps, spacing=spacing, t_start=t_start)
    B, shape = len(gens), tuple(shape)
    if x_init is not None:
        if tuple(x_init.shape) != (B, *shape):
            raise ZooError(f"x_init must have shape {(B, *shape)}, got {tuple(x_init.shape)}")
        x = x_init.float()
    else:
        x = rng.randn(gens, *shape)                                   # (B, *shape)
    keep = set(int(k) for k in keep)
    kept: dict[int, torch.Tensor] = {}
    for i, t in enumerate(s.timesteps):
        out = s.step(net(x, torch.full((B,), t, dtype=torch.long, device=x.device)), t, x, generator=gens)
        if i in keep:
            kept[i] = out.pred_original_sample.clone()
        x = out.prev_sample
    return SamplerOutput(x=x, nfe=len(s.timesteps), x0=kept, timesteps=s.timesteps)


def _log_snr_half(ab: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha / sigma) = 0.5 log(ab / (1 - ab)), the half log-SNR of DPM-Solver."""
    return 0.5 * (torch.log(ab) - torch.log1p(-ab))


def evenly_spaced(steps: int, frames: int) -> list[int]:
    """``frames`` step indices from 0 to steps-1, evenly spaced (the last is always steps-1)."""
    if not 1 <= frames <= steps:
        raise ZooError(f"frames must be between 1 and the number of steps ({steps}), got {frames}")
    if frames == 1:
        return [steps - 1]
    return [round(k * (steps - 1) / (frames - 1)) for k in range(frames)]


# ---- sampler options shared by the diffusion families ---------------------------------------
SAMPLER_KEYS = ("sampler", "steps", "eta", "spacing", "clip", "variance")


def resolve_options(defaults: dict, opts: dict, T: int) -> dict:
    """Merge user sampler options over a family's defaults; unknown keys raise ZooError.

    Returns a dict with every key of SAMPLER_KEYS filled, with ``steps`` resolved to an int.
    """
    unknown = sorted(set(opts) - set(SAMPLER_KEYS))
    if unknown:
        raise ZooError(f"unknown sampler option(s) {', '.join(unknown)} (known: {', '.join(SAMPLER_KEYS)})")
    o = {**defaults, **{k: v for k, v in opts.items() if v is not None}}
    check_choice("sampler", o["sampler"], SAMPLERS)
    check_choice("variance", o["variance"], VARIANCES)
    if opts.get("steps") is None and (o["sampler"] == "ddpm" or o.get("steps") is None):
        o["steps"] = default_steps(o["sampler"], T)  # ddpm without steps: all T (ancestral DDPM)
    try:
        o["steps"] = int(o["steps"])
        o["eta"] = float(o["eta"])
    except (TypeError, ValueError):
        raise ZooError(f"steps must be an integer and eta a number, got {o['steps']!r}, {o['eta']!r}") from None
    if not 1 <= o["steps"] <= T:
        raise ZooError(f"steps must be between 1 and {T}, got {o['steps']}")
    check_choice("timestep spacing", o["spacing"], SPACINGS)
    return o
