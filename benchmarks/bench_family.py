"""Sampling speed, FLOPs per image and achieved GFLOP/s of one or more families, beside the
machine's fp32 matmul GFLOP/s measured in the same run. Prints a markdown table.

  python benchmarks/bench_family.py --family vae                 # default-size, untrained weights
  python benchmarks/bench_family.py --run runs/vae-10tf          # a trained run directory
  python benchmarks/bench_family.py --family diffusion --opt steps=50

Speed does not depend on the weights' values, so untrained default-size models time the same
as trained ones (except data-dependent samplers, none so far).
"""
from __future__ import annotations

import argparse

import torch

import zoo
from zoo.config import parse_opts
from zoo.images import to_float
from zoo.perf import forward_flops_per_image, matmul_gflops, sampling_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", action="append", default=[], help="family at default size (repeatable)")
    ap.add_argument("--run", action="append", default=[], help="trained run directory (repeatable)")
    ap.add_argument("--batch", type=int, default=256, help="sampling batch size")
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="sampler option")
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds to time each measurement")
    args = ap.parse_args()
    models = [(f, zoo.get_model(f)) for f in args.family] + [(r, zoo.load(r)) for r in args.run]
    if not models:
        ap.error("give --family or --run")
    sampler = parse_opts(args.opt)
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul {peak:.1f} GFLOP/s\n")
    print("| model | params | fwd MFLOP/img (loss) | sample MFLOP/img | NFE | images/s @%d | latency b=1 (s) | achieved GFLOP/s | of matmul |" % args.batch)
    print("|---|---|---|---|---|---|---|---|---|")
    for label, m in models:
        m.eval()
        x = to_float(torch.zeros(8, m.config.channels, m.config.image_size, m.config.image_size, dtype=torch.uint8))
        fwd = forward_flops_per_image(m, x)
        r = sampling_report(m, batch=args.batch, min_time=args.min_time, **sampler)
        print(f"| {label} | {m.num_params():,} | {fwd / 1e6:.1f} | {r['flops_per_image'] / 1e6:.1f} | {r['nfe']} | "
              f"{r['images_per_s']:.1f} | {r['latency_s']:.4f} | {r['achieved_gflops']:.1f} | "
              f"{100 * r['achieved_gflops'] / peak:.0f}% |")
    print(f"\nmatmul ceiling re-measured after: {matmul_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
