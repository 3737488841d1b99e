"""Whether the flow's float32 numerics change its samples: the same noise decoded in float32 and in
float64, for each trained flow run given.

For every run it prints one row:
  - the round trip of 1,000 test images (bin centres) through to_noise and from_noise, in float32:
    the largest error in levels (1 level = 1/256 of the range);
  - for 5,000 draws e ~ N(0, T^2 I): the share of pixels whose 256-level value differs between the
    float32 and the float64 decode, the largest difference in levels, and how many draws overflow
    (a non-finite value before the clamp) in each precision;
  - the fmnist-cnn FID (n = 5,000, against the first 5,000 test images) of both decodes.
If the two decodes agree to within a level on nearly every pixel, and the two FIDs agree, float32
numerics do not explain the flow's FID.

    OMP_NUM_THREADS=1 python benchmarks/flow_numerics.py RUN [RUN ...] [--temperature 0.7] [--n 5000]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

import torch

import zoo
from zoo.data import load_dataset

BINS = 256


def decode_levels(model, e: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, int]:
    """Noise e -> 256-level values (float, before rounding) in the model's dtype, and the number of
    draws whose inverse is not finite somewhere (the decoder clamps those)."""
    out, bad = [], 0
    with torch.no_grad():
        for i in range(0, len(e), batch):
            v = model.from_noise(e[i:i + batch])
            bad += int((~torch.isfinite(v)).flatten(1).any(1).sum())
            out.append(torch.nan_to_num(v, nan=0.0).clamp(-0.5, 0.5 - 1e-9) * BINS + BINS / 2)
    return torch.cat(out), bad


def as_uint8(w: torch.Tensor) -> torch.Tensor:
    """256-level values (float) -> uint8 images, as the flow's decode rounds them (floor)."""
    return torch.floor(w).clamp(0, BINS - 1).to(torch.uint8)


def row(run: str, temperature: float, n: int) -> dict:
    m32 = zoo.load(run)
    m64 = copy.deepcopy(m32).double()
    test = load_dataset("fashion-mnist", "test").images[:1000]
    v = (torch.as_tensor(test).float() + 0.5) / BINS - 0.5
    with torch.no_grad():
        e, _ = m32.to_noise(v)
        back = m32.from_noise(e)
    roundtrip = float(((back - v).abs() * BINS).max())
    g = torch.Generator().manual_seed(0)
    e = temperature * torch.randn(n, e.shape[1], generator=g, dtype=torch.float64)
    w32, bad32 = decode_levels(m32, e.float())
    w64, bad64 = decode_levels(m64, e)
    k32, k64 = as_uint8(w32.double()), as_uint8(w64)
    fid = {name: zoo.evaluate(k, metrics=("fid",), n=n)["fid"] for name, k in (("f32", k32), ("f64", k64))}
    return {"run": run, "temperature": temperature, "n": n, "params": m32.num_params(),
            "roundtrip_max_levels": roundtrip,
            "pixels_differing": float((k32 != k64).float().mean()),
            "max_diff_levels": float((w32.double() - w64).abs().max()),
            "overflow_f32": bad32, "overflow_f64": bad64, "fid_f32": fid["f32"], "fid_f64": fid["f64"],
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args()
    rows = []
    print("| run | params | round trip (levels) | pixels differing f32/f64 | max diff (levels) | overflow f32 / f64 "
          "| FID f32 | FID f64 |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for run in a.runs:
        r = row(run, a.temperature, a.n)
        rows.append(r)
        print(f"| {run} | {r['params']:,} | {r['roundtrip_max_levels']:.2e} | {r['pixels_differing']:.2e} | "
              f"{r['max_diff_levels']:.2e} | {r['overflow_f32']} / {r['overflow_f64']} | {r['fid_f32']:.2f} | "
              f"{r['fid_f64']:.2f} |", flush=True)
    if a.json:
        from zoo.provenance import git_commit, machine
        with open(a.json, "w") as f:
            json.dump({"command": "python benchmarks/flow_numerics.py " + " ".join(sys.argv[1:]),
                       "git_commit": git_commit(), **machine(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
