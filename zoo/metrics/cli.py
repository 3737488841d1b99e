"""`zoo eval` and `zoo features train`, attached to the main CLI through ``COMMANDS``."""
from __future__ import annotations

import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import click

from ..errors import ZooError


# ---- zoo features ----------------------------------------------------------------------------------
@click.group("features")
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
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for init, batch order, augmentation, dropout.")
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
    from .classifier import save_cnn, train_cnn
    from .features import cnn_cache_dir
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
    command = "zoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
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




# ---- zoo eval ----------------------------------------------------------------------------------
ROWS = [("fid", "FID", "{:.4f}"), ("kid_mean", "KID mean", "{:.6f}"), ("kid_std", "KID std", "{:.6f}"),
        ("precision", "precision (k=3)", "{:.4f}"), ("recall", "recall (k=3)", "{:.4f}"),
        ("density", "density (k=5)", "{:.4f}"), ("coverage", "coverage (k=5)", "{:.4f}"),
        ("classifier_score", "classifier score", "{:.4f}"), ("memorization", "memorization", "{:.4f}"),
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


def load_samples(path: str):
    """uint8 (N, C, H, W) images from a .npz (key 'images', or its only array): NCHW, NHW or NHWC."""
    import numpy as np
    import torch
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ZooError(f"{path}: no 'images' array (found {', '.join(keys) or 'nothing'})")
            a = z[key]
    except (OSError, ValueError) as e:
        raise ZooError(f"{path}: cannot read samples ({str(e).splitlines()[0][:200]})") from None
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(a))


def _inception_estimate(ext, n_images: int) -> None:
    """Time a few images and print how long embedding ``n_images`` will take."""
    import torch
    probe = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    t = time.perf_counter()
    ext(probe, batch_size=4)
    ips = 4 / (time.perf_counter() - t)
    click.echo(f"inception runs at ~{ips:.1f} images/s here: up to {n_images} images to embed "
               f"(samples, plus the reference unless cached) ~ {n_images / ips / 60:.1f} min", err=True)


@click.command("eval")
@click.argument("source", required=False, type=click.Path(exists=True))
@click.option("--data", "data_spec", default="fashion-mnist", show_default=True, help="Dataset spec of the reference.")
@click.option("--features", default="fmnist-cnn", show_default=True, type=click.Choice(["fmnist-cnn", "inception"]),
              help="Feature network for FID, KID, precision/recall, density/coverage.")
@click.option("--n", "n", default=None, type=int,
              help="Samples to score and reference images (the first n of --split). "
                   "Default: all images of a .npz; 10000 for a run directory or --real-vs-real.")
@click.option("--metrics", default="fid,kid,pr,dc,cs,mem", show_default=True,
              help="Comma-separated: fid,kid,pr,dc,cs,mem,bpd (bpd needs a run directory).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "train"]),
              help="Reference split.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Sampling seed (image i depends on (seed, i)); also seeds KID subsets and the floor/ceiling draws.")
@click.option("--batch-size", default=500, show_default=True, type=int, help="Images per feature batch.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Sampler option for a run directory. Repeatable.")
@click.option("--weights", default=None, type=click.Path(exists=True, dir_okay=False),
              help="fmnist-cnn weights to use instead of the packaged/cached ones.")
@click.option("--inception-weights", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A pytorch-fid pt_inception-2015-12-05-6726825d.pth to use instead of the bundled TorchScript (or set $ZOO_INCEPTION_WEIGHTS).")
@click.option("--real-vs-real", is_flag=True,
              help="No SOURCE: score n train images (the floor) and n uniform-noise images (the ceiling).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Write results with provenance here.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(source, data_spec, features, n, metrics, split, seed, batch_size, opts, weights, inception_weights,
             real_vs_real, json_out, quiet):
    """Score samples against a dataset: a RUN directory (sampled here with fixed seeds) or a SAMPLES.npz.

    Examples: zoo eval runs/vae --n 10000 --json vae-eval.json;
    zoo eval --real-vs-real --n 5000 --json floor-5k.json
    """
    from ..cli import parse_opts
    from .evaluate import evaluate, noise_ceiling, parse_metrics, real_vs_real as floor_fn
    from .features import get_extractor
    mets = parse_metrics(metrics)
    if batch_size < 1:
        raise ZooError(f"--batch-size must be >= 1, got {batch_size}")
    if real_vs_real and source is not None:
        raise ZooError("--real-vs-real takes no SOURCE")
    if not real_vs_real and source is None:
        raise ZooError("give a run directory or a samples .npz (or --real-vs-real)")
    if n is not None and n < 2:
        raise ZooError(f"--n must be >= 2, got {n}")
    if features == "inception":
        ext = get_extractor("inception", weights=inception_weights)
    else:
        if inception_weights:
            raise ZooError("--inception-weights needs --features inception")
        ext = get_extractor("fmnist-cnn", data=data_spec, weights=weights)
    progress = not quiet
    record: dict = {"command": "zoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    if real_vs_real:
        if "bpd" in mets:
            raise ZooError("--real-vs-real has no model: drop bpd from --metrics")
        n = 10_000 if n is None else n
        if features == "inception":
            _inception_estimate(ext, 3 * n)
        kw = dict(features=ext, seed=seed, split=split, metrics=mets, progress=progress, batch_size=batch_size)
        floor = floor_fn(data_spec, n, **kw)
        ceiling = noise_ceiling(data_spec, n, **kw)
        print_table({f"floor (train, n={n})": floor, f"ceiling (noise, n={n})": ceiling})
        record.update(floor=floor, ceiling=ceiling)
    else:
        model = None
        p = Path(source)
        if p.is_dir():
            from ..api import load
            model = load(p)
            n = 10_000 if n is None else n
            sampler = parse_opts(opts)
            record.update(run=str(p), family=model.name, sampler=sampler, seed=seed)
            if features == "inception":
                _inception_estimate(ext, 2 * n)
            try:
                fake = None if set(mets) == {"bpd"} else model.sample(n, seed=seed, progress=progress, **sampler)
            except TypeError as e:
                raise ZooError(f"bad sampler option for {model.name}: {e}") from None
        else:
            if p.suffix != ".npz":
                raise ZooError(f"{source}: expected a run directory or a .npz of samples")
            if opts:
                raise ZooError("--opt only applies to a run directory")
            fake = load_samples(source)
            if n is not None:
                if n > fake.shape[0]:
                    raise ZooError(f"--n {n} is more than the {fake.shape[0]} images in {source}")
                fake = fake[:n]
            record.update(samples=str(p))
            if features == "inception":
                _inception_estimate(ext, 2 * fake.shape[0])
        res = evaluate(fake, data=data_spec, features=ext, metrics=mets, split=split, n=n, progress=progress,
                       batch_size=batch_size, model=model, seed=seed)
        print_table({f"{p.name} (n={res['provenance']['n']})": res})
        record.update(res)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(record, indent=2) + "\n")
        click.echo(f"wrote {json_out}")


COMMANDS = [eval_cmd, features_group]
