"""Training throughput of one or more families at default size: steps/s at a batch size,
training FLOPs per step (FlopCounterMode, forward + backward of every phase of the first
stage) and achieved GFLOP/s, beside the machine's fp32 matmul GFLOP/s in the same run.

  python benchmarks/bench_train.py --family vae --batch 128
"""
from __future__ import annotations

import argparse
import time

import torch

import zoo
from zoo.data import load_dataset
from zoo.images import to_float
from zoo.perf import count_flops, matmul_gflops


def train_step_fn(model, x):
    phases = next(iter(model.stage_plan().values()))
    groups = model.param_groups()
    opts = {p: model.configure_optimizer(p, groups[p]) for p in phases}

    def step():
        for p in phases:
            opts[p].zero_grad(set_to_none=True)
            model.loss(x, phase=p)["loss"].backward()
            opts[p].step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", action="append", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=10.0, help="time each family for about this long")
    ap.add_argument("--data", default="fashion-mnist", help="dataset spec of the training batch")
    args = ap.parse_args()
    data = load_dataset(args.data, "train")
    x = to_float(data.images[: args.batch])
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul {peak:.1f} GFLOP/s, batch {args.batch}\n")
    print("| family | params | train MFLOP/step | steps/s | images/s | achieved GFLOP/s | of matmul |")
    print("|---|---|---|---|---|---|---|")
    for fam in args.family:
        torch.manual_seed(0)
        m = zoo.get_model(fam).train()
        step = train_step_fn(m, x)
        flops, _ = count_flops(step)
        step()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            step()
            n += 1
        sps = n / (time.perf_counter() - t0)
        print(f"| {fam} | {m.num_params():,} | {flops / 1e6:.0f} | {sps:.2f} | {sps * args.batch:.0f} | "
              f"{sps * flops / 1e9:.1f} | {100 * sps * flops / 1e9 / peak:.0f}% |")
    print(f"\nmatmul ceiling re-measured after: {matmul_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
