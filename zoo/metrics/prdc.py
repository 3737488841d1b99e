"""Nearest-neighbour metrics in feature space: improved precision/recall, density/coverage, memorization.

Precision/recall (Kynkäänniemi et al. 2019, k=3): each real feature gets a ball whose radius is
the distance to its k-th nearest other real feature (likewise for fake features).
  precision = share of fake samples inside at least one real ball
  recall    = share of real samples inside at least one fake ball
Density/coverage (Naeem et al. 2020, k=5), from real balls only:
  density   = sum over fakes of the number of real balls containing it, / (k * N_fake)
  coverage  = share of real balls that contain at least one fake sample
Distances are Euclidean in float64, compared squared, a chunk of rows at a time with one
matrix product per chunk (see SqDist).

Memorization (defined here; no standard): with d(x) the distance from x to its nearest
training image in feature space,
  memorization = median_i d(sample_i) / median_j d(test_j)
over the samples and held-out (test) images. About 1 when samples sit as far from the training
set as fresh real images do; below 1 when they sit closer (copies score 0); above 1 when they
are farther (often plain low quality). ``memorization_copy_frac`` is the share of samples closer
to a training image than 95% of test images are (about 0.05 when the model does not copy).
"""
from __future__ import annotations

import torch

from ..errors import ZooError
from .features import check_features

CHUNK = 1024


def _rows(n: int, chunk: int):
    for s in range(0, n, chunk):
        yield s, min(n, s + chunk)


class SqDist:
    """Squared Euclidean distances to the rows of ``ref`` (N, D) by one matrix product per query chunk.

    |q - r|^2 = |q|^2 + |r|^2 - 2 q.r is written as one product of augmented rows,
    [q, |q|^2, 1] . [-2 r, 1, |r|^2], so no (Nq, N) temporaries are made (the form torch.cdist
    uses for large inputs, without its square root). float64 keeps the rounding near 1e-16 of the
    squared norms; values can dip below 0 by that much for identical rows.
    """

    def __init__(self, ref: torch.Tensor):
        one = torch.ones(ref.shape[0], 1, dtype=ref.dtype)
        self.ref = ref
        self.right = torch.cat([-2 * ref, one, (ref * ref).sum(1, keepdim=True)], dim=1)   # (N, D + 2)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """(Nq, N) squared distances of the rows of q (Nq, D) to the rows of ref."""
        left = torch.cat([q, (q * q).sum(1, keepdim=True), torch.ones(q.shape[0], 1, dtype=q.dtype)], dim=1)
        return left @ self.right.T


def kth_neighbour_radii(f: torch.Tensor, ks: tuple[int, ...], *, chunk: int = CHUNK) -> dict[int, torch.Tensor]:
    """{k: (N,) squared distance from each row of f (N, D) to its k-th nearest other row} (self excluded)."""
    n, kmax = f.shape[0], max(ks)
    if n <= kmax:
        raise ZooError(f"the k-NN radius needs at least k+1 = {kmax + 1} feature rows, got {n}")
    dist = SqDist(f)
    out = {k: torch.empty(n, dtype=torch.float64) for k in ks}
    for s, e in _rows(n, chunk):
        d2 = dist(f[s:e])                                            # (c, N)
        d2[torch.arange(e - s), torch.arange(s, e)] = -1.0           # self always ranks first
        top = d2.topk(kmax + 1, dim=1, largest=False, sorted=True).values.clamp_(min=0)   # (c, kmax + 1)
        for k in ks:
            out[k][s:e] = top[:, k]
    return out


def nearest_distance(query: torch.Tensor, ref: torch.Tensor, *, chunk: int = 256) -> torch.Tensor:
    """(Nq,) distance from each row of query (Nq, D) to its nearest row of ref (Nr, D).

    The neighbour is found with the matrix-product form, whose rounding would hide exact copies
    (~1e-7 after the square root); the distance to it is then recomputed directly, so copies
    give exactly 0.
    """
    dist = SqDist(ref)
    out = torch.empty(query.shape[0], dtype=torch.float64)
    for s, e in _rows(query.shape[0], chunk):
        idx = dist(query[s:e]).argmin(dim=1)                         # (c,)
        out[s:e] = (query[s:e] - ref[idx]).norm(dim=1)               # (c,)
    return out


def prdc(real, fake, *, k_pr: int = 3, k_dc: int = 5, chunk: int = CHUNK) -> dict[str, float]:
    """Precision, recall (k_pr) and density, coverage (k_dc) of fake features against real ones."""
    x = check_features(real, "real features")
    y = check_features(fake, "fake features")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    rx = kth_neighbour_radii(x, (k_pr, k_dc), chunk=chunk)      # squared radii of real balls
    ry = kth_neighbour_radii(y, (k_pr,), chunk=chunk)[k_pr]     # (Nf,) squared radii of fake balls
    r_pr, r_dc = rx[k_pr][None], rx[k_dc][None]                  # (1, Nr)
    prec_hits = dens = 0
    covered = torch.zeros(x.shape[0], dtype=torch.bool)         # (Nr,) real ball holds a fake
    recalled = torch.zeros(x.shape[0], dtype=torch.bool)        # (Nr,) real inside a fake ball
    dist = SqDist(x)
    for s, e in _rows(y.shape[0], chunk):
        d2 = dist(y[s:e])                                        # (c, Nr)
        prec_hits += int((d2 <= r_pr).any(dim=1).sum())
        inside = d2 <= r_dc                                      # (c, Nr)
        dens += int(inside.sum())
        covered |= inside.any(dim=0)
        recalled |= (d2 <= ry[s:e, None]).any(dim=0)
    nf = y.shape[0]
    return {"precision": prec_hits / nf, "recall": float(recalled.double().mean()),
            "density": dens / (k_dc * nf), "coverage": float(covered.double().mean())}


def memorization_score(d_fake: torch.Tensor, d_test: torch.Tensor) -> dict[str, float]:
    """Memorization from nearest-training-image distances of samples (d_fake) and test images (d_test)."""
    med_f, med_t = float(d_fake.median()), float(d_test.median())
    q05 = float(torch.quantile(d_test, 0.05))
    return {"memorization": med_f / med_t if med_t > 0 else float("nan"),
            "memorization_copy_frac": float((d_fake < q05).double().mean()),
            "nn_train_median_fake": med_f, "nn_train_median_test": med_t}
