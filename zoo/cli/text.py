"""`zoo text`: the text models of text-to-image work, trained from the captions and committed."""
from __future__ import annotations

import json

import click

from ..errors import ZooError
from .common import CONTEXT, SEED, check_positive, command_line


@click.group("text", context_settings=CONTEXT)
def text_group():
    """Text models for conditional generation, trained on the captions of a dataset's training split
    (see `zoo data NAME --captions 5`) and committed under zoo/text/weights/.

    \b
    encoder  the frozen text encoder a conditional generator takes (`zoo train FAMILY --conditional`)
    clip     the contrastive image-text evaluator behind the CLIP score and zero-shot accuracy
    info     what the committed text models are, with their hashes and held-out scores
    """


@text_group.command("encoder", context_settings=CONTEXT)
@click.option("--size", type=click.Choice(["s", "m", "l", "all"]), default="all",
              help="Width/depth: s = 32 wide, 1 layer; m = 64, 2 layers; l = 128, 4 layers.")
@click.option("--data", "data_spec", default="fashion-mnist", help="Dataset whose training captions it reads.")
@click.option("--steps", default=1500, type=int, help="Optimizer steps.")
@click.option("--batch-size", default=256, type=int, help="Captions per step.")
@click.option("--seed", default=0, type=SEED, help="Seed for weights, batches and masks.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <name>.safetensors and <name>.json (never over the committed ones).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def encoder_cmd(size, data_spec, steps, batch_size, seed, out_dir, quiet):
    """Train the masked-language-model text encoder(s) named mlm-SIZE on the captions.

    A text-only encoder, as Imagen's frozen T5: the generators never see a text space shaped by
    images, so the CLIP-analogue evaluator (which alone sees both) judges them independently.

    The committed models are read from zoo/text/weights/ only: to use one you trained, move its two files
    there in a checkout of zoo (in place of the committed ones; `zoo text info` shows their sha256).
    """
    from tqdm.auto import tqdm
    from ..data import load_dataset
    from ..text.captions import Captioner, class_names_for
    from ..text.encoder import SIZES, check_out_folder, save_record, train_encoder
    from .common import check_writable
    check_positive(steps=steps, batch_size=batch_size)
    folder = check_out_folder(out_dir, [f"mlm-{s}" for s in (list(SIZES) if size == "all" else [size])])
    check_writable(folder)
    train, test = load_dataset(data_spec, "train"), load_dataset(data_spec, "test")
    captioner = Captioner.fit(train.images, class_names_for(data_spec, int(train.labels.max()) + 1))
    for s in (list(SIZES) if size == "all" else [size]):
        bar = tqdm(total=steps, desc=f"mlm-{s}", unit="step", disable=quiet, leave=False)

        def tick(step, loss, bar=bar):
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
        enc, metrics = train_encoder(s, captioner, (train.images, train.labels), (test.images, test.labels),
                                     steps=steps, batch_size=batch_size, seed=seed, progress=tick)
        bar.close()
        rec = {"name": f"mlm-{s}", "kind": "masked language model", "data": data_spec,
               "config": {k: v for k, v in vars(enc.config).items()}, "captioner": captioner.to_dict(),
               "train": {"steps": steps, "batch_size": batch_size, "seed": seed, "caption_draws": 4},
               "metrics": metrics, "command": command_line() if size != "all" else
               f"zoo text encoder --size {s} --steps {steps} --batch-size {batch_size} --seed {seed}"}
        path = save_record(enc, f"mlm-{s}", rec, folder)
        click.echo(f"mlm-{s}: {metrics['params']} parameters, held-out masked-word accuracy "
                   f"{metrics['test_masked_word_accuracy']:.3f} -> {path}")


@text_group.command("clip", context_settings=CONTEXT)
@click.option("--data", "data_spec", default="fashion-mnist", help="Dataset whose captioned training split it reads.")
@click.option("--steps", default=1000, type=int, help="Optimizer steps.")
@click.option("--batch-size", default=256, type=int, help="Image-caption pairs per step.")
@click.option("--lr", default=2e-3, type=float, help="Peak AdamW learning rate (5% warm-up, then cosine to 0).")
@click.option("--seed", default=0, type=SEED, help="Seed for weights, batch order and caption draws.")
@click.option("--threads", default=None, type=int,
              help="CPU threads for torch [default: torch's own choice]; 1 is fastest on a busy machine.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for clip.safetensors and clip.json (never over the committed ones).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def clip_cmd(data_spec, steps, batch_size, lr, seed, threads, out_dir, quiet):
    """Train the CLIP-analogue evaluator `clip`: an image CNN and a text transformer into one joint
    space, by the symmetric InfoNCE loss on the training captions (captions with the same content
    -- class and attribute levels -- count as positives of each other).

    The record holds the held-out figures on the test split: zero-shot accuracy, and the CLIP
    score of the real images with their own captions (the ceiling) and with shuffled ones (the floor).

    The committed models are read from zoo/text/weights/ only: to use one you trained, move its two files
    there in a checkout of zoo (in place of the committed ones; `zoo text info` shows their sha256).
    """
    import math
    import torch
    from tqdm.auto import tqdm
    from ..data import load_dataset
    from ..text.captions import Captioner, class_names_for
    from ..text.clip import clip_record, evaluate_clip, train_clip
    from ..text.encoder import check_out_folder, save_record
    from .common import check_writable
    check_positive(steps=steps, threads=threads)
    if batch_size < 2:
        raise ZooError(f"--batch-size must be >= 2 (a contrastive batch needs negatives), got {batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        raise ZooError(f"--lr must be a positive number, got {lr}")
    folder = check_out_folder(out_dir, ["clip"])
    check_writable(folder)
    train, test = load_dataset(data_spec, "train"), load_dataset(data_spec, "test")
    if batch_size > len(train):
        raise ZooError(f"--batch-size {batch_size} is more than the {len(train)} training images")
    if threads:
        torch.set_num_threads(threads)
    captioner = Captioner.fit(train.images, class_names_for(data_spec, int(train.labels.max()) + 1))
    bar = tqdm(total=steps, desc="clip", unit="step", disable=quiet, leave=False)

    def tick(step, loss):
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")
    model, info = train_clip(captioner, (train.images, train.labels), steps=steps, batch_size=batch_size, lr=lr,
                             seed=seed, progress=tick)
    bar.close()
    metrics = {**evaluate_clip(model, captioner, test.images, test.labels), **info}
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "caption_draws": 4,
                "optimizer": "AdamW betas (0.9, 0.98), weight decay 0.05 on matrices", "schedule": "5% warm-up, cosine"}
    record = clip_record(model, captioner, data_spec, settings, metrics, command_line())
    path = save_record(model, "clip", record, folder)
    click.echo(f"clip: {info['params']} parameters, test zero-shot accuracy {metrics['zero_shot_accuracy']:.3f}, "
               f"CLIP score own captions {metrics['clip_score_own_captions']:.2f} / shuffled "
               f"{metrics['clip_score_shuffled_captions']:.2f} -> {path}")


@text_group.command("info", context_settings=CONTEXT)
def info_cmd():
    """List the committed text models: kind, size, data, sha256 and held-out scores."""
    from ..text.encoder import WEIGHTS_DIR, available, read_record
    names = available(WEIGHTS_DIR, prefix="")
    if not names:
        click.echo("no committed text models (train them with `zoo text encoder`)")
    for name in names:
        rec = read_record(name)
        click.echo(f"{name:<8} {rec.get('kind', ''):<24} data={rec.get('data')} sha256={rec['sha256'][:16]} "
                   f"{json.dumps(rec.get('metrics', {}))}")
