"""KV-cache sampling against prefix recomputation for the pixel GPT (784-token images).

  python benchmarks/bench_kv_cache.py                      # default pixel_gpt config, batch 64
  python benchmarks/bench_kv_cache.py --set d_model=96 --batch 64 --full

The cached sampler is timed over all T steps. The recompute sampler runs one full forward pass
over the prefix per token, O(T) times the work; by default it is timed at ``--points`` prefix
lengths spread over 1..T and the total over all T steps is estimated by linear interpolation
between them (printed as an estimate). ``--full`` times the real recompute sampler end to end
instead. Speed does not depend on the weights' values, so the model is untrained.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import zoo
from zoo import rng
from zoo.config import parse_opts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="pixel_gpt config override (repeatable)")
    ap.add_argument("--points", type=int, default=8, help="prefix lengths timed for the recompute estimate")
    ap.add_argument("--full", action="store_true", help="time the whole recompute sampler (slow)")
    args = ap.parse_args()
    model = zoo.get_model("pixel_gpt", **parse_opts(args.sets)).eval()
    net, b = model.net, args.batch
    T = net.seq_len
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pixel_gpt d_model={net.d_model} "
          f"n_layers={net.n_layers} n_heads={net.n_heads} window_rows={net.window_rows}; T={T}, batch {b}\n")

    gens = rng.generators(0, 0, b)
    net.sample(rng.generators(0, 0, b)[:2])                # warm-up
    t0 = time.perf_counter()
    net.sample(gens, use_cache=True)
    cache_s = time.perf_counter() - t0

    if args.full:
        t0 = time.perf_counter()
        net.sample(rng.generators(0, 0, b), use_cache=False)
        recompute_s, how = time.perf_counter() - t0, "measured, all steps"
    else:
        # one recompute step at prefix length L = one forward over L positions + the draw
        lengths = np.unique(np.linspace(1, T, args.points).round().astype(int))
        tokens = torch.randint(0, net.vocab_size, (b, T))
        secs = []
        with torch.no_grad():
            for L in lengths:
                reps = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    logits = net(tokens[:, :L])[:, L - 1]                  # (B, V)
                    rng.categorical(gens, torch.softmax(logits.float(), dim=-1))  # the sampler's draw at T=1
                    reps.append(time.perf_counter() - t0)
                secs.append(min(reps))
        per_step = np.interp(np.arange(1, T + 1), lengths, secs)  # seconds for the step at each prefix length
        recompute_s = float(per_step.sum())
        how = f"estimated from {len(lengths)} timed prefix lengths {lengths.tolist()} (linear interpolation)"
        print("recompute step seconds at prefix length: " + ", ".join(f"{L}: {s:.3f}" for L, s in zip(lengths, secs)))

    print(f"\n| sampler | seconds for {b} images | images/s |")
    print("|---|---|---|")
    print(f"| KV cache | {cache_s:.1f} | {b / cache_s:.2f} |")
    print(f"| recompute prefix | {recompute_s:.1f} | {b / recompute_s:.3f} |")
    print(f"\nspeed-up: {recompute_s / cache_s:.1f}x  (recompute {how})")


if __name__ == "__main__":
    main()
