"""evaluate(): every metric for a set of uint8 samples against a dataset split, with provenance.

Reference: the first ``n`` images of ``split`` (n defaults to the number of samples). Their
features (and mean/covariance) are cached on disk under $ZOO_CACHE/reference/, keyed by the
dataset spec, the split, the extractor and its weights' sha256, n and the sha256 of the reference
images' bytes, so a change in any of them computes fresh statistics.

The classifier score and memorization always use the domain classifier (fmnist-cnn for the
dataset), whatever ``features`` is: the Inception port has no classifier head, and embedding the
60,000 training images with Inception would take hours on a CPU.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import ZooError
from .features import CNNExtractor, Extractor, cache_root, check_images, data_key, get_extractor

ALL_METRICS = ("fid", "kid", "pr", "dc", "cs", "mem", "bpd")
DEFAULT_METRICS = ("fid", "kid", "pr", "dc", "cs", "mem")
CACHE_VERSION = 1     # bump when the way features are computed changes
K_PR, K_DC = 3, 5


def images_sha256(u: torch.Tensor) -> str:
    """sha256 of the raw bytes of a uint8 image tensor (with its shape)."""
    h = hashlib.sha256(str(tuple(u.shape)).encode())
    h.update(u.contiguous().numpy().tobytes())
    return h.hexdigest()


def _cached(kind: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Tensors stored under a key in $ZOO_CACHE/reference; computed and written when absent or stale."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    blob = json.dumps({**key, "kind": kind, "cache_version": CACHE_VERSION}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
    folder = cache_root() / "reference"
    path = folder / f"{kind}-{data_key(str(key.get('data', '')))}-{key.get('split', '')}-{digest}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), "pt") as f:
                stored = (f.metadata() or {}).get("key")
            if stored == blob:
                return load_file(str(path))
        except Exception:  # a corrupt or truncated cache file is recomputed
            pass
    tensors = {k: v.contiguous() for k, v in compute().items()}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"key": blob})
    os.replace(tmp, path)
    return tensors


def _load_split(data: str, split: str, n: int | None):
    from ..data import load_dataset
    ds = load_dataset(data, split)
    if n is None:
        n = len(ds)
    if n < 2:
        raise ZooError(f"n must be >= 2, got {n}")
    if n > len(ds):
        raise ZooError(f"n={n} is more than the {len(ds)} images of the {data} {split} split")
    return ds, n


def reference_features(data: str, split: str, extractor: Extractor, n: int | None = None, *,
                       batch_size: int = 500, progress: bool = False) -> dict[str, torch.Tensor]:
    """Features (n, D), mean (D,) and covariance (D, D) of the first n images of a split (cached)."""
    ds, n = _load_split(data, split, n)
    images = ds.images[:n]
    key = {"data": data, "split": split, "n": n, "extractor": extractor.name,
           "weights_sha256": extractor.weights_sha256, "images_sha256": images_sha256(images)}

    def compute():
        f = extractor(images, batch_size=batch_size, progress=progress)   # (n, D) float64
        mu = f.mean(dim=0)
        xc = f - mu
        return {"features": f, "mu": mu, "sigma": xc.T @ xc / (n - 1)}
    return _cached("features", key, compute)


def _test_to_train_distances(data: str, split: str, images: torch.Tensor, domain: CNNExtractor,
                             ref: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """(n,) nearest-training-image distances of the reference images ``images`` (cached)."""
    from .prdc import nearest_distance
    key = {"data": data, "split": split, "n": len(images), "extractor": domain.name,
           "weights_sha256": domain.weights_sha256, "images_sha256": images_sha256(images),
           "train_features": len(train)}
    return _cached("nn-train", key, lambda: {"d": nearest_distance(ref, train)})["d"]


CODE_PATHS = ("zoo", "benchmarks", "setup.cfg", "setup.sh")


def git_commit() -> str | None:
    """The git commit of the zoo checkout, or None. '+dirty' marks uncommitted changes to the code
    that makes numbers (zoo/, benchmarks/, the setup files); results/ and docs do not count, so
    moving an old results folder aside before re-running a benchmark does not taint its provenance."""
    root = Path(__file__).resolve().parent.parent.parent   # zoo/metrics/evaluate.py -> the checkout
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def parse_metrics(metrics) -> tuple[str, ...]:
    """A metric list from a tuple or a comma-separated string, validated against ALL_METRICS."""
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = tuple(dict.fromkeys(metrics))
    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad or not metrics:
        raise ZooError(f"unknown metric(s) {', '.join(bad) or '(none given)'}: choose from {','.join(ALL_METRICS)}")
    return metrics


def evaluate(fake, *, data: str = "fashion-mnist", features: str | Extractor = "fmnist-cnn",
             metrics=DEFAULT_METRICS, split: str = "test", n: int | None = None, progress: bool = False,
             batch_size: int = 500, weights: str | None = None, model=None, seed: int = 0,
             kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
    """Metrics of uint8 samples ``fake`` (N, C, H, W) against the first n images of ``split``.

    metrics: any of fid, kid, pr (precision/recall, k=3), dc (density/coverage, k=5), cs (classifier
    score), mem (memorization), bpd (bits/dim of ``model`` on the reference images).
    Returns a flat dict of numbers plus ``"provenance"`` and ``"time_s"`` (seconds per step).
    """
    from .. import __version__
    metrics = parse_metrics(metrics)
    if "mem" in metrics and split == "train":
        raise ZooError("memorization compares samples with held-out images: use split='test' or drop 'mem'")
    if set(metrics) == {"bpd"} and fake is None:  # bits/dim alone needs the model, not samples
        if n is None:
            raise ZooError("bits/dim without samples needs n (the number of reference images)")
    else:
        fake = check_images(fake, min_n=2, what="fake images")
    ds, n = _load_split(data, split, n if n is not None else fake.shape[0])
    if fake is not None and tuple(fake.shape[1:]) != tuple(ds.shape):
        raise ZooError(f"fake images have shape {tuple(fake.shape[1:])} but {data} images are {tuple(ds.shape)}")
    ext = features if isinstance(features, Extractor) else get_extractor(features, data=data, weights=weights)
    res: dict = {}
    times: dict[str, float] = {}
    prov: dict = {**ext.describe(), "n": n, "n_fake": int(fake.shape[0]) if fake is not None else 0, "reference_split": split,
                  "reference": f"first {n} images of the {split} split", "data": data,
                  "metrics": list(metrics), "zoo_version": __version__, "git_commit": git_commit(),
                  "torch": torch.__version__,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    def clock(name: str, t0: float) -> None:
        times[name] = round(times.get(name, 0.0) + time.perf_counter() - t0, 3)

    fake_feats = None
    if {"fid", "kid", "pr", "dc"} & set(metrics):
        t0 = time.perf_counter()
        ref = reference_features(data, split, ext, n, batch_size=batch_size, progress=progress)
        clock("reference_features", t0)
        t0 = time.perf_counter()
        fake_feats = ext(fake, batch_size=batch_size, progress=progress)   # (N, D)
        clock("fake_features", t0)
        if "fid" in metrics:
            from .fid import frechet_distance, gaussian_stats
            t0 = time.perf_counter()
            mu, sigma = gaussian_stats(fake_feats)
            res["fid"] = frechet_distance(ref["mu"].numpy(), ref["sigma"].numpy(), mu, sigma)
            clock("fid", t0)
        if "kid" in metrics:
            from .kid import kid
            t0 = time.perf_counter()
            res["kid_mean"], res["kid_std"] = kid(ref["features"], fake_feats, subsets=kid_subsets,
                                                  subset_size=kid_subset_size, seed=seed)
            clock("kid", t0)
            prov.update(kid_subsets=kid_subsets, kid_subset_size=min(kid_subset_size, n, fake.shape[0]))
        if "pr" in metrics or "dc" in metrics:
            from .prdc import prdc
            t0 = time.perf_counter()
            r = prdc(ref["features"], fake_feats, k_pr=K_PR, k_dc=K_DC)
            if "pr" in metrics:
                res.update(precision=r["precision"], recall=r["recall"])
                prov["k_pr"] = K_PR
            if "dc" in metrics:
                res.update(density=r["density"], coverage=r["coverage"])
                prov["k_dc"] = K_DC
            clock("prdc", t0)

    if "cs" in metrics or "mem" in metrics:
        dom = ext if isinstance(ext, CNNExtractor) else get_extractor("fmnist-cnn", data=data)
        prov["domain_extractor"] = dom.describe()
        t0 = time.perf_counter()
        dom_feats = fake_feats if dom is ext and fake_feats is not None else dom(fake, batch_size=batch_size,
                                                                               progress=progress)
        clock("domain_features", t0)
        if "cs" in metrics:
            from .classifier import classifier_score
            t0 = time.perf_counter()
            res["classifier_score"] = classifier_score(dom.probs_from_features(dom_feats))
            clock("cs", t0)
        if "mem" in metrics:
            from .prdc import memorization_score, nearest_distance
            t0 = time.perf_counter()
            train = reference_features(data, "train", dom, None, batch_size=batch_size, progress=progress)
            ref_dom = reference_features(data, split, dom, n, batch_size=batch_size, progress=progress)
            d_test = _test_to_train_distances(data, split, ds.images[:n], dom, ref_dom["features"],
                                              train["features"])
            clock("mem_reference", t0)
            t0 = time.perf_counter()
            res.update(memorization_score(nearest_distance(dom_feats, train["features"]), d_test))
            prov["memorization"] = (f"median nearest-train distance of samples / of the {n} reference "
                                    f"{split} images, in {dom.name} feature space")
            clock("mem", t0)

    if "bpd" in metrics:
        if model is None:
            raise ZooError("bits/dim needs a model (evaluate a run directory, not a samples file)")
        if model.likelihood == "none":
            res.update(bpd=None, bpd_kind="none")
        else:
            from .bpd import bits_per_dim
            t0 = time.perf_counter()
            r = bits_per_dim(model, ds.images[:n], batch_size=min(batch_size, 256), seed=seed, progress=progress)
            res.update(bpd=r["bpd"], bpd_sem=r["bpd_sem"], bpd_kind=r["kind"], bpd_n=r["n"])
            clock("bpd", t0)
    res["time_s"] = times
    res["provenance"] = prov
    return res


def real_vs_real(data: str = "fashion-mnist", n: int = 10_000, *, features: str | Extractor = "fmnist-cnn",
                 seed: int = 0, split: str = "test", metrics=DEFAULT_METRICS, progress: bool = False,
                 batch_size: int = 500, weights: str | None = None) -> dict:
    """The floor: n random train images (seeded) scored as samples against the test split.

    Memorization is 0 here by construction: these samples are training images.
    """
    train, n = _load_split(data, "train", n)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    res = evaluate(train.images[idx], data=data, features=features, metrics=metrics, split=split, n=n,
                   progress=progress, batch_size=batch_size, weights=weights, seed=seed)
    res["provenance"]["samples"] = f"{n} train images drawn without replacement (seed {seed})"
    return res


def noise_ceiling(data: str = "fashion-mnist", n: int = 10_000, *, features: str | Extractor = "fmnist-cnn",
                  seed: int = 0, split: str = "test", metrics=DEFAULT_METRICS, progress: bool = False,
                  batch_size: int = 500, weights: str | None = None) -> dict:
    """The ceiling: n images of uniform uint8 noise (seeded) scored against the test split."""
    ds, n = _load_split(data, split, n)
    noise = torch.randint(0, 256, (n, *ds.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    res = evaluate(noise, data=data, features=features, metrics=metrics, split=split, n=n,
                   progress=progress, batch_size=batch_size, weights=weights, seed=seed)
    res["provenance"]["samples"] = f"{n} images of uniform uint8 noise (seed {seed})"
    return res
