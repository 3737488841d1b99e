"""Shared building blocks: families compose these, and no family imports another.

Network blocks (no losses, no configs): conv.py, unet.py, transformer.py, coupling.py,
quantize.py. Pieces that two families share beyond a network, each written once:
gaussian_vae.py (the Gaussian conv VAE of the VAE and VAE-GAN, as a Generator mixin with its
config fields) and adversarial.py (the GAN and VAE-GAN's losses, discriminator phase,
optimizers and config fields).
"""
