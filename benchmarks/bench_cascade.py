"""Cascade measurements (issue 18): the decoder's FID on real downsampled test images, and the figure.

Two subcommands, both reading trained cascade run folders (``zoo train cascade ...`` or the
``runs/`` of ``zoo bench --families cascade_vae_gan,...``):

  decoder  The super-resolution decoder alone: the first n Fashion-MNIST test images, downsampled
           as the cascade trains its base (area, 8-bit), upscaled by the decoder at each sampler
           step count and sampling augmentation level, scored (FID and KID, fmnist-cnn features)
           against the same n full-size test images. This is the ceiling a base can reach
           through this decoder (a base that generated real small images), as the autoencoder's
           reconstruction FID bounds latent diffusion. Paired: the reference images are the
           originals of the upscaled ones (as an autoencoder's reconstruction FID is), so it
           is lower than a score against other real images would be.
  cascade-aug  The whole cascade (the base of one run) sampled at several augmentation levels, with
           its own decoder or one swapped in from another run (e.g. trained without augmentation).
  figure   Small samples of a cascade's base (shown enlarged, nearest neighbour), their
           upscalings by the decoder (same images, one column each), and one-stage samples of the
           same family at full size (cropped from the standard benchmark's seed-0 sample grid,
           results/standard/figures/samples-<family>.png), as one PNG.

Commands behind results/cascade/README.md (OMP_NUM_THREADS=1, one core):

  .venv/bin/python benchmarks/bench_cascade.py decoder --n 2000 --steps 10,20,50 \
      --run 14,aug=results/cascade/standard/runs/cascade_vae_gan-s0 \
      --run 14,no-aug=runs/cascade-dec14-noaug --run 7,aug=runs/cascade-dec7-aug \
      --run 7,no-aug=runs/cascade-dec7-noaug --json results/cascade/decoder_fid.json
  .venv/bin/python benchmarks/bench_cascade.py cascade-aug --n 5000 --aug 0,0.1 \
      --run results/cascade/standard/runs/cascade_vae_gan-s0 \
      --decoder aug=results/cascade/standard/runs/cascade_vae_gan-s0 --decoder no-aug=runs/cascade-dec14-noaug \
      --json results/cascade/cascade_aug.json
  .venv/bin/python benchmarks/bench_cascade.py figure --run results/cascade/standard/runs/cascade_vae_gan-s0 \
      --run results/cascade/standard/runs/cascade_diffusion-s0 --out results/cascade/stages.png
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import zoo
from zoo.data import load_dataset
from zoo.metrics.evaluate import evaluate
from zoo.provenance import cpu_model, git_commit


def _runs(items: list[str]) -> list[tuple[str, Path]]:
    out = []
    for it in items:
        label, _, path = it.rpartition("=") if "=" in it else (it, "", it)
        out.append((label or Path(path).name, Path(path)))
    return out


def decoder_fid(args) -> None:
    test = load_dataset(args.data, "test")
    real = test.images[:args.n]
    rows = []
    for low in [int(v) for v in args.bilinear.split(",") if v]:   # no decoder: the conditioning image itself
        from zoo.images import to_float, to_uint8
        from zoo.models.cascade import downsample, upsample
        up = to_uint8(upsample(downsample(to_float(real), low), real.shape[-1]).clamp(-1, 1))
        m = evaluate(up, data=args.data, features=args.features, metrics=("fid", "kid"), split="test", n=args.n)
        rows.append({"run": "bilinear (no decoder)", "dir": "", "low": low, "aug_max": 0.0, "sample_aug": 0.0,
                     "steps": 0, "n": args.n, "fid": m["fid"], "kid": m["kid_mean"], "upscale_images_per_s": 0.0})
    for label, run in _runs(args.run or []):
        model = zoo.load(run)
        small = model.downsample_images(real)
        levels = [float(a) for a in args.aug.split(",")] if args.aug else [model.config.sample_aug]
        if model.config.aug_max == 0:
            levels = [0.0]  # a decoder trained without augmentation only ever saw clean conditioning
        for aug in levels:
            for steps in [int(s) for s in args.steps.split(",")]:
                t0 = time.time()
                up = model.upscale(small, seed=0, steps=steps, aug=aug)
                wall = time.time() - t0
                m = evaluate(up, data=args.data, features=args.features, metrics=("fid", "kid"), split="test",
                             n=args.n)
                row = {"run": label, "dir": str(run), "low": model.config.low, "aug_max": model.config.aug_max,
                       "sample_aug": aug, "steps": steps, "n": args.n, "fid": m["fid"], "kid": m["kid_mean"],
                       "upscale_images_per_s": args.n / wall}
                rows.append(row)
                print(f"{label}: low {row['low']} aug_max {row['aug_max']} aug {aug} steps {steps}: "
                      f"FID {m['fid']:.2f} KID {m['kid_mean']:.4f} ({row['upscale_images_per_s']:.0f} img/s)",
                      file=sys.stderr, flush=True)
    print("| decoder run | low | trained aug_max | sampling aug | steps | n | FID ↓ | KID×1e3 ↓ | upscalings/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['low']} | {r['aug_max']:g} | {r['sample_aug']:g} | {r['steps']} | {r['n']} | "
              f"{r['fid']:.2f} | {1e3 * r['kid']:.2f} | {r['upscale_images_per_s']:.0f} |")
    _write_json(args, rows)


def _write_json(args, rows: list[dict]) -> None:
    """The rows with their provenance (command, commit, CPU, threads, torch, features) to --json, if given."""
    if args.json:
        doc = {"command": " ".join(sys.argv), "commit": git_commit(), "cpu": cpu_model(),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "features": args.features,
               "rows": rows}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


def cascade_aug(args) -> None:
    """The whole cascade (its own base) at several sampling augmentation levels, optionally with the
    decoder of another run swapped in (same decoder architecture): does augmentation help the
    decoder cope with the base's images?"""
    rows = []
    base_run = Path(args.run[0])
    for label, dec_run in _runs(args.decoder):
        model = zoo.load(base_run)
        if dec_run != base_run:
            other = zoo.load(dec_run)
            model.decoder.load_state_dict(other.decoder.state_dict())
            model.config.aug_max = other.config.aug_max
        levels = [float(a) for a in args.aug.split(",")]
        if model.config.aug_max == 0:
            levels = [0.0]  # a decoder trained without augmentation only ever saw clean conditioning
        for aug in levels:
            imgs = model.sample(args.n, seed=0, aug=aug)
            m = evaluate(imgs, data=args.data, features=args.features, metrics=("fid", "kid", "dc"), split="test",
                         n=args.n)
            rows.append({"base_run": str(base_run), "decoder": label, "decoder_dir": str(dec_run),
                         "aug_max": model.config.aug_max, "sample_aug": aug, "n": args.n, "fid": m["fid"],
                         "kid": m["kid_mean"], "coverage": m["coverage"]})
            print(f"{label} aug {aug}: FID {m['fid']:.2f}", file=sys.stderr, flush=True)
    print(f"| base run | decoder | trained aug_max | sampling aug | n | FID ↓ | KID×1e3 ↓ | coverage ↑ |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['base_run']).name} | {r['decoder']} | {r['aug_max']:g} | {r['sample_aug']:g} | {r['n']} | "
              f"{r['fid']:.2f} | {1e3 * r['kid']:.2f} | {r['coverage']:.3f} |")
    _write_json(args, rows)


def _grid_cells(png: Path, k: int) -> torch.Tensor:
    """The first k images of a make_grid PNG of 28x28 images (padding 2), as uint8 (k, 1, 28, 28)."""
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(png).convert("L"))
    cols = (a.shape[1] - 2) // 30
    cells = [a[2 + 30 * (i // cols):30 + 30 * (i // cols), 2 + 30 * (i % cols):30 + 30 * (i % cols)] for i in range(k)]
    return torch.from_numpy(np.stack(cells))[:, None]


def figure(args) -> None:
    import torch.nn.functional as F
    from torchvision.utils import make_grid, save_image
    k = args.k
    panels = []
    for _, run in _runs(args.run):
        model = zoo.load(run)
        small, full = model.sample_stages(k, seed=0)
        big = F.interpolate(small.float(), size=full.shape[-2:], mode="nearest")
        rows = [big, full.float()]
        one = Path(args.standard) / "figures" / f"samples-{model.config.base}.png"
        if one.exists():
            rows.append(_grid_cells(one, k).float())
        else:
            print(f"warning: no one-stage samples at {one}", file=sys.stderr)
        panels.append(torch.cat(rows))
        print(f"{run}: rows = small ({model.config.low}x{model.config.low}, enlarged), upscaled, one-stage "
              f"{model.config.base}", file=sys.stderr)
    grid = make_grid(torch.cat(panels) / 255.0, nrow=k, padding=2, pad_value=1.0)
    save_image(grid, args.out)
    print(f"wrote {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decoder", help="decoder FID on real downsampled test images")
    d.add_argument("--run", action="append", help="LABEL=RUN_DIR of a trained cascade (repeat)")
    d.add_argument("--bilinear", default="", help="also score plain bilinear upsampling from these sizes, e.g. 14,7")
    d.add_argument("--n", type=int, default=2000)
    d.add_argument("--steps", default="10,20,50")
    d.add_argument("--aug", default="", help="sampling augmentation levels, e.g. 0,0.1 [default: the run's]")
    d.add_argument("--data", default="fashion-mnist")
    d.add_argument("--features", default="fmnist-cnn")
    d.add_argument("--json", default="")
    f = sub.add_parser("figure", help="small samples, their upscalings, one-stage samples")
    f.add_argument("--run", action="append", required=True)
    f.add_argument("--k", type=int, default=10)
    f.add_argument("--standard", default="results/standard")
    f.add_argument("--out", default="results/cascade/stages.png")
    a = sub.add_parser("cascade-aug", help="the cascade at several sampling augmentation levels / decoders")
    a.add_argument("--run", action="append", required=True, help="the cascade run whose base is used")
    a.add_argument("--decoder", action="append", required=True, help="LABEL=RUN_DIR whose decoder is used (repeat)")
    a.add_argument("--aug", default="0,0.1")
    a.add_argument("--n", type=int, default=5000)
    a.add_argument("--data", default="fashion-mnist")
    a.add_argument("--features", default="fmnist-cnn")
    a.add_argument("--json", default="")
    args = p.parse_args()
    {"decoder": decoder_fid, "figure": figure, "cascade-aug": cascade_aug}[args.cmd](args)


if __name__ == "__main__":
    main()
