"""Cascaded generation (Imagen style): a base family at low resolution, then a super-resolution decoder.

A composite family. ``cascade`` holds

  ``base``     any registered single-stage family, built through the registry
               (``zoo.api.get_model_class``; no family module is imported) at ``low`` x ``low``
               and trained on the training images downsampled to that size;
  ``decoder``  a conditional diffusion UNet (``zoo.nn.unet.UNet`` with ``noise_cond``) that
               turns a ``low`` x ``low`` image into an ``image_size`` image, trained on
               (downsampled, original) pairs of training images.

Stages: ``{"decoder": ("decoder",), "base": ("base.<phase>", ...)}``, trained in that order by
one ``zoo train`` call (independent: the decoder learns from real pairs, never from the base); ``base_share`` (recorded in config.json, and by the trainer in
train.json as ``stage_fractions``) is the base's share of the FLOP budget. A base with several
phases (gan, vae_gan: "disc" then "gen"/"vae") keeps them, prefixed, in its stage, with its own
optimizers (``configure_optimizer`` is delegated). Multi-stage bases (vqvae, latent_diffusion)
are refused: their stage hooks write fields into their config (latent_diffusion's latent
scale) that a resumed cascade would not carry back into the base, and neither builds at 14x14
with its default widths anyway.

Downsampling: ``F.interpolate(mode="area")``, i.e. the mean of each (H/low) x (H/low) block,
an exact box filter when ``image_size`` is a multiple of ``low`` (required), then rounded to
the 8-bit grid, so the base learns (and the decoder is conditioned on) proper 8-bit images,
the same values a one-stage model of size ``low`` would see. Area rather than antialiased
bilinear: for integer factors it has no free parameter and no support beyond the block, so a
28x28 digit's stroke mass is preserved exactly.

Decoder conditioning: the small image is (optionally) corrupted, upsampled to full size with
bilinear interpolation (align_corners=False) and concatenated to x_t as extra input channels.
Noise-conditioning augmentation (Ho et al. 2021 "Cascaded diffusion models"; Saharia et al.
2022 "Imagen"): in training each pair gets a level ``a ~ U[0, aug_max]`` and the small image
becomes ``sqrt(1 - a^2) * small + a * eps`` (variance preserving, at the small resolution,
before upsampling); ``a`` is embedded and added to the timestep embedding, so the network knows
how much to trust its conditioning. At sampling the level is ``sample_aug`` (sampler option
``aug``), applied the same way to the base's image. Level 0 means clean conditioning;
``aug_max = 0`` trains without augmentation (a sampling level above ``aug_max`` is then outside
what the decoder saw). The defaults are aug_max 0.5 and sample_aug 0.1, not tuned on the
evaluation FID; results/cascade/README.md measures other levels.

The decoder reuses the diffusion process of pixel diffusion (``zoo.schedules``: the cosine
schedule, v prediction, DDIM / DPM-Solver++(2M) samplers, defaults ``dpm++2m`` 20 steps) through
``zoo.diffusion_process.sampler_options``, and its training loss, ``simple_loss`` (weighted over t
by ``loss_weight``), with the upscaled small image as extra input channels.

Sampling: ``generate`` draws the small image from the base and then the decoder, all from the
same per-image generators, so image i still depends only on (seed, i). Options: decoder
sampler keys (``sampler``, ``steps``, ...), ``aug``, and the base's own options prefixed
``base_`` (e.g. ``base_truncation=0.7`` for a GAN base, ``base_steps=10`` for a diffusion base).
``sample_stages`` returns the small images and their upscalings side by side;
``upscale`` runs the decoder alone on given small images (the decoder's FID on real
downsampled test images, the ceiling any base can reach through it: benchmarks/bench_cascade.py).

Bench rows: ``cascade_vae_gan`` and ``cascade_diffusion`` are presets (subclasses whose only
change is the default ``base``), so ``zoo bench --families cascade_vae_gan,cascade_diffusion``
runs them at the profile's budget like any other family. All cascade classes set
``in_default_bench = False``: ``--families all`` (the README's quick job) leaves them out.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..api import Generator, ModelConfig, get_model_class, list_models, register_model
from ..config import apply_overrides, from_dict, parse_sets, to_dict
from ..diffusion_process import sampler_options, simple_loss
from ..errors import ZooError
from ..images import to_float, to_uint8
from ..nn.unet import UNet
from ..schedules import NoiseSchedule, SAMPLER_KEYS, check_loss_weight, sample as run_sampler

BASE_PREFIX = "base."        # phase names of the base inside the cascade
BASE_OPT = "base_"           # sampler options passed to the base
DOWNSAMPLE_CHUNK = 4096      # training images downsampled at a time in begin_stage


@dataclasses.dataclass
class CascadeConfig(ModelConfig):
    """The decoder's UNet, noise process, default sampler and loss, then the cascade's own fields."""
    lr: float = 1e-3                       # decoder learning rate (the base keeps its own)
    # the decoder's UNet (zoo.nn.unet): pixel diffusion's widths (28 -> 14 -> 7) without its mid
    # blocks, 18.5 MFLOP per image forward (FlopCounterMode), 7.1 GFLOP per training step at batch 128
    widths: tuple[int, ...] = (8, 16, 32)
    blocks: int = 1                        # residual blocks per level, encoder and decoder each
    mid_blocks: int = 0                    # residual blocks on each side of the lowest-level attention
    attn_heads: int = 2
    dropout: float = 0.0
    # the decoder's noise process (zoo.schedules)
    timesteps: int = 1000                  # T
    schedule: str = "cosine"               # "cosine" (Nichol & Dhariwal) | "linear" (Ho et al.)
    prediction: str = "v"                  # "v" | "epsilon"
    # the decoder's default sampler
    sampler: str = "dpm++2m"               # "ddpm" | "ddim" | "dpm++2m" | "dpm++2m-sde"
    steps: int = 20                        # default steps of the default sampler (ddpm: T)
    eta: float = 0.0                       # DDIM eta
    spacing: str = "linspace"              # timestep spacing: "linspace" | "trailing" | "leading"
    clip: float = 1.0                      # clamp predicted x0 to [-clip, clip] when sampling (0: off)
    variance: str = "small"                # fixed variance of p(x_{t-1}|x_t): "small" | "large"
    # the decoder's loss
    loss_weight: str = "uniform"           # weight of the simple loss over t: "uniform" | "min-snr"
    snr_gamma: float = 5.0                 # gamma of "min-snr"
    # the cascade
    base: str = "vae_gan"                  # any registered single-stage family that builds at low x low
    low: int = 14                          # side of the base's images (image_size must be a multiple)
    base_share: float = 0.5                # the base stage's share of the training budget
    base_set: str = ""                     # overrides of the base's config, "key=value;key=value"
    base_tiny: bool = False                # build the base from its tiny test config
    base_config: dict = dataclasses.field(default_factory=dict)  # the base's full config, filled at build
    aug_max: float = 0.5                   # training: augmentation level a ~ U[0, aug_max] (0: none)
    sample_aug: float = 0.1                # sampling: the level applied to the base's image


def downsample(x: torch.Tensor, low: int) -> torch.Tensor:
    """Images (B,C,H,W) in [-1, 1] -> (B,C,low,low): block means (area), rounded to the 8-bit grid."""
    small = F.interpolate(x, size=(low, low), mode="area")
    return ((small + 1.0) * 127.5).round().clamp(0, 255) / 127.5 - 1.0


def upsample(small: torch.Tensor, size: int) -> torch.Tensor:
    """(B,C,low,low) -> (B,C,size,size), bilinear (align_corners=False): the decoder's conditioning."""
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def augment(small: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise-conditioning augmentation: sqrt(1 - a^2) small + a noise, a = level (B,) in [0, 1]."""
    a = level.view(-1, *([1] * (small.dim() - 1))).to(small.dtype)
    return (1 - a * a).sqrt() * small + a * noise


class SRDecoder(nn.Module):
    """Conditional diffusion decoder: small image (B,C,low,low) -> image (B,C,size,size).

    Not a family: the ``decoder`` stage of the cascade (see the module docstring), configured by
    the decoder's fields of :class:`CascadeConfig`.
    """

    def __init__(self, config: CascadeConfig):
        super().__init__()
        c = self.config = config
        self.schedule = NoiseSchedule(c.schedule, c.timesteps)
        check_loss_weight(c.loss_weight, c.snr_gamma, c.prediction)  # one line at build, not at the first step
        self.unet = UNet(2 * c.channels, c.channels, tuple(c.widths), c.blocks, c.attn_heads,
                         dropout=c.dropout, mid_blocks=c.mid_blocks, noise_cond=True)

    def condition(self, small: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The conditioning channels: the augmented small image, upsampled to full size."""
        return upsample(augment(small, level, noise), self.config.image_size)

    def loss(self, x0: torch.Tensor, small: torch.Tensor) -> dict[str, torch.Tensor]:
        """The simple diffusion loss (``zoo.diffusion_process.simple_loss``) on x0 (B,C,H,W), the
        network conditioned on its small version; draws the augmentation level and noise, then t and
        the diffusion noise, from the global RNG on x0's device."""
        B, c = x0.shape[0], self.config
        level = torch.rand(B, device=x0.device) * c.aug_max                      # (B,) in [0, aug_max]
        cond = self.condition(small, level, torch.randn_like(small))             # (B, C, H, W)

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(torch.cat([x_t, cond], dim=1), t, aug_level=level)
        return simple_loss(self.schedule, c, x0, denoise)

    def options(self, opts: dict) -> tuple[dict, float]:
        """(diffusion sampler options, augmentation level) in effect for ``opts``."""
        opts = dict(opts)
        aug = opts.pop("aug", None)
        aug = self.config.sample_aug if aug is None else aug
        try:
            aug = float(aug)
        except (TypeError, ValueError):
            raise ZooError(f"aug must be a number in [0, 1], got {aug!r}") from None
        if not 0.0 <= aug <= 1.0:
            raise ZooError(f"aug must be in [0, 1], got {aug}")
        return sampler_options(self.config, self.schedule, opts), aug

    def upscale(self, small: torch.Tensor, gens: list[torch.Generator], **opts) -> torch.Tensor:
        """Small images (B,C,low,low) in [-1, 1] -> images (B,C,H,W) in [-1, 1]; the augmentation noise
        and every sampler draw come from ``gens`` (one per image)."""
        o, aug = self.options(opts)
        c = self.config
        B = small.shape[0]
        noise = rng.randn(gens, *small.shape[1:])                                # (B, C, low, low)
        level = torch.full((B,), aug, device=small.device)
        cond = self.condition(small, level, noise.to(small.device))              # (B, C, H, W)

        def net(x_t, t):
            return self.unet(torch.cat([x_t, cond], dim=1), t, aug_level=level)
        out = run_sampler(net, (c.channels, c.image_size, c.image_size), gens, self.schedule,
                          prediction=c.prediction, **o)
        return out.x.clamp(-1, 1)

    def nfe(self, opts: dict) -> int:
        return self.options(opts)[0]["steps"]


def _base_config(cls: type[Generator], cfg: CascadeConfig) -> ModelConfig:
    """The base family's default (or, with ``base_tiny``, tiny) config at low x low, adapted
    by the family to images ``image_size // low`` times smaller (``Generator.lower_resolution_config``:
    vae, vae_gan, gan and flow drop their finest levels, so they keep their coarse grid and the
    decoder provides the finest levels). ``base_set`` overrides apply after this."""
    make = cls.tiny_config if cfg.base_tiny else cls.Config
    return cls.lower_resolution_config(make(channels=cfg.channels, image_size=cfg.low), cfg.image_size // cfg.low)


def _base_error(cfg: CascadeConfig, why: str) -> ZooError:
    """A one-line error naming the bases that do work at this size."""
    ok = []
    for name in list_models():
        cls = get_model_class(name)
        if issubclass(cls, Cascade) or len(cls.stage_plan()) != 1:
            continue
        try:
            cls(_base_config(cls, cfg))
        except Exception:  # noqa: BLE001 - any failure means "not at this size"
            continue
        ok.append(name)
    return ZooError(f"cascade: {why} (bases that work at {cfg.low}x{cfg.low}: {', '.join(ok) or 'none'})")


def build_base(cfg: CascadeConfig) -> Generator:
    """The base model from ``cfg.base_config`` if filled (a saved run), else from the base family's
    default (or tiny) config at low x low with ``cfg.base_set`` applied; fills ``cfg.base_config``."""
    cls = get_model_class(cfg.base)  # one-line error for an unknown family
    if issubclass(cls, Cascade):
        raise _base_error(cfg, f"the base cannot itself be a cascade ({cfg.base})")
    if len(cls.stage_plan()) != 1:
        raise _base_error(cfg, f"base {cfg.base} has several stages ({', '.join(cls.stage_plan())}); "
                               f"only single-stage bases are supported")
    if cfg.base_config:
        bcfg = from_dict(cls.Config, cfg.base_config)
        if (bcfg.channels, bcfg.image_size) != (cfg.channels, cfg.low):
            raise ZooError(f"cascade: base_config is for {bcfg.channels}x{bcfg.image_size}x{bcfg.image_size} "
                           f"images, not {cfg.channels}x{cfg.low}x{cfg.low}")
    else:
        bcfg = _base_config(cls, cfg)
        sets = parse_sets([s for s in cfg.base_set.split(";") if s.strip()])
        bad = {"channels", "image_size"} & set(sets)
        if bad:
            raise ZooError(f"cascade: base_set cannot set {', '.join(sorted(bad))} (use low=)")
        bcfg = apply_overrides(bcfg, sets)
    if bcfg.cond_dim:
        raise _base_error(cfg, "a conditional base (cond_dim > 0) is not supported: cascades are unconditional")
    try:
        base = cls(bcfg)
    except ZooError as e:
        raise _base_error(cfg, f"base {cfg.base} does not build at {cfg.low}x{cfg.low}: {e}") from None
    except (ValueError, AssertionError, RuntimeError, IndexError, TypeError, ZeroDivisionError) as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise _base_error(cfg, f"base {cfg.base} does not build at {cfg.low}x{cfg.low}: {msg}") from None
    cfg.base_config = to_dict(bcfg)
    return base


@register_model("cascade")
class Cascade(Generator):
    """A base family at low x low, then a noise-conditioned diffusion super-resolution decoder."""

    Config = CascadeConfig
    likelihood = "none"
    in_default_bench = False   # `zoo bench --families all` leaves the cascades out: name them

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"base_tiny": True, "widths": (8, 8), "timesteps": 50, "steps": 3, **fields})

    def __init__(self, config: CascadeConfig):
        super().__init__(config)
        c = config
        if c.cond_dim:
            raise ZooError("cascade models are not conditional yet: train a single family with --conditional")
        if not 1 < c.low < c.image_size or c.image_size % c.low:
            raise ZooError(f"cascade: low must be a divisor of image_size {c.image_size} between 2 and "
                           f"{c.image_size // 2}, got {c.low}")
        if not 0 < c.base_share < 1:
            raise ZooError(f"cascade: base_share must be in (0, 1), got {c.base_share}")
        if not 0 <= c.aug_max <= 1 or not 0 <= c.sample_aug <= 1:
            raise ZooError(f"cascade: aug_max and sample_aug must be in [0, 1], got {c.aug_max}, {c.sample_aug}")
        self.base = build_base(c)
        self.decoder = SRDecoder(c)
        self._base_stage = next(iter(self.base.stage_plan()))
        self._base_phases = next(iter(self.base.stage_plan().values()))

    # ---- training ------------------------------------------------------------------------
    def stage_plan(self) -> dict[str, tuple[str, ...]]:
        """{"decoder": ("decoder",), "base": the base's phases, prefixed "base."} (per instance:
        the phases depend on the configured base). The decoder first: neither stage uses the
        other's output in training (the decoder learns from real pairs), and a first stage that
        is a plain regression is the one whose loss reliably falls early (the adversarial bases'
        discriminator loss does not)."""
        return {"decoder": ("decoder",), "base": tuple(BASE_PREFIX + p for p in self._base_phases)}

    def stage_fractions(self):
        return {"decoder": 1.0 - self.config.base_share, "base": self.config.base_share}

    def param_groups(self):
        groups = {BASE_PREFIX + p: v for p, v in self.base.param_groups().items()}
        groups["decoder"] = list(self.decoder.parameters())
        return groups

    def configure_optimizer(self, phase, params):
        if phase.startswith(BASE_PREFIX):
            return self.base.configure_optimizer(phase[len(BASE_PREFIX):], params)
        return torch.optim.Adam(params, lr=self.config.lr, betas=(0.9, 0.99))

    @torch.no_grad()
    def begin_stage(self, stage, images):
        """Stage "base": the base's own stage hook, on the downsampled uint8 training images."""
        if stage != "base":
            return
        small = torch.empty(images.shape[0], images.shape[1], self.config.low, self.config.low,
                            dtype=torch.uint8, device=images.device)
        for s in range(0, images.shape[0], DOWNSAMPLE_CHUNK):
            small[s:s + DOWNSAMPLE_CHUNK] = to_uint8(downsample(to_float(images[s:s + DOWNSAMPLE_CHUNK]),
                                                                self.config.low)).to(images.device)
        self.base.begin_stage(self._base_stage, small)

    def loss(self, x, cond=None, *, phase="decoder"):
        small = downsample(x, self.config.low)                                   # (B, C, low, low)
        if phase.startswith(BASE_PREFIX) and phase[len(BASE_PREFIX):] in self._base_phases:
            return self.base.loss(small, cond, phase=phase[len(BASE_PREFIX):])
        if phase == "decoder":
            return self.decoder.loss(x, small)
        raise ZooError(f"unknown phase {phase!r} for {self.name} (phases: "
                       f"{', '.join(p for ps in self.stage_plan().values() for p in ps)})")

    # ---- sampling ------------------------------------------------------------------------
    @staticmethod
    def _split(opts: dict) -> tuple[dict, dict]:
        """Sampler options -> (the base's, with the prefix removed; the decoder's)."""
        base = {k[len(BASE_OPT):]: v for k, v in opts.items() if k.startswith(BASE_OPT)}
        dec = {k: v for k, v in opts.items() if not k.startswith(BASE_OPT)}
        unknown = sorted(set(dec) - set(SAMPLER_KEYS) - {"aug"})
        if unknown:
            raise ZooError(f"unknown cascade sampler option(s) {', '.join(unknown)} (decoder: "
                           f"{', '.join(SAMPLER_KEYS)}, aug; the base's own options take the prefix {BASE_OPT})")
        return base, dec

    def generate_stages(self, gens, cond=None, **opts) -> tuple[torch.Tensor, torch.Tensor]:
        """(small images (B,C,low,low), their upscalings (B,C,H,W)), both in [-1, 1]."""
        base_opts, dec_opts = self._split(opts)
        self.decoder.options(dec_opts)  # a bad decoder option fails before the base runs
        small = self.base.generate(gens, **base_opts).clamp(-1, 1)
        small = ((small + 1.0) * 127.5).round() / 127.5 - 1.0   # the 8-bit image a base sample is
        return small, self.decoder.upscale(small, gens, **dec_opts)

    def generate(self, gens, cond=None, **opts):
        return self.generate_stages(gens, **opts)[1]

    def nfe(self, **opts):
        """Base network evaluations plus the decoder's sampler steps (per image)."""
        base_opts, dec_opts = self._split(opts)
        return self.base.nfe(**base_opts) + self.decoder.nfe(dec_opts)

    @torch.no_grad()
    def sample_stages(self, n: int, *, seed: int = 0, batch_size: int = 256, **opts) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (small (n,C,low,low), full (n,C,H,W)) on the CPU: each stage's output for the same
        images as ``sample(n, seed=seed, **opts)`` (image i depends only on (seed, i))."""
        c = self.config
        smalls, fulls = [], []
        with self.sampling_mode():
            for _, gens in rng.batches(seed, n, batch_size):
                s, f = self.generate_stages(gens, **opts)
                smalls.append(to_uint8(s))
                fulls.append(to_uint8(f))
        if not fulls:
            return (torch.empty(0, c.channels, c.low, c.low, dtype=torch.uint8),
                    torch.empty(0, c.channels, c.image_size, c.image_size, dtype=torch.uint8))
        return torch.cat(smalls), torch.cat(fulls)

    @torch.no_grad()
    def upscale(self, small: torch.Tensor, *, seed: int = 0, batch_size: int = 256, **opts) -> torch.Tensor:
        """The decoder alone on given small uint8 images (n,C,low,low): uint8 (n,C,H,W) on the CPU;
        image i uses the generator of (seed, i). For the decoder's FID on real downsampled images."""
        c = self.config
        if small.dtype != torch.uint8 or small.dim() != 4 or tuple(small.shape[1:]) != (c.channels, c.low, c.low):
            raise ZooError(f"upscale needs uint8 images (n, {c.channels}, {c.low}, {c.low}), "
                           f"got {small.dtype} {tuple(small.shape)}")
        _, dec_opts = self._split(opts)
        out = []
        with self.sampling_mode():
            for s, gens in rng.batches(seed, small.shape[0], batch_size):
                x = to_float(small[s:s + len(gens)]).to(self.device)
                out.append(to_uint8(self.decoder.upscale(x, gens, **dec_opts)))
        return torch.cat(out) if out else torch.empty(0, c.channels, c.image_size, c.image_size, dtype=torch.uint8)

    def downsample_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n,C,H,W) -> the uint8 (n,C,low,low) images the base is trained on."""
        return to_uint8(downsample(to_float(images), self.config.low))


# ---- presets: the bench rows -------------------------------------------------------------
@dataclasses.dataclass
class CascadeVAEGANConfig(CascadeConfig):
    base: str = "vae_gan"


@dataclasses.dataclass
class CascadeDiffusionConfig(CascadeConfig):
    base: str = "diffusion"


@register_model("cascade_vae_gan")
class CascadeVAEGAN(Cascade):
    """``cascade`` with base vae_gan by default (a bench row: ``zoo bench --families cascade_vae_gan``)."""
    Config = CascadeVAEGANConfig


@register_model("cascade_diffusion")
class CascadeDiffusion(Cascade):
    """``cascade`` with base diffusion by default (a bench row: ``zoo bench --families cascade_diffusion``)."""
    Config = CascadeDiffusionConfig
