"""The package's own families. Importing this package registers each of them.

Each module defines one family and registers it with ``@register_model``; ``zoo/__init__.py``
imports this package, so ``import zoo`` (or importing any family module, which imports the
``zoo`` package first) makes every family available. A new family adds its import here.
No family module imports another: what two families share lives in ``zoo.nn`` or
``zoo.distributions``.
"""
from . import cascade, diffusion, flow, gan, latent_diffusion, pixel_gpt, vae, vae_gan, vqvae  # noqa: F401
