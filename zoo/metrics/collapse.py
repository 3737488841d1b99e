"""Mode-collapse check for a generator's samples: pixel diversity against real images and,
where the Fashion-MNIST classifier applies, the predicted class histogram.

Used by the adversarial tests and on the trained GAN runs (``results/gan/collapse.json``).
Family-agnostic: it only sees uint8 images, so any family's samples can be checked.
"""
from __future__ import annotations

import torch

from ..errors import ZooError


def collapse_report(samples: torch.Tensor, real: torch.Tensor, *, max_share: float = 0.5,
                    min_std_ratio: float = 0.5) -> dict:
    """Diversity of uint8 ``samples`` (N,C,H,W) against uint8 ``real`` images of the data.

    ``std_ratio``: mean over pixels of the per-pixel std across samples, divided by the same for
    ``real`` (a collapsed generator repeats a few images, so its pixels barely vary: ratio -> 0).
    If ``zoo.metrics.features`` provides the ``fmnist-cnn`` classifier and the images are
    1x28x28, also the predicted class histogram of the samples and the largest class share.
    ``collapsed`` is True when std_ratio < min_std_ratio or max class share >= max_share.
    """
    def pix_std(u: torch.Tensor) -> float:
        return float((u.double() / 127.5 - 1).std(dim=0).mean())
    rep: dict = {"n": int(samples.shape[0]), "std_samples": pix_std(samples), "std_real": pix_std(real)}
    rep["std_ratio"] = rep["std_samples"] / max(rep["std_real"], 1e-12)
    collapsed = rep["std_ratio"] < min_std_ratio
    probs, why = _class_probs(samples)
    if probs is not None:
        from .classifier import class_shares
        rep.update(class_shares(probs))
        collapsed = collapsed or rep["max_class_share"] >= max_share
    else:
        rep["class_check"] = f"skipped: {why}"
    rep["collapsed"] = bool(collapsed)
    return rep


def _class_probs(images: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """(fmnist-cnn class probabilities (N, K) of uint8 images, "") or (None, why not)."""
    if tuple(images.shape[1:]) != (1, 28, 28):
        return None, "images are not 1x28x28"
    try:
        from .features import get_extractor
    except ImportError:
        return None, "zoo.metrics.features is not installed"
    try:
        return get_extractor("fmnist-cnn").class_probs(images), ""
    except ZooError as e:  # e.g. classifier weights not trained yet
        return None, str(e)
