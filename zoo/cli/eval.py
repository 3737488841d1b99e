"""`zoo eval` and `zoo features train`: score samples, and train the domain feature network."""
from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ZooError
from .common import CONTEXT, SEED, check_device, check_writable, command_line, device_option, import_option

if TYPE_CHECKING:
    import torch

    from ..api import Generator
    from ..metrics.features import Extractor
    from ..metrics.reference import Reference


# ---- zoo features ----------------------------------------------------------------------------------
@click.group("features", context_settings=CONTEXT)
def features_group():
    """The feature networks behind the metrics (fmnist-cnn, inception)."""


@features_group.command("train")
@click.option("--data", "data_spec", default="fashion-mnist", show_default=True,
              help="Dataset spec to train the fmnist-cnn classifier on (see `zoo data --help`).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write the weights here (a .safetensors path; a .json record goes beside it). "
                   "Default: the cache, $ZOO_CACHE/features/fmnist-cnn/<dataset>/<sha256[:16]>.safetensors.")
@click.option("--epochs", default=24, show_default=True, type=int, help="Passes over the train split.")
@click.option("--batch-size", default=128, show_default=True, type=int, help="Images per SGD step.")
@click.option("--lr", default=0.05, show_default=True, type=float, help="Peak learning rate (cosine schedule).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed for init, batch order, augmentation, dropout.")
@click.option("--flip/--no-flip", default=True, show_default=True,
              help="Random horizontal flips (right for clothes, wrong for digits or text).")
@click.option("--shift", default=2, show_default=True, type=int, help="Random translation of up to this many pixels.")
@click.option("--dropout", default=0.1, show_default=True, type=float, help="Dropout on the features, in training.")
@click.option("--widths", default="32,64,128", show_default=True,
              help="Channels of the three conv stages (28x28, 14x14, 7x7 for 28x28 images).")
@click.option("--stem", default="", show_default=True,
              help="Channels of extra full-resolution convs before the first stage, comma-separated.")
@click.option("--threads", default=None, type=int,
              help="CPU threads for training (results are reproducible for a fixed count). Default: torch's.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def features_train_cmd(data_spec, out, epochs, batch_size, lr, seed, flip, shift, dropout, widths, stem, threads,
                       quiet):
    """Train the fmnist-cnn feature network on a dataset's train split and record its test accuracy.

    Example: zoo features train --data fashion-mnist --out zoo/weights/fmnist-cnn.safetensors
    """
    import torch
    from ..data import load_dataset
    from ..metrics.classifier import save_cnn, train_cnn
    from ..metrics.features import cnn_cache_dir
    if epochs < 1 or batch_size < 1 or lr <= 0 or shift < 0 or not 0 <= dropout < 1:
        raise ZooError("--epochs and --batch-size must be >= 1, --lr > 0, --shift >= 0, 0 <= --dropout < 1")
    try:
        widths_t = tuple(int(w) for w in widths.split(","))
        stem_t = tuple(int(w) for w in stem.split(",") if w.strip())
    except ValueError:
        raise ZooError(f"--widths and --stem take comma-separated integers, got {widths!r} and {stem!r}") from None
    if len(widths_t) != 3 or min(widths_t + stem_t) < 1:
        raise ZooError(f"--widths needs three positive channel counts, got {widths!r}")
    if threads is not None:
        if threads < 1:
            raise ZooError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    command = command_line()
    train = load_dataset(data_spec, "train")
    test = load_dataset(data_spec, "test")
    click.echo(f"training fmnist-cnn on {data_spec}: {len(train)} train images, {epochs} epochs, "
               f"{torch.get_num_threads()} threads")
    net, info = train_cnn(train.images, train.labels, test_images=test.images, test_labels=test.labels,
                          epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, shift=shift, flip=flip,
                          dropout=dropout, widths=widths_t, stem=stem_t, progress=not quiet, log=lambda s: click.echo(s))
    acc = info["test_accuracy"]
    meta = {"data": data_spec, "test_accuracy": f"{acc:.4f}", "seed": seed}
    if out is None:
        d = cnn_cache_dir(data_spec)
        tmp = d / "training.safetensors"
        sha = save_cnn(net, tmp, meta)
        path = d / f"{sha[:16]}.safetensors"
        tmp.replace(path)
        (d / "latest.json").write_text(json.dumps({"file": path.name, "sha256": sha}))
    else:
        path = Path(out)
        if path.suffix != ".safetensors":
            raise ZooError(f"--out must end in .safetensors, got {path.name!r}")
        sha = save_cnn(net, path, meta)
    record = {"file": path.name, "sha256": sha, "data": data_spec, "test_accuracy": acc,
              "test_images": len(test), "feat_dim": net.cfg.feat_dim, "command": command,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              **{k: v for k, v in info.items() if k != "test_accuracy"}}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    click.echo(f"test accuracy {acc:.4f}; sha256 {sha}; wrote {path}")


# ---- zoo eval: what the arguments name ---------------------------------------------------------------
DEFAULT_DATA = "fashion-mnist"
RUN_SAMPLES = 10_000          # samples drawn from a run directory unless --n says otherwise


def is_dataset_spec(text: str) -> bool:
    """Whether ``text`` is a dataset spec (fashion-mnist, idx:PATH, folder:PATH, synthetic[:SIZE[:CHANNELS]])
    rather than a path; a folder with such a name is reached as ./NAME."""
    return text in ("fashion-mnist", "synthetic") or text.startswith(("idx:", "folder:", "synthetic:"))


def source_kind(text: str, what: str = "SOURCE") -> str:
    """'dataset', 'run', 'folder', 'npz' or 'stats' for a SOURCE or --ref argument, or a one-line ZooError."""
    from ..api import CONFIG_FILE
    from ..metrics.reference import is_stats_file
    if is_dataset_spec(text):
        return "dataset"
    p = Path(text)
    if p.is_dir():
        return "run" if (p / CONFIG_FILE).is_file() else "folder"
    if p.is_file() and p.suffix.lower() == ".npz":
        return "stats" if is_stats_file(p) else "npz"
    if p.exists():
        raise ZooError(f"{what} {text}: expected a run directory, a .npz, a folder of PNG/JPEG files or a dataset spec")
    raise ZooError(f"{what} {text}: no such file or folder, and not a dataset spec "
                   f"(fashion-mnist, idx:PATH, folder:PATH, synthetic[:SIZE[:CHANNELS]])")


@dataclasses.dataclass
class Side:
    """One side of a comparison, as named on the command line: images, or a model still to sample."""
    text: str
    kind: str
    n: int
    description: str
    images: torch.Tensor | None = None   # uint8 (n, C, H, W), once read or sampled
    model: Generator | None = None       # for a run directory
    record: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.text if self.kind == "dataset" else Path(self.text).name or self.text


def _first(images, n: int | None, text: str):
    """The first n images (all when n is None); a one-line ZooError when there are fewer."""
    if n is not None and n > images.shape[0]:
        raise ZooError(f"--n {n} is more than the {images.shape[0]} images in {text}")
    return images if n is None else images[:n]


def open_side(o: "EvalOptions", text: str, kind: str, n: int | None) -> Side:
    """Read a .npz, an image folder or a dataset split (first n images), or load a run's model to
    sample n images from later (default 10,000)."""
    if kind == "run":
        from ..api import load
        from ..config import parse_opts
        model = load(text).to(o.device)
        n = RUN_SAMPLES if n is None else n
        sampler = parse_opts(o.opts)
        return Side(text, kind, n, f"{n} samples of {text} (seed {o.seed})", model=model,
                    record={"run": text, "family": model.name, "sampler": sampler, "seed": o.seed})
    if kind == "dataset":
        from ..metrics.reference import load_split
        ds, n = load_split(text, o.split, n)
        return Side(text, kind, n, f"first {n} images of the {text} {o.split} split", images=ds.images[:n],
                    record={"samples": f"{text} ({o.split} split)"})
    from ..images import read_images
    images = read_images(text)
    images = _first(images, n, text)
    what = f"first {n} images of {text}" if n is not None else f"{images.shape[0]} images of {text}"
    return Side(text, kind, images.shape[0], what, images=images, record={"samples": text})


def sample_side(o: "EvalOptions", side: Side) -> None:
    """Draw a run's samples (image i depends only on (--seed, i)), once."""
    if side.images is not None or side.model is None:
        return
    try:
        side.images = side.model.sample(side.n, seed=o.seed, batch_size=256, progress=not o.quiet,
                                        **side.record["sampler"])
    except TypeError as e:
        raise ZooError(f"bad sampler option for {side.model.name}: {e}") from None


def check_size(text: str, hw: tuple[int, int], shape: tuple[int, int, int], what: str = "SOURCE") -> None:
    """A one-line ZooError when images of height x width ``hw`` cannot be scored against images of ``shape``."""
    if tuple(hw) != tuple(shape[1:]):
        raise ZooError(f"{what} {text}: images are {hw[0]}x{hw[1]} but the reference's are {shape[1]}x{shape[2]}; "
                       f"resize them first")


def match_side(side: Side, channels: int, what: str = "SOURCE") -> None:
    """Bring a side's images to ``channels``: gray to RGB by repetition, RGB to gray when its three
    channels are equal (gray images saved as RGB PNGs); a one-line ZooError otherwise."""
    from ..images import match_channels
    side.images = match_channels(side.images, channels, what=f"{what} {side.text}")


# ---- zoo eval: options -------------------------------------------------------------------------------
@dataclasses.dataclass
class EvalOptions:
    """The command line of `zoo eval`, checked at the boundary."""
    source: str | None
    ref: str | None
    data: str | None
    features: str
    n: int | None
    metrics: str | None
    split: str
    seed: int
    batch_size: int
    opts: tuple
    weights: str | None
    inception_weights: str | None
    real_vs_real: bool
    save_stats: str | None
    json_out: str | None
    quiet: bool
    device: str

    def check(self) -> None:
        """Refuse impossible combinations in one line before anything is read, sampled or written."""
        from ..metrics.evaluate import parse_metrics
        if self.metrics is not None:
            parse_metrics(self.metrics)
        if self.batch_size < 1:
            raise ZooError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.n is not None and self.n < 2:
            raise ZooError(f"--n must be >= 2, got {self.n}")
        if self.inception_weights and self.features != "inception":
            raise ZooError("--inception-weights needs --features inception")
        if self.real_vs_real:
            if self.source is not None or self.ref is not None or self.save_stats:
                raise ZooError("--real-vs-real takes no SOURCE, --ref or --save-stats")
            if "bpd" in (self.metrics or ""):
                raise ZooError("--real-vs-real has no model: drop bpd from --metrics")
        elif self.save_stats:
            if self.source is not None and self.ref is not None:
                raise ZooError("--save-stats summarises one set of images: give SOURCE or --ref, not both")
            if self.metrics is not None:
                raise ZooError("--save-stats computes no metrics: drop --metrics")
            if Path(self.save_stats).suffix != ".npz":
                raise ZooError(f"--save-stats must end in .npz, got {Path(self.save_stats).name!r}")
            check_writable(self.save_stats, "--save-stats")
        elif self.source is None:
            raise ZooError("give SOURCE: a run directory, a .npz, a folder of PNG/JPEG files or a dataset spec "
                           "(or --real-vs-real, or --save-stats)")
        if self.json_out:
            check_writable(self.json_out, "--json")
        from .. import dist
        self.device = dist.init(check_device(self.device))   # under torchrun: sampling and features are split


def _extractor(o: EvalOptions, data: str) -> Extractor:
    from ..metrics.features import get_extractor
    if o.features == "inception":
        return get_extractor("inception", weights=o.inception_weights, device=o.device)
    return get_extractor("fmnist-cnn", data=data, weights=o.weights, device=o.device)


def _data_for(o: EvalOptions, ref_text: str | None, ref_kind: str | None, stats=None) -> str:
    """The dataset behind the fmnist-cnn weights and the domain classifier: --data; else a dataset
    --ref, or the dataset a statistics file was made for; else fashion-mnist."""
    if ref_kind == "dataset":
        if o.data is not None and o.data != ref_text:
            raise ZooError(f"--ref {ref_text} and --data {o.data} name two datasets: give one")
        return ref_text
    if o.data is not None:
        return o.data
    if stats is not None and stats.meta.get("data"):
        return stats.meta["data"]
    return DEFAULT_DATA


def _choose_metrics(o: EvalOptions, ref: Reference, model: Generator | None) -> tuple[str, ...]:
    """--metrics as given (refused in one line when the reference cannot give one), or the default
    set less what the reference cannot give, with a note on stderr."""
    from ..metrics.evaluate import DEFAULT_METRICS, parse_metrics, unsupported_metrics
    mets = parse_metrics(o.metrics if o.metrics is not None else DEFAULT_METRICS)
    why = unsupported_metrics(mets, ref, model=model)
    if why and o.metrics is not None:
        raise ZooError(next(iter(why.values())))
    for m, reason in why.items():
        click.echo(f"note: skipping {m}: {reason}", err=True)
    return tuple(m for m in mets if m not in why)


def _inception_estimate(ext: Extractor, n_images: int) -> None:
    """Time a few images and print how long embedding ``n_images`` will take."""
    import torch
    probe = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    t = time.perf_counter()
    ext(probe, batch_size=4)
    ips = 4 / (time.perf_counter() - t)
    click.echo(f"inception runs at ~{ips:.1f} images/s here: up to {n_images} images to embed "
               f"(samples, plus the reference unless cached) ~ {n_images / ips / 60:.1f} min", err=True)


# ---- zoo eval: the three jobs ---------------------------------------------------------------------
def resolve_reference(o: EvalOptions, ext: Extractor, data: str, ref_kind: str | None, n_fake: int,
                      stats: Reference | None = None) -> Reference:
    """The Reference named by --ref: a dataset split (the first --n images, default as many as the
    samples), a .npz or image folder (first --n, default all), a run (--n samples, default as many
    as SOURCE), or a statistics file (used whole)."""
    from ..metrics.reference import dataset_reference, images_reference
    if stats is not None:
        return stats
    if ref_kind in (None, "dataset"):
        return dataset_reference(data, o.split, o.n if o.n is not None else n_fake)
    side = open_side(o, o.ref, ref_kind, o.n if o.n is not None else n_fake if ref_kind == "run" else None)
    sample_side(o, side)
    match_side(side, ext.input_channels or side.images.shape[1], "--ref")
    return images_reference(side.images, side.description)


def score(o: EvalOptions) -> tuple[dict, dict]:
    """Score SOURCE against --ref: returns (the JSON record, {column label: results} for the table)."""
    from ..metrics.evaluate import check_neighbour_counts, evaluate
    from ..metrics.reference import load_stats
    src_kind = source_kind(o.source)
    if src_kind == "stats":
        raise ZooError(f"{o.source} holds statistics, not images: give it as --ref")
    if o.opts and src_kind != "run":
        raise ZooError("--opt only applies to a run directory")
    ref_kind = source_kind(o.ref, "--ref") if o.ref is not None else None
    stats = load_stats(o.ref) if ref_kind == "stats" else None
    data = _data_for(o, o.ref, ref_kind, stats)
    ext = _extractor(o, data)
    if stats is not None:
        stats.check_extractor(ext)
    src = open_side(o, o.source, src_kind, o.n)
    ref = resolve_reference(o, ext, data, ref_kind, src.n, stats)
    mets = _choose_metrics(o, ref, src.model)
    bpd_only = set(mets) == {"bpd"}
    if src.model is not None:   # a size mismatch is refused before sampling
        check_size(o.source, (src.model.config.image_size,) * 2, ref.shape)
    if not bpd_only:
        check_neighbour_counts(mets, ref.n, src.n)
        if o.features == "inception":
            _inception_estimate(ext, src.n + ref.n)
        sample_side(o, src)
        match_side(src, ref.shape[0])
        check_size(o.source, tuple(src.images.shape[2:]), ref.shape)
    res = evaluate(None if bpd_only else src.images, data=data, features=ext, metrics=mets, ref=ref,
                   model=src.model, seed=o.seed, batch_size=o.batch_size, progress=not o.quiet, device=o.device)
    record = {"command": command_line(), **src.record, **({"ref": o.ref} if o.ref else {}), **res}
    return record, {f"{src.label} (n={src.n})": res}


def floor_and_ceiling(o: EvalOptions) -> tuple[dict, dict]:
    """The floor (n train images) and the ceiling (n noise images) against the test split."""
    from ..metrics.evaluate import DEFAULT_METRICS, noise_ceiling, parse_metrics, real_vs_real as floor_fn
    data = o.data or DEFAULT_DATA
    ext = _extractor(o, data)
    n = RUN_SAMPLES if o.n is None else o.n
    if o.features == "inception":
        _inception_estimate(ext, 3 * n)
    kw = dict(features=ext, seed=o.seed, split=o.split, metrics=parse_metrics(o.metrics or DEFAULT_METRICS),
              progress=not o.quiet, batch_size=o.batch_size)
    floor = floor_fn(data, n, **kw)
    ceiling = noise_ceiling(data, n, **kw)
    return ({"command": command_line(), "floor": floor, "ceiling": ceiling},
            {f"floor (train, n={n})": floor, f"ceiling (noise, n={n})": ceiling})


def save_reference_stats(o: EvalOptions) -> dict:
    """Summarise SOURCE (or --ref, or the --split images of --data) once and write --save-stats."""
    from ..metrics.reference import dataset_reference, images_reference, save_stats as write_stats
    text = o.source if o.source is not None else o.ref
    kind = source_kind(text, "SOURCE" if o.source is not None else "--ref") if text is not None else "dataset"
    if kind == "stats":
        raise ZooError(f"{text} already holds statistics")
    if o.opts and kind != "run":
        raise ZooError("--opt only applies to a run directory")
    data = _data_for(o, text or o.data or DEFAULT_DATA, "dataset") if kind == "dataset" else o.data or DEFAULT_DATA
    ext = _extractor(o, data)
    if kind == "dataset":
        ref = dataset_reference(data, o.split, o.n)
    else:
        side = open_side(o, text, kind, o.n)
        sample_side(o, side)
        match_side(side, ext.input_channels or side.images.shape[1])
        ref = images_reference(side.images, side.description)
    meta = write_stats(o.save_stats, ref, ext, data=data, batch_size=o.batch_size, progress=not o.quiet)
    click.echo(f"wrote {o.save_stats}: {ext.name} statistics ({ext.dim}-d, weights sha256 "
               f"{ext.weights_sha256[:12]}) of the {ref.source}")
    return {"command": command_line(), "stats": o.save_stats, **meta}


# ---- zoo eval: output --------------------------------------------------------------------------------
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


def print_table(columns: dict[str, dict]) -> None:
    """A small text table: one row per metric present, one column per result."""
    keys = [r for r in ROWS if any(r[0] in res for res in columns.values())]
    widths = [max(22, len(name) + 2) for name in columns]
    click.echo(f"{'metric':<18}" + "".join(f"{name:>{w}}" for name, w in zip(columns, widths)))
    for key, label, fmt in keys:
        click.echo(f"{label:<18}" + "".join(f"{_fmt(res, key, fmt):>{w}}" for res, w in zip(columns.values(), widths)))


def write_record(path: str | None, record: dict) -> None:
    """The JSON record (results with provenance), when --json was given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(record, indent=2) + "\n")
        click.echo(f"wrote {path}")


@click.command("eval", context_settings=CONTEXT)
@click.argument("source", required=False)
@click.option("--ref", default=None, metavar="REF",
              help="What SOURCE is scored against: a dataset spec, a .npz of images, a folder of PNG/JPEG files, "
                   "a run directory, or a statistics .npz from --save-stats. Default: --data.")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
              help="Dataset spec of the reference (its --split images), and of the fmnist-cnn weights and domain "
                   "classifier. Default: a dataset --ref, the dataset of a statistics --ref, else fashion-mnist.")
@click.option("--features", default="fmnist-cnn", show_default=True, type=click.Choice(["fmnist-cnn", "inception"]),
              help="Feature network for FID, KID, precision/recall, density/coverage.")
@click.option("--n", "n", default=None, type=int,
              help="Images to use from each side (the first n; a run draws n samples). Default: all images of "
                   "SOURCE (10000 for a run directory or --real-vs-real); a dataset reference takes as many as "
                   "SOURCE has, an image --ref all of its own.")
@click.option("--metrics", default=None, show_default="fid,kid,pr,dc,cs,mem",
              help="Comma-separated: fid,kid,pr,dc,cs,mem,bpd (bpd needs a run directory; mem a dataset reference; "
                   "the default skips, with a note, what the reference cannot give).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "train"]),
              help="Split of a dataset reference (and of a dataset SOURCE).")
@click.option("--seed", default=0, show_default=True, type=SEED,
              help="Sampling seed (image i depends on (seed, i)); also seeds KID subsets and the floor/ceiling draws.")
@click.option("--batch-size", default=500, show_default=True, type=int, help="Images per feature batch.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Sampler option for a run directory. Repeatable.")
@click.option("--weights", default=None, type=click.Path(exists=True, dir_okay=False),
              help="fmnist-cnn weights to use instead of the packaged/cached ones.")
@click.option("--inception-weights", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A pytorch-fid pt_inception-2015-12-05-6726825d.pth to use instead of the bundled TorchScript (or set $ZOO_INCEPTION_WEIGHTS).")
@click.option("--real-vs-real", is_flag=True,
              help="No SOURCE: score n train images (the floor) and n uniform-noise images (the ceiling).")
@click.option("--save-stats", default=None, metavar="STATS.npz",
              help="Write the features, mean and covariance of SOURCE (or --ref, or the --split images of --data) "
                   "to this .npz, to reuse as --ref; nothing is scored.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Write results with provenance here.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@device_option
@import_option
def eval_cmd(source, ref, data_spec, features, n, metrics, split, seed, batch_size, opts, weights, inception_weights,
             real_vs_real, save_stats, json_out, quiet, device):
    """Score SOURCE against a reference: each a run directory (sampled here with fixed seeds), a .npz of
    uint8 images (NCHW/NHWC, gray or RGB), a folder of PNG/JPEG files, or a dataset spec (its --split images).

    \b
    zoo eval SOURCE [--ref REF]          REF default: the first n images of --split of --data
    zoo eval [SOURCE] --save-stats S.npz summarise once (default: the --split images of --data) ...
    zoo eval SOURCE --ref S.npz          ... and reuse: FID equals the direct computation's
    zoo eval --real-vs-real              the floor (train images) and ceiling (noise) of each metric
    torchrun --nproc_per_node 2 -m -- zoo eval SOURCE   sampling and features split over 2 processes

    Examples: zoo eval runs/vae --n 10000 --json vae-eval.json;
    zoo eval samples/ --ref fmnist-test.npz --device cuda
    """
    o = EvalOptions(source, ref, data_spec, features, n, metrics, split, seed, batch_size, opts, weights,
                    inception_weights, real_vs_real, save_stats, json_out, quiet, device)
    from .. import dist
    o.check()
    with dist.sharded():
        if o.real_vs_real:
            record, columns = floor_and_ceiling(o)
        elif o.save_stats:
            record, columns = save_reference_stats(o), None
        else:
            record, columns = score(o)
    if not dist.is_main():
        return
    if columns:
        print_table(columns)
    write_record(o.json_out, record)
