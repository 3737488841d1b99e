"""`zoo eval` and `zoo features train`: parse the options, call zoo.metrics, print the results."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .common import CONTEXT, SEED, check_device, check_writable, command_line, device_option, import_option


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
    from ..metrics.features import train_feature_cnn
    path, rec = train_feature_cnn(data_spec, out, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, flip=flip,
                                  shift=shift, dropout=dropout, widths=widths, stem=stem, threads=threads,
                                  progress=not quiet, log=click.echo, command=command_line())
    click.echo(f"test accuracy {rec['test_accuracy']:.4f}; sha256 {rec['sha256']}; wrote {path}")


# ---- zoo eval ----------------------------------------------------------------------------------------
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
                   "SOURCE (10000 samples for a run directory or --real-vs-real; the standard `zoo bench` profile "
                   "scores 5000, so give --n 5000 to compare with it); a dataset reference takes as many as SOURCE "
                   "has, an image --ref all of its own. The result line states n on each side.")
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
    from .. import dist
    from ..config import parse_opts
    from ..files import atomic_write_text
    from ..metrics.compare import EvalSettings, check_job, floor_and_ceiling, result_lines, save_source_stats, score
    s = EvalSettings(data=data_spec, features=features, n=n, metrics=metrics, split=split, seed=seed,
                     batch_size=batch_size, weights=weights, inception_weights=inception_weights, device=device,
                     progress=not quiet, log=lambda text: click.echo(text, err=True))
    check_job(s, source, ref, real_vs_real=real_vs_real, save_stats=save_stats)
    for path, what in ((save_stats, "--save-stats"), (json_out, "--json")):
        if path:
            check_writable(path, what)
    s.device = dist.init(check_device(device))   # under torchrun: sampling and features are split
    s.sampler = parse_opts(opts)
    command, columns = command_line(), None
    with dist.sharded():
        if real_vs_real:
            record, columns = floor_and_ceiling(s)
        elif save_stats:
            record = save_source_stats(save_stats, source if source is not None else ref, s,
                                       "SOURCE" if source is not None or ref is None else "--ref")
        else:
            record, columns = score(source, ref, s)
    if not dist.is_main():
        return
    if save_stats:
        click.echo(f"wrote {save_stats}: {record['extractor']} statistics ({record['dim']}-d, weights sha256 "
                   f"{record['weights_sha256'][:12]}) of the {record['source']}")
    for line in result_lines(columns or {}):
        click.echo(line)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps({"command": command, **record}, indent=2) + "\n")
        click.echo(f"wrote {json_out}")
