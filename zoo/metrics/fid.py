"""Fréchet distance between Gaussians fitted to two feature sets, in float64.

  FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(sqrt(S1) S2 sqrt(S1))

tr sqrt(S1 S2) equals tr sqrt(sqrt(S1) S2 sqrt(S1)) and the latter matrix is symmetric positive
semi-definite, so both square roots come from symmetric eigendecompositions (scipy.linalg.eigh)
with eigenvalues clipped at 0: the result is real, never negative, and well defined when the
covariances are singular (n < dim). Covariances use the unbiased (n - 1) normalisation, as
pytorch-fid and torchmetrics do.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .features import check_features


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) in float64 of features (N, D), N >= 2.

    The one place zoo computes them: the samples' statistics, the cached reference statistics
    (:func:`zoo.metrics.reference.reference_features`) and saved statistics files all come from
    here, so FID from a saved file equals FID computed directly, to the last bit.
    """
    f = check_features(features)                       # (N, D) float64
    mu = f.mean(dim=0)                                 # (D,)
    xc = f - mu
    sigma = xc.T @ xc / (f.shape[0] - 1)               # (D, D)
    return mu.numpy(), sigma.numpy()


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative rounding noise clipped)."""
    w, v = scipy.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"mismatched statistics: means {mu1.shape} {mu2.shape}, covariances {s1.shape} {s2.shape}")
    for name, a in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1                                    # symmetric PSD (up to rounding)
    w = scipy.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(w, 0, None)).sum())
    diff = mu1 - mu2
    d = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    scale = float(np.trace(s1) + np.trace(s2)) + 1.0
    if d < -1e-6 * scale:   # a true negative would mean a bug, not rounding
        raise RuntimeError(f"Fréchet distance came out negative ({d:g}): numerical failure")
    return max(d, 0.0)


def fid_from_features(real, fake) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    mu1, s1 = gaussian_stats(real)
    mu2, s2 = gaussian_stats(fake)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)

