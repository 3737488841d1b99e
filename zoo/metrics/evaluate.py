"""evaluate(): every metric for a set of uint8 samples against a reference, with provenance.

Reference: by default the first ``n`` images of ``split`` of ``data`` (n defaults to the number of
samples), or any :class:`~zoo.metrics.reference.Reference`: a set of images, or statistics saved
once with :func:`~zoo.metrics.reference.save_stats`. A dataset split's features (and
mean/covariance) are cached on disk (see :mod:`zoo.metrics.reference`).

The classifier score and memorization always use the domain classifier (fmnist-cnn for the
dataset), whatever ``features`` is: the Inception port has no classifier head, and embedding the
60,000 training images with Inception would take hours on a CPU.
"""
from __future__ import annotations

import contextlib
import datetime
import time
from typing import Iterator

import torch

from ..errors import ZooError
from ..provenance import git_commit, machine
from .features import CNNExtractor, Extractor, check_images, get_extractor
from .reference import (Reference, dataset_reference, load_split, nearest_train_distances,  # noqa: F401
                        reference_features, reference_stats)

ALL_METRICS = ("fid", "kid", "pr", "dc", "cs", "mem", "bpd")
DEFAULT_METRICS = ("fid", "kid", "pr", "dc", "cs", "mem")
FEATURE_METRICS = ("fid", "kid", "pr", "dc")
K_PR, K_DC = 3, 5


def parse_metrics(metrics) -> tuple[str, ...]:
    """A metric list from a tuple or a comma-separated string, validated against ALL_METRICS."""
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = tuple(dict.fromkeys(metrics))
    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad or not metrics:
        raise ZooError(f"unknown metric(s) {', '.join(bad) or '(none given)'}: choose from {','.join(ALL_METRICS)}")
    return metrics


def unsupported_metrics(metrics, ref: Reference, *, model=None) -> dict[str, str]:
    """{metric: why} for the metrics in ``metrics`` that this reference (and model) cannot give."""
    why: dict[str, str] = {}
    if "mem" in metrics:
        if ref.kind == "stats":
            why["mem"] = (f"memorization needs the reference images and the dataset's train split, and {ref.path} "
                          f"holds only statistics")
        elif ref.data is None:
            why["mem"] = f"memorization needs a dataset reference (its train split), not {ref.source}"
        elif ref.split == "train":
            why["mem"] = "memorization compares samples with held-out images: use split='test' or drop 'mem'"
    if "bpd" in metrics:
        if model is None:
            why["bpd"] = "bits/dim needs a model (evaluate a run directory, not a samples file)"
        elif ref.images is None:
            why["bpd"] = f"bits/dim needs reference images, and {ref.path} holds only statistics"
    return why


def check_neighbour_counts(metrics, n_ref: int, n_fake: int) -> None:
    """One-line ZooError when precision/recall (k=3) or density/coverage (k=5) get n <= k images on a side."""
    for m, k, label in (("pr", K_PR, "precision/recall"), ("dc", K_DC, "density/coverage")):
        if m in metrics and min(n_ref, n_fake) <= k:
            raise ZooError(f"{label} (k={k}) need at least {k + 1} images on each side, got {n_fake} samples and "
                           f"{n_ref} reference images: use more images or drop '{m}' from the metrics")


class _Clock:
    """Seconds per named step, accumulated over repeats and rounded to the millisecond."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - t0, 3)


def _check_request(fake, ref: Reference, metrics: tuple[str, ...], model) -> None:
    """Everything that can be refused before any feature is computed."""
    why = unsupported_metrics(metrics, ref, model=model)
    if why:
        raise ZooError(next(iter(why.values())))
    if fake is None:
        return
    if tuple(fake.shape[1:]) != tuple(ref.shape):
        where = f"{ref.data} images are" if ref.data is not None else f"the reference images ({ref.source}) are"
        raise ZooError(f"fake images have shape {tuple(fake.shape[1:])} but {where} {tuple(ref.shape)}")
    check_neighbour_counts(metrics, ref.n, fake.shape[0])


def _extractor(features: str | Extractor, data: str, weights: str | None, device: str | None) -> Extractor:
    if isinstance(features, Extractor):
        return features.to(device) if device is not None else features
    return get_extractor(features, data=data, weights=weights, device=device or "cpu")


def _provenance(ext: Extractor, ref: Reference, fake, metrics: tuple[str, ...], data: str) -> dict:
    from ..version import __version__
    return {**ext.describe(), "n": ref.n, "n_fake": int(fake.shape[0]) if fake is not None else 0, **ref.describe(),
            "data": data, "metrics": list(metrics), "zoo_version": __version__, "git_commit": git_commit(),
            **machine(), "device": str(ext.device),   # the CPU, GPU and threads behind the figure
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def feature_metrics(fake: torch.Tensor, ref: Reference, ext: Extractor, metrics: tuple[str, ...], *,
                    clock: _Clock | None = None, batch_size: int = 500, progress: bool = False, seed: int = 0,
                    kid_subsets: int = 100, kid_subset_size: int = 1000) -> tuple[dict, dict, torch.Tensor | None]:
    """FID, KID, precision/recall and density/coverage of ``fake`` against ``ref`` in ``ext``'s
    feature space. Returns (results, provenance fields, the samples' features or None)."""
    clock = clock or _Clock()
    res: dict = {}
    prov: dict = {}
    if not set(FEATURE_METRICS) & set(metrics):
        return res, prov, None
    with clock("reference_features"):
        ref_stats = reference_stats(ref, ext, batch_size=batch_size, progress=progress)
    with clock("fake_features"):
        fake_feats = ext(fake, batch_size=batch_size, progress=progress)   # (N, D)
    if "fid" in metrics:
        from .fid import frechet_distance, gaussian_stats
        with clock("fid"):
            mu, sigma = gaussian_stats(fake_feats)
            res["fid"] = frechet_distance(ref_stats["mu"].numpy(), ref_stats["sigma"].numpy(), mu, sigma)
    if "kid" in metrics:
        from .kid import kid
        with clock("kid"):
            res["kid_mean"], res["kid_std"] = kid(ref_stats["features"], fake_feats, subsets=kid_subsets,
                                                  subset_size=kid_subset_size, seed=seed)
        prov.update(kid_subsets=kid_subsets, kid_subset_size=min(kid_subset_size, ref.n, fake.shape[0]))
    if "pr" in metrics or "dc" in metrics:
        from .prdc import prdc
        with clock("prdc"):
            r = prdc(ref_stats["features"], fake_feats, k_pr=K_PR, k_dc=K_DC)
        if "pr" in metrics:
            res.update(precision=r["precision"], recall=r["recall"])
            prov["k_pr"] = K_PR
        if "dc" in metrics:
            res.update(density=r["density"], coverage=r["coverage"])
            prov["k_dc"] = K_DC
    return res, prov, fake_feats


def domain_metrics(fake: torch.Tensor, ref: Reference, ext: Extractor, metrics: tuple[str, ...], *,
                   data: str, fake_feats: torch.Tensor | None = None, clock: _Clock | None = None,
                   batch_size: int = 500, progress: bool = False) -> tuple[dict, dict]:
    """Classifier score and memorization, in the domain classifier's feature space (``ext`` itself
    when it is the fmnist-cnn, whose features ``fake_feats`` are then reused). Returns (results, provenance)."""
    clock = clock or _Clock()
    res: dict = {}
    prov: dict = {}
    if "cs" not in metrics and "mem" not in metrics:
        return res, prov
    dom = ext if isinstance(ext, CNNExtractor) else get_extractor("fmnist-cnn", data=data, device=ext.device)
    prov["domain_extractor"] = dom.describe()
    with clock("domain_features"):
        dom_feats = fake_feats if dom is ext and fake_feats is not None else dom(fake, batch_size=batch_size,
                                                                               progress=progress)
    if "cs" in metrics:
        from .classifier import class_shares, classifier_score
        with clock("cs"):
            probs = dom.probs_from_features(dom_feats)
            res["classifier_score"] = classifier_score(probs)
            res.update(class_shares(probs))
    if "mem" in metrics:
        from .prdc import memorization_score, nearest_distance
        with clock("mem_reference"):
            train = reference_features(ref.data, "train", dom, None, batch_size=batch_size, progress=progress)
            ref_dom = reference_features(ref.data, ref.split, dom, ref.n, batch_size=batch_size, progress=progress)
            d_test = nearest_train_distances(ref.data, ref.split, ref.images, dom, ref_dom["features"],
                                             train["features"])
        with clock("mem"):
            res.update(memorization_score(nearest_distance(dom_feats, train["features"]), d_test))
        prov["memorization"] = (f"median nearest-train distance of samples / of the {ref.n} reference "
                                f"{ref.split} images, in {dom.name} feature space")
    return res, prov


def bpd_metric(model, ref: Reference, *, clock: _Clock | None = None, batch_size: int = 500, seed: int = 0,
               progress: bool = False) -> dict:
    """bits/dim of ``model`` on the reference images (None for a family without a likelihood)."""
    if model.likelihood == "none":
        return {"bpd": None, "bpd_kind": "none"}
    from .bpd import bits_per_dim
    with (clock or _Clock())("bpd"):
        r = bits_per_dim(model, ref.images, batch_size=min(batch_size, 256), seed=seed, progress=progress)
    return {"bpd": r["bpd"], "bpd_sem": r["bpd_sem"], "bpd_kind": r["kind"], "bpd_n": r["n"]}


def evaluate(fake, *, data: str = "fashion-mnist", features: str | Extractor = "fmnist-cnn",
             metrics=DEFAULT_METRICS, split: str = "test", n: int | None = None, progress: bool = False,
             batch_size: int = 500, weights: str | None = None, model=None, seed: int = 0,
             kid_subsets: int = 100, kid_subset_size: int = 1000, ref: Reference | None = None,
             device: str | None = None) -> dict:
    """Metrics of uint8 samples ``fake`` (N, C, H, W) against ``ref`` (default: the first n images
    of ``split`` of ``data``, n defaulting to N).

    metrics: any of fid, kid, pr (precision/recall, k=3), dc (density/coverage, k=5), cs (classifier
    score), mem (memorization; needs a dataset reference), bpd (bits/dim of ``model`` on the
    reference images). ``data`` also picks the fmnist-cnn weights and the domain classifier.
    ``device``: where the feature networks run (default: the CPU, or where ``features`` already is).
    Returns a flat dict of numbers plus ``"provenance"`` and ``"time_s"`` (seconds per step).
    """
    metrics = parse_metrics(metrics)
    bpd_only = set(metrics) == {"bpd"} and fake is None   # bits/dim alone needs the model, not samples
    if bpd_only and n is None and ref is None:
        raise ZooError("bits/dim without samples needs n (the number of reference images)")
    if not bpd_only:
        fake = check_images(fake, min_n=2, what="fake images")
    if ref is None:
        ref = dataset_reference(data, split, n if n is not None else fake.shape[0])
    _check_request(fake, ref, metrics, model)
    ext = _extractor(features, data, weights, device)
    ref.check_extractor(ext)
    clock = _Clock()
    kw = dict(clock=clock, batch_size=batch_size, progress=progress)
    prov = _provenance(ext, ref, fake, metrics, data)
    res, p, fake_feats = feature_metrics(fake, ref, ext, metrics, seed=seed, kid_subsets=kid_subsets,
                                         kid_subset_size=kid_subset_size, **kw)
    prov.update(p)
    r, p = domain_metrics(fake, ref, ext, metrics, data=data, fake_feats=fake_feats, **kw)
    res.update(r)
    prov.update(p)
    if "bpd" in metrics:
        res.update(bpd_metric(model, ref, seed=seed, **kw))
    res["time_s"] = clock.times
    res["provenance"] = prov
    return res


def real_vs_real(data: str = "fashion-mnist", n: int = 10_000, *, features: str | Extractor = "fmnist-cnn",
                 seed: int = 0, split: str = "test", metrics=DEFAULT_METRICS, progress: bool = False,
                 batch_size: int = 500, weights: str | None = None, device: str | None = None) -> dict:
    """The floor: n random train images (seeded) scored as samples against the test split.

    Memorization is 0 here by construction: these samples are training images.
    """
    train, n = load_split(data, "train", n)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    res = evaluate(train.images[idx], data=data, features=features, metrics=metrics, split=split, n=n,
                   progress=progress, batch_size=batch_size, weights=weights, seed=seed, device=device)
    res["provenance"]["samples"] = f"{n} train images drawn without replacement (seed {seed})"
    return res


def noise_ceiling(data: str = "fashion-mnist", n: int = 10_000, *, features: str | Extractor = "fmnist-cnn",
                  seed: int = 0, split: str = "test", metrics=DEFAULT_METRICS, progress: bool = False,
                  batch_size: int = 500, weights: str | None = None, device: str | None = None) -> dict:
    """The ceiling: n images of uniform uint8 noise (seeded) scored against the test split."""
    ds, n = load_split(data, split, n)
    noise = torch.randint(0, 256, (n, *ds.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    res = evaluate(noise, data=data, features=features, metrics=metrics, split=split, n=n,
                   progress=progress, batch_size=batch_size, weights=weights, seed=seed, device=device)
    res["provenance"]["samples"] = f"{n} images of uniform uint8 noise (seed {seed})"
    return res
