"""VAE-GAN (Larsen et al. 2016): the VAE's decoder is also a GAN generator.

The encoder, decoder, posterior head, sampler, IWAE ``log_prob`` and ``interpolate`` are the
Gaussian conv VAE of ``zoo.nn.gaussian_vae`` (shared with the VAE family); the discriminator is
the shared spectrally normalised :class:`zoo.nn.conv.Discriminator`, and the adversarial losses,
the discriminator phase and the optimizers are ``zoo.nn.adversarial``'s (shared with the GAN).
Two phases per step, D first (the GAN's order), then the encoder and decoder against the D just
updated:

  "disc"  D tells a batch of real images from half a batch of reconstructions Dec(z ~ q(z|x))
          and half a batch of prior samples Dec(z ~ N(0, I)), decoded under no_grad (detached).
  "vae"   encoder + decoder minimise
            pixel_weight   * (-ELBO with the discretized-logistic decoder) / dims
          + feature_weight * 0.5 |D_l(x) - D_l(Dec(z))|^2 / dims    (Larsen's Dis_l likelihood)
          + adv_weight     * non-saturating (or hinge) generator loss on the batch's
                             reconstructions and half a batch of prior samples,
          with D's parameters frozen for that forward. D_l is D's last conv feature map.

D always judges ``Dec(z).clamp(-1, 1)``, the image the sampler outputs. The decoder's logistic
means are free to run past [-1, 1] where the edge bins absorb the mass (the background sits at
-1), so unclamped fakes would be told from real images by their range alone.

The defaults (d_widths (16, 32), adv_weight 4, feature_weight 10) come from the seed-0 sweep of
``benchmarks/vae_gan_sweep.py`` at the standard 10 TFLOP (``results/vae_gan/README.md``): a
narrower discriminator costs less per step and so buys more steps under a FLOP budget. The pixel
term stays in at weight 1 to keep the decoder's logistic scales fitted (see Likelihood).

Deviations from the paper: one optimizer for encoder and decoder together (the trainer's phases),
so the encoder also receives the adversarial gradient through the reconstructions; Larsen et
al. keep it off the encoder and have no pixel term (here it is weighted against the feature
term); D is spectrally normalised instead of batch-normalised.

Conditional (``cond_dim > 0``): the conditional VAE of ``zoo.nn.gaussian_vae`` (encoder and
decoder FiLM-modulated by the text embedding c) against a projection discriminator D(x, c)
(Miyato & Koyama 2018, ``zoo.nn.conv.Discriminator``). Each phase draws its own prompt dropout
and judges every image at its own condition: the real images at theirs, the reconstructions and
the prior samples (decoded for the first half of the batch's conditions) at the ones they were
decoded for. The feature term compares D's feature map, which does not depend on c.

Prior: N(0, I), or with ``prior=mixture`` the learned Gaussian mixture of ``zoo.nn.gaussian_vae``,
fitted during training to the posterior samples of the "vae" phase (detached) and used by
``generate`` and ``log_prob``. By default (``adv_latents="normal"``) the prior samples of the
adversarial terms stay N(0, I) draws, so the encoder, decoder and D train exactly as with
``prior=normal`` and only sampling changes; ``adv_latents="prior"`` draws them from the mixture
instead (at their captions for a conditional model), so the adversarial terms see the latents that
sampling decodes.

Likelihood: declared ``"bound"``. ``log_prob`` is the VAE's importance-weighted bound
log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x). It stays a valid lower bound on the probability of
the 8-bit image for *any* encoder and decoder weights, because p(x|z) is a normalized
discretized-logistic distribution over the 256 pixel levels whatever the losses that trained it
(Burda et al. 2016). Keeping the pixel term in the training loss keeps that distribution (its
scales in particular) fitted to the data, so the bound stays meaningful; expect it to be looser
than the plain VAE's, since the feature and adversarial terms pull the decoder means away from
the maximum-likelihood fit.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..api import Generator, ModelConfig, register_model
from ..config import check_choice
from ..distributions import discretized_logistic_logp, gaussian_sample, kl_standard_normal
from ..errors import ZooError
from ..nn.adversarial import (adversarial_optimizer, check_adversarial_config,
                              discriminator_phase, frozen, gen_loss)
from ..nn.conv import Discriminator
from ..nn.gaussian_vae import TINY_FIELDS, GaussianVAEMixin

ADV_LATENTS = ("normal", "prior")


@dataclasses.dataclass
class VAEGANConfig(ModelConfig):
    lr: float = 5e-4                        # encoder + decoder learning rate
    # the Gaussian conv VAE (zoo.nn.gaussian_vae)
    widths: tuple[int, ...] = (16, 32, 64)  # channels per resolution level (28 -> 14 -> 7)
    blocks: int = 0                         # residual blocks per level (0: plain strided convs)
    latent_dim: int = 32
    iw_samples: int = 16                    # default k of the importance-weighted log_prob bound
    sample_mode: str = "mean"               # "mean": decoder mean; "sample": draw pixels from p(x|z)
    prior: str = "normal"                   # "normal": N(0, I); "mixture": a Gaussian mixture fitted to q(z) in training
    prior_components: int = 50              # components of the mixture prior
    prior_lr: float = 1e-2                  # Adam learning rate of the mixture's parameters
    # the adversarial game (zoo.nn.adversarial)
    loss: str = "ns"                        # "ns" (non-saturating) | "hinge"
    r1_gamma: float = 0.0                   # weight of the R1 penalty gamma/2 E|grad_x D(x)|^2 on real images; 0: off
    spectral_norm: bool = True              # spectral normalisation of every discriminator layer
    lr_d: float = 5e-4                      # discriminator learning rate
    beta1: float = 0.5                      # Adam betas of both phases
    beta2: float = 0.99
    # the VAE-GAN's own
    d_widths: tuple[int, ...] = (16, 32)   # discriminator channels per stride-2 conv (28 -> 14 -> 7)
    pixel_weight: float = 1.0              # weight of the negative ELBO (nats/dim)
    feature_weight: float = 10.0           # weight of the feature-space reconstruction error (per dim)
    adv_weight: float = 4.0                # weight of the generator loss on reconstructions + prior samples
    # latents of those prior samples (D's fakes and the adversarial term): "normal", N(0, I) whatever the
    # prior; "prior", the prior that sampling uses (with prior=mixture, draws from the mixture)
    adv_latents: str = "normal"


@register_model("vae_gan")
class VAEGAN(GaussianVAEMixin, Generator):
    """VAE-GAN: VAE whose decoder is also trained adversarially and in D's feature space."""

    Config = VAEGANConfig
    phases = ("disc", "vae")
    likelihood = "bound"
    has_latent = True

    # the recipe at every budget: batch 32 (training is step-limited under a FLOP budget) and the
    # mixture prior, with N(0, I) draws for the adversarial terms (adv_latents=normal); the sweeps
    # behind it are in results/vae_gan/README.md ("Recipe for the budget", "Mixture prior")
    budget_rules = ((float("inf"), {"train.batch_size": 32, "prior": "mixture"}),)
    # the size axis (Generator.size_fields): encoder, decoder and discriminator
    size_fields = {"widths": 4, "d_widths": 4}
    # the fitted size rule (Generator.size_rule): (a, c) of log10 N_opt = c + a*log10(C / 1 TFLOP), from
    # results/isoflop/ISOFLOP.md, through the minima at 1, 3, 10 and 30 TFLOP
    size_rule = (0.418, 5.186)

    @classmethod
    def tiny_config(cls, **fields):
        return cls.Config(**{**TINY_FIELDS, "d_widths": (8, 16), **fields})

    def __init__(self, config: VAEGANConfig):
        super().__init__(config)  # the VAE's networks first, then D
        c = config
        check_adversarial_config(c)
        check_choice("VAE-GAN adv_latents", c.adv_latents, ADV_LATENTS)
        if min(c.pixel_weight, c.feature_weight, c.adv_weight) < 0:
            raise ZooError("pixel_weight, feature_weight and adv_weight must be >= 0")
        self.disc = Discriminator(c.channels, c.image_size, c.d_widths, spectral_norm=c.spectral_norm)
        if self.is_conditional:  # after every other module, so those draw their unconditional initial weights
            self.disc.add_conditioning(c.cond_dim)
        self.add_conditioning()
        self.add_prior()  # the mixture prior, for prior=mixture only, last

    def param_groups(self):
        disc = {id(p) for p in self.disc.parameters()}
        return {"disc": list(self.disc.parameters()),
                "vae": [p for p in self.parameters() if id(p) not in disc]}

    def configure_optimizer(self, phase, params):
        return self.with_prior_group(lambda ps: adversarial_optimizer(self.config, phase, ps), params)

    def _adv_latents(self, like: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Latents of the adversarial terms' prior samples, as many as ``like`` (n, D) has rows, at
        ``cond`` (n, cond_dim) or None: N(0, I), or with ``adv_latents="prior"`` and the mixture prior,
        mixture draws (detached: D and the decoder do not train the prior)."""
        if self.config.adv_latents == "prior" and self.mixture is not None:
            return self.mixture.draw(like.shape[0], cond)
        return torch.randn_like(like)

    def loss(self, x, cond=None, *, phase="disc"):
        c = self.config
        b = x.shape[0]
        half = max(1, b // 2)
        cond = self.condition_for_training(cond, b)                                        # (B, cond_dim) or None
        if phase == "disc":  # fakes: half a batch of reconstructions + half of prior samples
            first = None if cond is None else cond[:half]                     # (half, cond_dim)
            fake_cond = None if cond is None else first.repeat(2, 1)          # (2 half, cond_dim)
            with torch.no_grad():
                mu, log_var = self.encode(x[:half], first)                    # (half, D) each
                z = torch.cat([gaussian_sample(mu, log_var), self._adv_latents(mu, first)])  # (2 half, D)
                fake = self.decode(z, fake_cond)[0].clamp(-1, 1)              # (2 half, C, H, W)
            return discriminator_phase(self.disc, x, fake, c, real_cond=cond, fake_cond=fake_cond)
        if phase == "vae":
            dims = x[0].numel()
            # the reconstructions' conditions, then the prior samples' (half a batch per step: they
            # only feed the adversarial term)
            gen_cond = None if cond is None else torch.cat([cond, cond[:half]])  # (B + half, cond_dim)
            mu, log_var = self.encode(x, cond)                                # (B, D) each
            z = gaussian_sample(mu, log_var)                                  # (B, D)
            mean, log_scale = self.decode(torch.cat([z, self._adv_latents(z[:half], None if cond is None else cond[:half])]), gen_cond)  # (B + half, C, H, W)
            rec_mean = mean[:b]
            rec = -discretized_logistic_logp(x, rec_mean, log_scale[:b]).flatten(1).sum(1)  # (B,) nats
            kl = kl_standard_normal(mu, log_var).sum(1)                       # (B,) nats
            neg_elbo = (rec + kl).mean() / dims
            with frozen(self.disc):
                with torch.no_grad():
                    f_real = self.disc.features(x)                            # (B, F, h, w)
                f_fake = self.disc.features(mean.clamp(-1, 1))                # (B + half, F, h, w)
                d_fake = self.disc.logits(f_fake, gen_cond)                   # (B + half,)
            feat = 0.5 * (f_fake[:b] - f_real).pow(2).flatten(1).sum(1).mean() / dims
            adv = gen_loss(c.loss, d_fake)
            loss = c.pixel_weight * neg_elbo + c.feature_weight * feat + c.adv_weight * adv
            out = {"loss": loss, "bpd_elbo": neg_elbo.detach() / math.log(2),
                   "rec": rec.mean().detach() / dims, "kl": kl.mean().detach() / dims,
                   "feat": feat.detach(), "adv": adv.detach(), "d_fake": d_fake.mean().detach()}
            return self.with_prior_fit(out, z, cond)                          # the mixture prior follows q(z[|c])
        raise ZooError(f"unknown phase {phase!r} for vae_gan (phases: disc, vae)")
