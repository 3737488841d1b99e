"""zoo under torchrun on this machine: training throughput and sharded evaluation with 1 and 2
processes, and (on paper) the standard bench spread over N machines with `zoo bench --shard`.

  python benchmarks/bench_ddp.py train --family vae --steps 100 --batch-size 128
  python benchmarks/bench_ddp.py eval --family vae --n 10000
  python benchmarks/bench_ddp.py paper --results results/standard --machines 8

``train`` runs the installed `zoo train` four ways in one invocation, so that they are compared
as ratios measured together: one process with 2 threads (the default), one process with 1 thread,
one process with 1 thread on half the batch (the work of one rank of two, alone), and
`torchrun --nproc_per_node 2` (1 thread each). images/s counts the global batch over the
trainer's own step time (summary.json ``wall_s``, the first, FLOP-counting step included).
``eval`` trains nothing when --run is given; otherwise it trains a run of --family for --tflops
first, then times `zoo eval RUN --n N --metrics fid` with 1 process (2 threads, then 1) and with 2
(1 thread each). The FID is identical between equal thread counts; float kernels may round
differently with 2 threads than with 1.
``paper`` reads the per-cell wall-clock of a bench results folder and gives the makespan of the
cells dealt out by `--shard K/N` (every N-th cell), beside the best possible split.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZOO = str(Path(sys.executable).parent / "zoo")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "--", "zoo"]


def run(cmd: list[str], threads: int, copies: int = 1) -> float:
    """Run ``copies`` of cmd at once (``{i}`` in an argument becomes the copy's index), each with
    ``threads`` OpenMP threads; returns the wall-clock seconds until all are done (fails loudly)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.time()
    procs = [subprocess.Popen([a.replace("{i}", str(i)) for a in cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(copies)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return time.time() - t0


def train(args) -> None:
    half = args.batch_size // 2
    # (name, launcher, threads, batch per process, copies run at once, images per step of one copy)
    ways = [("1 process, 2 threads", [ZOO], 2, args.batch_size, 1),
            ("1 process, 1 thread", [ZOO], 1, args.batch_size, 1),
            ("1 process, 1 thread, half batch (one rank's work, alone)", [ZOO], 1, half, 1),
            ("2 independent processes at once, 1 thread, half batch each (no communication)", [ZOO], 1, half, 2),
            ("torchrun, 2 processes x 1 thread (DDP)", TORCHRUN, 1, half, 1)]
    print(f"zoo train {args.family} --steps {args.steps} --batch-size {args.batch_size} --data {args.data}\n")
    print("| how | batch per process | step time (s) | images/s | command wall (s) |")
    print("|---|---:|---:|---:|---:|")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, launcher, threads, batch, copies) in enumerate(ways):
            out = Path(tmp) / f"run{i}-{{i}}"
            global_batch = args.batch_size if launcher is TORCHRUN else batch
            wall = run(launcher + ["train", args.family, "--data", args.data, "--steps", str(args.steps),
                                   "--batch-size", str(global_batch), "--quiet", "--out", str(out)], threads, copies)
            steps = [json.loads((Path(tmp) / f"run{i}-{c}" / "summary.json").read_text()) for c in range(copies)]
            per_step = max(s["wall_s"] / s["steps"] for s in steps)
            rows[i] = per_step
            print(f"| {name} | {batch} | {per_step:.4f} | {copies * global_batch / per_step:.1f} | {wall:.1f} |")
    two, alone, side_by_side = rows[4], rows[2], rows[3]
    print(f"\nspeed-up of 2 DDP processes over 1 process with 2 threads: {rows[0] / two:.2f}x; "
          f"over 1 process with 1 thread: {rows[1] / two:.2f}x")
    print(f"a DDP rank's step takes {two:.4f} s against {alone:.4f} s for the same work alone: "
          f"{side_by_side - alone:.4f} s of it is two processes sharing the machine (the same work side by side, "
          f"no communication), {two - side_by_side:.4f} s is DDP (gradient all-reduce, buffer broadcast, "
          f"the per-step agreement on stopping)")


def evaluate(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rundir = args.run
        if rundir is None:
            rundir = str(Path(tmp) / "run")
            run([ZOO, "train", args.family, "--tflops", str(args.tflops), "--quiet", "--out", rundir], 2)
        print(f"zoo eval {args.run or args.family + f' ({args.tflops} TFLOP run)'} --n {args.n} --metrics fid\n")
        print("| how | wall-clock (s) | FID (fmnist-cnn) |")
        print("|---|---:|---:|")
        for name, launcher, threads in (("1 process, 2 threads", [ZOO], 2), ("1 process, 1 thread", [ZOO], 1),
                                        ("torchrun, 2 processes x 1 thread", TORCHRUN, 1)):
            js = Path(tmp) / f"{name}.json"
            wall = run(launcher + ["eval", rundir, "--n", str(args.n), "--metrics", "fid", "--quiet",
                                   "--json", str(js)], threads)
            print(f"| {name} | {wall:.1f} | {json.loads(js.read_text())['fid']!r} |")


def paper(args) -> None:
    cells = json.loads((Path(args.results) / "results.json").read_text())["cells"]
    cells = sorted(cells, key=lambda c: (c["family"], c["seed"]))   # the bench's own order: family, then seed
    # a cell that reused an earlier training run records only its evaluation: add the training back
    cost = [max(c["cell_wall_s"], c["train_wall_s"] + c.get("sample_wall_s", 0.0)) for c in cells]
    n = args.machines
    shard = [sum(cost[k::n]) for k in range(n)]
    lpt = [0.0] * n
    for c in sorted(cost, reverse=True):               # longest-processing-time-first, the best simple split
        lpt[lpt.index(min(lpt))] += c
    print(f"{len(cells)} cells of {args.results}, {sum(cost) / 60:.1f} min on one machine\n")
    print("| split | busiest machine (min) | speed-up |")
    print("|---|---:|---:|")
    print(f"| one machine | {sum(cost) / 60:.1f} | 1.00x |")
    print(f"| --shard K/{n} (every {n}th cell) | {max(shard) / 60:.1f} | {sum(cost) / max(shard):.2f}x |")
    print(f"| best split over {n} (LPT) | {max(lpt) / 60:.1f} | {sum(cost) / max(lpt):.2f}x |")
    print(f"| bound: the longest cell | {max(cost) / 60:.1f} | {sum(cost) / max(cost):.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--family", default="vae")
    t.add_argument("--steps", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--data", default="fashion-mnist")
    e = sub.add_parser("eval")
    e.add_argument("--family", default="vae")
    e.add_argument("--run", default=None, help="a trained run folder (default: train one of --family)")
    e.add_argument("--tflops", type=float, default=1.0)
    e.add_argument("--n", type=int, default=10000)
    p = sub.add_parser("paper")
    p.add_argument("--results", default="results/standard")
    p.add_argument("--machines", type=int, default=8)
    args = ap.parse_args()
    {"train": train, "eval": evaluate, "paper": paper}[args.what](args)


if __name__ == "__main__":
    main()
