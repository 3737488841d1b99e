"""Shared measurements: machine matmul GFLOP/s, sampling throughput and FLOPs, latency, memory.

Timings on a shared machine are noisy: compare ratios taken in the same run (the matmul
ceiling is measured right beside the model).
"""
from __future__ import annotations

import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """fp32 GEMM throughput of this machine, in GFLOP/s (best of 3 timed blocks)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 * reps / best / 1e9


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """(total FLOPs counted by FlopCounterMode, return value) of fn(*args, **kwargs)."""
    with FlopCounterMode(display=False) as fc:
        out = fn(*args, **kwargs)
    return int(fc.get_total_flops()), out


def sampling_flops_per_image(model, n: int = 4, **sampler) -> float:
    """FLOPs to sample one image (all network evaluations), counted on n images."""
    flops, _ = count_flops(model.sample, n, seed=0, batch_size=n, **sampler)
    return flops / n


def forward_flops_per_image(model, x: torch.Tensor, phase: str | None = None) -> float:
    """FLOPs of one forward ``loss`` call per image (no backward) on batch x in [-1, 1]."""
    phase = phase or next(iter(model.stage_plan().values()))[0]
    with torch.no_grad():
        flops, _ = count_flops(model.loss, x, phase=phase)
    return flops / x.shape[0]


def time_call(fn, *, min_time: float = 2.0, min_reps: int = 1, warmup: int = 1) -> float:
    """Median seconds per call of fn() over at least min_reps calls and min_time seconds."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB). Linux reports ru_maxrss in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sampling_report(model, *, batch: int = 256, n: int | None = None, min_time: float = 3.0, **sampler) -> dict:
    """Images/s at ``batch``, FLOPs per image, achieved GFLOP/s, batch-1 latency and NFE."""
    n = n or batch
    flops = sampling_flops_per_image(model, n=min(4, n), **sampler)
    sec = time_call(lambda: model.sample(n, seed=0, batch_size=batch, **sampler), min_time=min_time)
    lat = time_call(lambda: model.sample(1, seed=0, batch_size=1, **sampler), min_time=min(1.0, min_time), min_reps=3)
    ips = n / sec
    return {"images_per_s": ips, "flops_per_image": flops, "achieved_gflops": ips * flops / 1e9,
            "latency_s": lat, "nfe": model.nfe(**sampler), "batch": batch}


def probe_run(run_dir: str, *, batch: int = 256, min_time: float = 3.0, device: str = "cpu",
              sampler: dict | None = None) -> dict:
    """Sampling speed and peak memory of a trained run, measured in a fresh subprocess.

    A fresh process gives a clean peak-RSS reading (the OS high-water mark cannot be reset
    inside one process): peak memory while sampling = peak RSS after sampling minus the RSS
    with the model loaded. On CUDA it is torch.cuda.max_memory_allocated instead.
    """
    import json
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "zoo.perf", str(run_dir), "--batch", str(batch), "--min-time", str(min_time),
           "--device", device, "--sampler", json.dumps(sampler or {})]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"sampling probe failed for {run_dir}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _probe_main() -> None:
    import argparse
    import json
    ap = argparse.ArgumentParser(description="Measure sampling speed and memory of a run (used by zoo bench).")
    ap.add_argument("run")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sampler", default="{}")
    a = ap.parse_args()
    import zoo
    from zoo.plugins import load_plugins
    load_plugins()   # outside families named by --import reach this subprocess through $ZOO_IMPORT
    model = zoo.load(a.run).to(a.device)
    sampler = json.loads(a.sampler)
    model.sample(2, seed=0, batch_size=2, **sampler)  # warm up allocator and lazy inits
    base = current_rss_mb()
    if a.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    r = sampling_report(model, batch=a.batch, min_time=a.min_time, **sampler)
    if a.device.startswith("cuda"):
        r["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        r["peak_mem_mb"] = max(0.0, peak_rss_mb() - base)
    r["threads"] = torch.get_num_threads()
    print(json.dumps(r))


def current_rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc (Linux)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return peak_rss_mb()


if __name__ == "__main__":
    _probe_main()
