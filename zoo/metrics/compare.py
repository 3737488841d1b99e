"""Score a source against a reference, each named as `zoo eval` names them; the work behind that
command and behind :func:`zoo.evaluate`.

  EvalSettings                  how images are scored: dataset, feature network, n, metrics, seed, device
  score(source, ref, s)         the metrics of a source against a reference: (record, {column: results})
  floor_and_ceiling(s)          n train images (the floor) and n noise images (the ceiling) against the test split
  save_source_stats(path, ...)  summarise one set of images once into a statistics .npz
  evaluate_source(source, ...)  one call: ``zoo.evaluate``

The records these return are what `zoo eval --json` writes, less the ``command`` the CLI puts first.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..checks import check_positive
from ..errors import ZooError
from .inputs import (DEFAULT_DATA, RUN_SAMPLES, Side, Source, check_size, match_side, open_side, sample_side,
                     source_kind)

if TYPE_CHECKING:
    from ..api import Generator
    from .features import Extractor
    from .reference import Reference


@dataclasses.dataclass
class EvalSettings:
    """How images are scored (every option of `zoo eval` but what is compared and where results go)."""
    data: str | None = None              # dataset of the fmnist-cnn weights and the domain classifier
    features: str = "fmnist-cnn"         # or "inception"
    n: int | None = None                 # images per side (the first n; a run draws n samples)
    metrics: str | tuple | None = None   # None: the default set less what the reference cannot give
    split: str = "test"
    seed: int = 0
    batch_size: int = 500
    sampler: dict = dataclasses.field(default_factory=dict)   # sampler options for a run folder
    weights: str | None = None
    inception_weights: str | None = None
    device: str = "cpu"
    progress: bool = False
    log: Callable[[str], None] | None = None   # notes: skipped metrics, the Inception time estimate

    def check(self) -> None:
        """Refuse impossible settings in one line before anything is read, sampled or written."""
        from .evaluate import parse_metrics
        if self.metrics is not None:
            parse_metrics(self.metrics)
        check_positive(batch_size=self.batch_size)
        if self.n is not None and self.n < 2:
            raise ZooError(f"--n must be >= 2, got {self.n}")
        if self.inception_weights and self.features != "inception":
            raise ZooError("--inception-weights needs --features inception")

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def extractor(self, data: str) -> Extractor:
        """The feature network: Inception, or the fmnist-cnn weights of ``data`` (or ``weights``)."""
        from .features import get_extractor
        if self.features == "inception":
            return get_extractor("inception", weights=self.inception_weights, device=self.device)
        return get_extractor("fmnist-cnn", data=data, weights=self.weights, device=self.device)


def check_job(s: EvalSettings, source: Source | None, ref: Source | None, *, real_vs_real: bool = False,
              save_stats: str | os.PathLike | None = None) -> None:
    """Refuse settings and combinations of the three jobs (score, floor and ceiling, save statistics)
    that cannot work, in one line, before anything is read, sampled or written."""
    s.check()
    if real_vs_real:
        if source is not None or ref is not None or save_stats:
            raise ZooError("--real-vs-real takes no SOURCE, --ref or --save-stats")
        if "bpd" in (s.metrics or ""):
            raise ZooError("--real-vs-real has no model: drop bpd from --metrics")
    elif save_stats:
        if source is not None and ref is not None:
            raise ZooError("--save-stats summarises one set of images: give SOURCE or --ref, not both")
        if s.metrics is not None:
            raise ZooError("--save-stats computes no metrics: drop --metrics")
        if Path(save_stats).suffix != ".npz":
            raise ZooError(f"--save-stats must end in .npz, got {Path(save_stats).name!r}")
    elif source is None:
        raise ZooError("give SOURCE: a run directory, a .npz, a folder of PNG/JPEG files or a dataset spec "
                       "(or --real-vs-real, or --save-stats)")


def data_for(s: EvalSettings, ref_text: str | None, ref_kind: str | None, stats: Reference | None = None) -> str:
    """The dataset behind the fmnist-cnn weights and the domain classifier: ``s.data``; else a dataset
    reference, or the dataset a statistics file was made for; else fashion-mnist."""
    if ref_kind == "dataset":
        if s.data is not None and s.data != ref_text:
            raise ZooError(f"--ref {ref_text} and --data {s.data} name two datasets: give one")
        return ref_text
    if s.data is not None:
        return s.data
    if stats is not None and stats.meta.get("data"):
        return stats.meta["data"]
    return DEFAULT_DATA


def choose_metrics(s: EvalSettings, ref: Reference, model: Generator | None) -> tuple[str, ...]:
    """The metrics as given (refused in one line when the reference cannot give one), or the default
    set less what the reference cannot give, with a note."""
    from .evaluate import DEFAULT_METRICS, parse_metrics, unsupported_metrics
    mets = parse_metrics(s.metrics if s.metrics is not None else DEFAULT_METRICS)
    why = unsupported_metrics(mets, ref, model=model)
    if why and s.metrics is not None:
        raise ZooError(next(iter(why.values())))
    for m, reason in why.items():
        s.note(f"note: skipping {m}: {reason}")
    return tuple(m for m in mets if m not in why)


def inception_estimate(s: EvalSettings, ext: Extractor, n_images: int) -> None:
    """Time a few images and note how long embedding ``n_images`` will take."""
    import torch
    probe = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    t = time.perf_counter()
    ext(probe, batch_size=4)
    ips = 4 / (time.perf_counter() - t)
    s.note(f"inception runs at ~{ips:.1f} images/s here: up to {n_images} images to embed "
           f"(samples, plus the reference unless cached) ~ {n_images / ips / 60:.1f} min")


def _open(s: EvalSettings, source: Source, kind: str, n: int | None) -> Side:
    return open_side(source, kind, n, split=s.split, seed=s.seed, sampler=s.sampler, device=s.device)


def resolve_reference(s: EvalSettings, ext: Extractor, data: str, ref: Source | None, ref_kind: str | None,
                      n_fake: int, stats: Reference | None = None) -> Reference:
    """The Reference named by ``ref``: a dataset split (the first n images, default as many as the
    samples), a tensor, .npz or image folder (first n, default all), a run (n samples, default as many
    as the source), or a statistics file (used whole)."""
    from .reference import dataset_reference, images_reference
    if stats is not None:
        return stats
    if ref_kind in (None, "dataset"):
        return dataset_reference(data, s.split, s.n if s.n is not None else n_fake)
    side = _open(s, ref, ref_kind, s.n if s.n is not None else n_fake if ref_kind == "run" else None)
    sample_side(side, seed=s.seed, progress=s.progress)
    match_side(side, ext.input_channels or side.images.shape[1], "--ref")
    return images_reference(side.images, side.description)


def _kinds(s: EvalSettings, source: Source | None, ref: Source | None) -> tuple[str | None, str | None]:
    """The kinds of source and reference, refused in one line where they cannot be scored."""
    src_kind = source_kind(source) if source is not None else None
    if src_kind == "stats":
        raise ZooError(f"{source} holds statistics, not images: give it as --ref")
    if s.sampler and src_kind != "run":
        raise ZooError("--opt only applies to a run directory")
    return src_kind, source_kind(ref, "--ref") if ref is not None else None


def score(source: Source, ref: Source | None, s: EvalSettings) -> tuple[dict, dict]:
    """Score ``source`` against ``ref`` (None: the ``s.split`` images of the dataset): returns
    (the record, {column label: results} for a table)."""
    from .evaluate import check_neighbour_counts, evaluate
    from .reference import load_stats
    src_kind, ref_kind = _kinds(s, source, ref)
    stats = load_stats(ref) if ref_kind == "stats" else None
    data = data_for(s, ref if ref_kind == "dataset" else None, ref_kind, stats)
    ext = s.extractor(data)
    if stats is not None:
        stats.check_extractor(ext)
    src = _open(s, source, src_kind, s.n)
    reference = resolve_reference(s, ext, data, ref, ref_kind, src.n, stats)
    mets = choose_metrics(s, reference, src.model)
    bpd_only = set(mets) == {"bpd"}
    if src.model is not None:   # a size mismatch is refused before sampling
        check_size(src.text, (src.model.config.image_size,) * 2, reference.shape)
    if not bpd_only:
        check_neighbour_counts(mets, reference.n, src.n)
        if s.features == "inception":
            inception_estimate(s, ext, src.n + reference.n)
        sample_side(src, seed=s.seed, progress=s.progress)
        match_side(src, reference.shape[0])
        check_size(src.text, tuple(src.images.shape[2:]), reference.shape)
    res = evaluate(None if bpd_only else src.images, data=data, features=ext, metrics=mets, ref=reference,
                   model=src.model, seed=s.seed, batch_size=s.batch_size, progress=s.progress, device=s.device)
    ref_field = {} if ref is None else {"ref": reference.source if ref_kind == "tensor" else os.fspath(ref)}
    return {**src.record, **ref_field, **res}, {f"{src.label} (n={src.n})": res}


def floor_and_ceiling(s: EvalSettings) -> tuple[dict, dict]:
    """The floor (n train images) and the ceiling (n noise images) against the test split:
    (the record, {column label: results})."""
    from .evaluate import DEFAULT_METRICS, noise_ceiling, parse_metrics, real_vs_real as floor_fn
    data = s.data or DEFAULT_DATA
    ext = s.extractor(data)
    n = RUN_SAMPLES if s.n is None else s.n
    if s.features == "inception":
        inception_estimate(s, ext, 3 * n)
    kw = dict(features=ext, seed=s.seed, split=s.split, metrics=parse_metrics(s.metrics or DEFAULT_METRICS),
              progress=s.progress, batch_size=s.batch_size)
    floor = floor_fn(data, n, **kw)
    ceiling = noise_ceiling(data, n, **kw)
    return {"floor": floor, "ceiling": ceiling}, {f"floor (train, n={n})": floor, f"ceiling (noise, n={n})": ceiling}


def save_source_stats(path: str | os.PathLike, source: Source | None, s: EvalSettings,
                      what: str = "SOURCE") -> dict:
    """Summarise ``source`` (default: the ``s.split`` images of ``s.data``) once and write a statistics
    .npz to ``path``; returns the record: the file and its metadata."""
    from .reference import dataset_reference, images_reference, save_stats
    kind = source_kind(source, what) if source is not None else "dataset"
    if kind == "stats":
        raise ZooError(f"{source} already holds statistics")
    if s.sampler and kind != "run":
        raise ZooError("--opt only applies to a run directory")
    if kind == "dataset":
        data = data_for(s, source or s.data or DEFAULT_DATA, "dataset")
    else:
        data = s.data or DEFAULT_DATA
    ext = s.extractor(data)
    if kind == "dataset":
        ref = dataset_reference(data, s.split, s.n)
    else:
        side = _open(s, source, kind, s.n)
        sample_side(side, seed=s.seed, progress=s.progress)
        match_side(side, ext.input_channels or side.images.shape[1])
        ref = images_reference(side.images, side.description)
    meta = save_stats(path, ref, ext, data=data, batch_size=s.batch_size, progress=s.progress)
    return {"stats": os.fspath(path), **meta}


def evaluate_source(source: Source, ref: Source | None = DEFAULT_DATA, *, n: int | None = None,
                    metrics: str | tuple | None = None, features: str = "fmnist-cnn", device: str = "cpu",
                    seed: int = 0, data: str | None = None, split: str = "test", batch_size: int = 500,
                    sampler: dict | None = None, weights: str | os.PathLike | None = None,
                    inception_weights: str | os.PathLike | None = None, progress: bool = False,
                    log: Callable[[str], None] | None = None) -> dict:
    """Score ``source`` against ``ref`` with every metric the pair allows: what `zoo eval SOURCE --ref REF` reports.

    Args:
        source: the images to score: a uint8 tensor (N, C, H, W); a run folder (sampled here, image i
            depending only on (seed, i)); a .npz of uint8 images (NCHW or NHWC, gray or RGB); a folder of
            PNG/JPEG files; or a dataset spec (its ``split`` images). Not a statistics file.
        ref: what ``source`` is scored against: any of the above, or a statistics .npz written by
            `zoo eval --save-stats` (used whole, so no memorization or bits/dim). Default: the fashion-mnist
            ``split``. ``None``: the ``split`` images of ``data``.
        n: images per side: the first n of a tensor, file, folder or dataset, n samples of a run. Default:
            all of ``source`` (10,000 samples of a run; the standard `zoo bench` profile scores 5,000); a dataset reference takes
            as many as the source has, an image reference all of its own, a run reference as many as the source.
        metrics: a comma-separated string or a tuple of fid, kid, pr (precision/recall, k=3), dc
            (density/coverage, k=5), cs (classifier score), mem (memorization; needs a dataset reference),
            bpd (bits/dim; needs a run source and reference images). Default: fid,kid,pr,dc,cs,mem less
            what the reference cannot give (each skipped one is noted through ``log``); metrics given
            explicitly that the pair cannot give raise a ZooError.
        features: the feature network for FID, KID, precision/recall and density/coverage:
            "fmnist-cnn" or "inception".
        device: torch device for sampling and the feature networks ("cpu", "cuda", "cuda:1", "mps").
        seed: the sampling seed of a run; also seeds the KID subsets.
        data: the dataset whose fmnist-cnn weights and domain classifier are used. Default: ``ref`` when it
            is a dataset spec (naming another one is an error), the dataset a statistics ``ref`` was made for,
            else fashion-mnist.
        split: "test" or "train": the split of a dataset reference (and of a dataset source).
        batch_size: images per feature batch.
        sampler: sampler options for a run source or reference, e.g. ``{"steps": 50}``.
        weights: fmnist-cnn weights to use instead of the packaged or cached ones (a .safetensors path).
        inception_weights: a pytorch-fid pt_inception-2015-12-05-6726825d.pth to use with
            ``features="inception"`` instead of the bundled TorchScript.
        progress: show progress bars.
        log: called with each note (skipped metrics, the Inception time estimate); None: silent.

    Returns:
        The record `zoo eval --json` writes, less its ``command``: what was scored (``samples``, or ``run``,
        ``family``, ``sampler`` and ``seed``), ``ref`` when one was named, each metric (``fid``, ``kid_mean``,
        ``kid_std``, ``precision``, ``recall``, ``density``, ``coverage``, ``classifier_score``,
        ``min_class_share``, ``memorization``, ``bpd`` ...), ``time_s`` (seconds per step) and
        ``provenance`` (``n`` reference images, ``n_fake`` scored images, the extractor and its weights,
        the reference, the machine, the date).

    Raises:
        ZooError: a one-line message for anything the inputs cannot give.
    """
    s = EvalSettings(data=data, features=features, n=n, metrics=metrics, split=split, seed=seed,
                     batch_size=batch_size, sampler=dict(sampler or {}), device=device, progress=progress, log=log,
                     weights=None if weights is None else os.fspath(weights),
                     inception_weights=None if inception_weights is None else os.fspath(inception_weights))
    s.check()
    return score(source, ref, s)[0]


# ---- results as text -------------------------------------------------------------------------------
ROWS = [("fid", "FID", "{:.4f}"), ("kid_mean", "KID mean", "{:.6f}"), ("kid_std", "KID std", "{:.6f}"),
        ("precision", "precision (k=3)", "{:.4f}"), ("recall", "recall (k=3)", "{:.4f}"),
        ("density", "density (k=5)", "{:.4f}"), ("coverage", "coverage (k=5)", "{:.4f}"),
        ("classifier_score", "classifier score", "{:.4f}"), ("min_class_share", "min class share", "{:.4f}"),
        ("memorization", "memorization", "{:.4f}"),
        ("memorization_copy_frac", "copy fraction", "{:.4f}"), ("bpd", "bits/dim", "{:.4f}")]


def _fmt(res: dict, key: str, fmt: str) -> str:
    v = res.get(key)
    if key == "bpd" and key in res:
        return "n/a (no likelihood)" if v is None else f"{fmt.format(v)} +- {res['bpd_sem']:.4f} ({res['bpd_kind']})"
    return "-" if v is None else fmt.format(v)


def result_lines(columns: dict[str, dict]) -> list[str]:
    """The results as `zoo eval` prints them: per column, a line stating n on each side; then a table
    with one row per metric present and one column per result."""
    lines = []
    for name, res in columns.items():
        p = res["provenance"]
        lines.append(f"{name}: n={p['n_fake']} images scored against n={p['n']} reference images ({p['reference']})")
    if not columns:
        return lines
    widths = [max(22, len(name) + 2) for name in columns]
    lines.append(f"{'metric':<18}" + "".join(f"{name:>{w}}" for name, w in zip(columns, widths)))
    for key, label, fmt in (r for r in ROWS if any(r[0] in res for res in columns.values())):
        lines.append(f"{label:<18}" + "".join(f"{_fmt(res, key, fmt):>{w}}" for res, w in zip(columns.values(), widths)))
    return lines
