"""VQ-VAE (van den Oord et al. 2017): a discrete-latent autoencoder, then a transformer prior over its codes.

Two stages, trained in order by one ``zoo train vqvae`` call, each with its own share of the
budget (``ae_fraction``):

1. ``ae``: ConvEncoder -> VectorQuantizer (EMA codebook, dead-code restart) -> ConvDecoder with
   a per-pixel discretized-logistic likelihood over the 256 levels (reconstruction loss in
   nats), plus the quantizer's commitment loss.
2. ``prior``: a CausalTransformer (``zoo.nn.transformer``, shared with the pixel GPT) over the
   raster-ordered code grid (7x7 for 28x28 with three width levels), trained by cross-entropy
   on the codes of the frozen stage-1 encoder.

Sampling draws codes from the prior (KV cache, per-sample generators), then decodes them to the
decoder's mean. ``nfe`` = grid positions + 1 (one cached transformer step per code, one decode).

Conditional (``cond_dim > 0``): only the prior takes the text embedding, projected and added to
its input at every position (``CausalTransformer(cond_dim=...)``); the autoencoder stays unconditional. The prior
phase drops conditions for classifier-free guidance, and sampling mixes the prior's logits as
``null + w * (cond - null)`` (``guidance`` w; one doubled-batch step per code, counted twice in ``nfe``).

Likelihood (a lower bound): the encoder is deterministic, q(z|x) = one-hot at z(x), so
``log p(x) = log sum_z p(z) p(x|z) >= log p_prior(z(x)) + log p(x|z(x))`` -- one term of a sum
of non-negative terms; it is the ELBO with this posterior, whose entropy is 0. The decoder is
a normalized distribution over the 256 pixel levels, so the bound is in the same discrete units
as every other family. Conditional: the same bound on log p(x | cond) with the prior p(z | cond).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ..api import Generator, ModelConfig, register_model
from ..distributions import discretized_logistic_logp
from ..errors import ZooError
from ..images import to_float, to_uint8
from ..nn.conv import ConvDecoder, ConvEncoder, latent_side
from ..nn.quantize import VectorQuantizer, usage_stats
from ..nn.transformer import CausalTransformer


@dataclasses.dataclass
class VQVAEConfig(ModelConfig):
    # stage 1: autoencoder
    widths: tuple[int, ...] = (16, 32, 64)  # channels per level (28 -> 14 -> 7: a 7x7 code grid)
    blocks: int = 0                         # residual blocks per level
    num_codes: int = 256                    # codebook size K (the prior's vocabulary)
    code_dim: int = 32                      # codebook vector size D
    beta: float = 0.25                      # commitment weight
    ema: bool = True                        # EMA codebook updates (False: codebook loss + optimizer)
    ema_decay: float = 0.99
    dead_after: int = 50                    # restart codes unused for this many steps (0: never)
    lr: float = 1e-3                        # Adam learning rate of the autoencoder
    # stage 2: prior
    prior_d_model: int = 64
    prior_layers: int = 3
    prior_heads: int = 4
    prior_dropout: float = 0.0
    prior_lr: float = 2e-3
    # budget and sampler
    ae_fraction: float = 0.45               # share of the training budget for stage 1
    temperature: float = 1.0                # default sampling temperature of the prior
    top_k: int = 0                          # default top-k of the prior (0: no truncation)


@register_model("vqvae")
class VQVAE(Generator):
    """VQ-VAE: conv autoencoder with a vector-quantized 7x7 code grid and a transformer prior."""

    Config = VQVAEConfig
    stages = {"ae": ("ae",), "prior": ("prior",)}
    likelihood = "bound"
    has_latent = True
    guidance = True

    # the recipe at every budget: batch 32 (training is step-limited under a FLOP budget); the sweep
    # behind it is in results/vqvae/README.md ("Recipe for the budget")
    budget_rules = ((float("inf"), {"train.batch_size": 32}),)
    # the size axis (Generator.size_fields): both stages: the autoencoder and the prior (4 heads)
    size_fields = {"widths": 4, "prior_d_model": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md
    size_rule = (0.333, 4.928)
    # the depth axis: the prior's transformer layers (the autoencoder has no residual blocks to count)
    depth_fields = {"prior_layers": 1}

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{"widths": (8, 16, 16), "num_codes": 16, "code_dim": 8, "dead_after": 5,
                             "prior_d_model": 16, "prior_layers": 1, "prior_heads": 2, **fields})

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        c = config
        self.h = latent_side(c.image_size, c.widths)
        if not 0.0 < c.ae_fraction < 1.0:
            raise ZooError(f"ae_fraction must be in (0, 1), got {c.ae_fraction}")
        self.encoder = ConvEncoder(c.channels, c.code_dim, c.widths, c.blocks)
        self.quantizer = VectorQuantizer(c.num_codes, c.code_dim, beta=c.beta, ema=c.ema,
                                         decay=c.ema_decay, dead_after=c.dead_after)
        self.decoder = ConvDecoder(c.code_dim, 2 * c.channels, c.widths, c.blocks)
        self.prior = CausalTransformer(c.num_codes, (self.h, self.h), c.prior_d_model, c.prior_layers,
                                       c.prior_heads, dropout=c.prior_dropout, cond_dim=c.cond_dim)

    # ---- stages and optimizers -----------------------------------------------------------
    def stage_fractions(self) -> dict[str, float]:
        return {"ae": self.config.ae_fraction, "prior": 1.0 - self.config.ae_fraction}

    def param_groups(self):
        ae = [p for m in (self.encoder, self.quantizer, self.decoder) for p in m.parameters()]
        return {"ae": ae, "prior": list(self.prior.parameters())}

    def configure_optimizer(self, phase, params):
        lr = self.config.lr if phase == "ae" else self.config.prior_lr
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))

    @torch.no_grad()
    def begin_stage(self, stage, images):
        """Stage "ae": seed the codebook with encoder outputs of up to 512 random training images."""
        if stage == "ae":
            pick = torch.randperm(images.shape[0], device="cpu")[:512]                # global CPU RNG
            self.quantizer.init_codebook(self.encoder(to_float(images[pick.to(images.device)]).to(self.device)))

    # ---- the two halves ------------------------------------------------------------------
    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) of images x (B,C,H,W) in [-1, 1]; no quantizer state changes."""
        return self.quantizer.indices(self.encoder(x))

    def decode(self, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantized latents (B, D, h, w) -> pixel means and log-scales, each (B,C,H,W)."""
        mean, log_scale = self.decoder(z_q).float().chunk(2, dim=1)  # float32 likelihood under autocast
        return mean, log_scale

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder means (B,C,H,W) in [-1, 1] of the quantized codes of x (B,C,H,W) in [-1, 1]."""
        return self.decode(self.quantizer.lookup(self.codes(x.to(self.device))))[0].clamp(-1, 1)

    @torch.no_grad()
    def codebook_usage(self, images: torch.Tensor, *, batch_size: int = 500) -> dict[str, float]:
        """Perplexity and live codes (used at least once) of the codes of uint8 images (N,C,H,W)."""
        counts = torch.zeros(self.config.num_codes, dtype=torch.long, device="cpu")
        for s in range(0, images.shape[0], batch_size):
            idx = self.codes(to_float(images[s:s + batch_size]).to(self.device))
            counts += torch.bincount(idx.flatten().cpu(), minlength=self.config.num_codes)
        perplexity, live = usage_stats(counts)
        return {"perplexity": float(perplexity), "live_codes": int(live), "num_codes": self.config.num_codes}

    # ---- training ------------------------------------------------------------------------
    def loss(self, x, cond=None, *, phase="ae"):
        dims = x[0].numel()
        if phase == "ae":
            z_q, _, st = self.quantizer(self.encoder(x))
            mean, log_scale = self.decode(z_q)
            rec = -discretized_logistic_logp(x, mean, log_scale).flatten(1).sum(1).mean() / dims  # nats/dim
            loss = rec + st["commit_loss"] + st["codebook_loss"]
            mse = ((mean.detach().clamp(-1, 1) - x) ** 2).mean() / 4.0  # in [0, 1] pixel units
            return {"loss": loss, "rec": rec.detach(), "bpd_rec": rec.detach() / math.log(2),
                    "commit": st["commit_loss"].detach(), "mse": mse,
                    "perplexity": st["perplexity"], "live_codes": st["live_codes"]}
        if phase == "prior":
            tokens = self.codes(x).flatten(1)                             # (B, T), frozen encoder
            cond = self.condition_for_training(cond, x.shape[0]) if self.is_conditional else None  # (B, cond_dim) or None
            logits = self.prior(tokens, cond=cond)                        # (B, T, K)
            nll = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())  # nats per code
            return {"loss": nll, "nll_code": nll.detach(),
                    "bpd_prior": nll.detach() * tokens.shape[1] / (dims * math.log(2))}
        raise ZooError(f"vqvae has phases 'ae' and 'prior', not {phase!r}")

    # ---- sampling ------------------------------------------------------------------------
    def _sampler_options(self, temperature: float | None, top_k: int | None,
                         guidance: float = 1.0) -> tuple[float, int | None, float]:
        t = self.config.temperature if temperature is None else float(temperature)
        k = self.config.top_k if top_k is None else int(top_k)
        w = float(guidance)
        if not t > 0:
            raise ZooError(f"temperature must be > 0, got {t}")
        if not 0 <= k <= self.config.num_codes:
            raise ZooError(f"top_k must be in 0..{self.config.num_codes} (0: off), got {k}")
        if not 0 <= w < math.inf:
            raise ZooError(f"guidance must be a finite number >= 0, got {guidance}")
        return t, (k or None), w

    def generate(self, gens, cond=None, *, temperature: float | None = None, top_k: int | None = None,
                 use_cache: bool = True, guidance: float = 1.0):
        """Codes from the prior (``temperature``, ``top_k``; KV cache unless use_cache=False), decoded to the mean.
        ``guidance``: the classifier-free guidance scale on the prior's logits (a conditional model
        given ``cond``; without cond it samples the null condition and guidance has no effect)."""
        t, k, w = self._sampler_options(temperature, top_k, guidance)
        opts = {"cond": self.condition_for_network(cond, len(gens)), "guidance": w} if self.is_conditional and cond is not None else {}
        tokens = self.prior.sample(gens, temperature=t, top_k=k, use_cache=use_cache, **opts)  # (B, T)
        idx = tokens.view(len(gens), self.h, self.h)
        return self.decode(self.quantizer.lookup(idx))[0].clamp(-1, 1)

    def nfe(self, *, temperature=None, top_k=None, use_cache: bool = True, guidance: float = 1.0, **_):
        """One transformer step per code position plus one decoder pass (with or without the cache);
        two steps per code for a conditional model guided with w not 0 or 1 (one doubled-batch call)."""
        w = float(guidance)
        return self.h * self.h * (2 if self.is_conditional and w not in (0, 1) else 1) + 1

    @torch.no_grad()
    def log_prob_parts(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_prior(z(x) | cond), log p(x | z(x))), each (B,) nats, for x (B,C,H,W) in [-1, 1]
        (the null condition when a conditional model is given cond None)."""
        x = x.to(self.device)
        cond = self.condition_for_network(cond, x.shape[0])                               # (B, cond_dim) or None
        idx = self.codes(x)                                               # (B, h, w)
        tokens = idx.flatten(1)                                           # (B, T)
        logp_codes = torch.log_softmax(self.prior(tokens, cond=cond).float(), -1)  # (B, T, K)
        lp_prior = logp_codes.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(1)  # (B,)
        mean, log_scale = self.decode(self.quantizer.lookup(idx))
        lp_x = discretized_logistic_logp(x, mean, log_scale).flatten(1).sum(1)       # (B,)
        return lp_prior, lp_x

    def log_prob(self, x, cond=None):
        """Lower bound log p_prior(z(x) | cond) + log p(x | z(x)) in nats per image, (B,) (see module doc)."""
        lp_prior, lp_x = self.log_prob_parts(x, cond)
        return lp_prior + lp_x

    @torch.no_grad()
    def interpolate(self, a, b, *, steps=8):
        """Linear path between the continuous encoder outputs of a and b; each point is snapped to
        its nearest codes and decoded (so the ends are the two reconstructions)."""
        z = self.encoder(to_float(torch.stack([a, b])).to(self.device))  # (2, D, h, w)
        w = torch.linspace(0, 1, steps, device=z.device).view(steps, 1, 1, 1)
        path = (1 - w) * z[0] + w * z[1]                                 # (steps, D, h, w)
        mean, _ = self.decode(self.quantizer.lookup(self.quantizer.indices(path)))
        return to_uint8(mean.clamp(-1, 1))
