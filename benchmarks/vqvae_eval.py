"""Evaluate a trained VQ-VAE run: codebook use, reconstruction error and FID, sample FID, bits/dim bound.

  python benchmarks/vqvae_eval.py runs/vqvae-10tf --grid results/vqvae/reconstructions.png \
      --json results/vqvae/metrics.json

Everything is on the test split of the run's dataset:
- codebook use: live codes (used at least once) and perplexity of the test set's code histogram;
- reconstruction MSE of the uint8 reconstructions (decoder mean, rounded) against the test images,
  in [0, 1] pixel units and in 8-bit levels (RMSE);
- FID (default features, ``zoo.metrics.evaluate``) of the reconstructions of the whole test set
  against the test set (the ceiling for any prior), and of ``--samples`` prior samples (seed 0);
- the bits/dim lower bound (prior code likelihood + decoder likelihood) and its two parts.
The reconstruction grid shows rows of test images, each followed by a row of their reconstructions.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import zoo
from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.images import to_float, to_uint8, write_images


@torch.no_grad()
def reconstruct_all(model, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 reconstructions (N,C,H,W) of uint8 images."""
    return torch.cat([to_uint8(model.reconstruct(to_float(images[s:s + batch_size]).to(model.device)))
                      for s in range(0, images.shape[0], batch_size)])


@torch.no_grad()
def bound_parts(model, images: torch.Tensor, batch_size: int = 500) -> dict[str, float]:
    """Mean bits/dim of the bound and of its prior and decoder parts over uint8 images."""
    dims = images[0].numel() * math.log(2)
    prior, dec = [], []
    for s in range(0, images.shape[0], batch_size):
        lp_prior, lp_x = model.log_prob_parts(to_float(images[s:s + batch_size]).to(model.device))
        prior.append(-lp_prior / dims)
        dec.append(-lp_x / dims)
    prior, dec = torch.cat(prior).double(), torch.cat(dec).double()
    total = prior + dec
    return {"bpd_bound": float(total.mean()), "bpd_bound_sem": float(total.std() / math.sqrt(len(total))),
            "bpd_prior_part": float(prior.mean()), "bpd_decoder_part": float(dec.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--grid", default=None, help="reconstruction grid .png (rows of test images / reconstructions)")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--samples", type=int, default=10000, help="prior samples for the sample FID (0: skip)")
    ap.add_argument("--save-npz", default=None, help="also save reconstructions and samples as .npz here")
    ap.add_argument("--features", default="fmnist-cnn")
    ap.add_argument("--data", default=None, help="dataset spec [default: the run's own, from its train.json]")
    args = ap.parse_args()

    model = zoo.load(args.run)
    rec = json.loads((Path(args.run) / "train.json").read_text())
    data = args.data or rec.get("data")
    if not data:
        ap.error(f"{args.run}/train.json records no dataset: give --data")
    test = load_dataset(data, "test")
    out: dict = {"run": args.run, "data": data, "split": "test", "n_test": len(test)}

    out["codebook"] = model.codebook_usage(test.images)
    t = time.perf_counter()
    recon = reconstruct_all(model, test.images)
    out["reconstruct_s"] = round(time.perf_counter() - t, 2)
    diff = recon.double() - test.images.double()                            # 8-bit levels
    out["recon_mse_01"] = float((diff / 255.0).pow(2).mean())               # [0, 1] pixel units
    out["recon_rmse_levels"] = float(diff.pow(2).mean().sqrt())             # 8-bit levels
    out.update(bound_parts(model, test.images))

    if args.grid:
        rows = []
        for r in range(5):  # 5 pairs of rows: 10 test images, then their 10 reconstructions
            sl = slice(10 * r, 10 * r + 10)
            rows += [test.images[sl], recon[sl]]
        write_images(torch.cat(rows), args.grid, nrow=10)

    samples = None
    if args.samples > 0:
        t = time.perf_counter()
        samples = model.sample(args.samples, seed=0, batch_size=256)
        out["sample_s"] = round(time.perf_counter() - t, 2)
    npz = args.save_npz
    try:
        from zoo.metrics.evaluate import evaluate
        r = evaluate(recon, data=data, features=args.features, metrics=("fid",))
        out["recon_fid"] = r["fid"]
        out["fid_provenance"] = r.get("provenance")
        if samples is not None:
            out["sample_fid"] = evaluate(samples, data=data, features=args.features, metrics=("fid",))["fid"]
            out["sample_fid_n"] = args.samples
    except (ModuleNotFoundError, ZooError) as e:  # metrics not installed or feature weights missing
        out["fid_note"] = f"FIDs not computed: {e}"
        npz = npz or str(Path(args.run) / "vqvae_eval_images.npz")
    if npz:
        np.savez_compressed(npz, reconstructions=recon.numpy(),
                            samples=(samples.numpy() if samples is not None else np.zeros(0, np.uint8)))
        out["images_npz"] = npz
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
