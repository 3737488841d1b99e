"""Diffusion families: sampling speed, time breakdown and FID against the number of network evaluations.

  # 1. samples for every (sampler, steps) config, saved as .npz (resumable; timed per batch)
  python benchmarks/bench_diffusion.py samples --run runs/diffusion-10tf --out runs/diffusion-samples
  python benchmarks/bench_diffusion.py recon --run runs/latent_diffusion-10tf --out runs/diffusion-samples
  # 2. FID of the saved samples at n=5000 and n=1000 (first 1000), table + plot of FID against NFE
  python benchmarks/bench_diffusion.py fid --samples runs/diffusion-samples --out results/diffusion
  python benchmarks/bench_diffusion.py grid --samples runs/diffusion-samples --out results
  # 3. images/s at batch 256 per NFE and where the time goes (UNet, decoder, sampler arithmetic, RNG)
  python benchmarks/bench_diffusion.py speed --run runs/diffusion-10tf --run runs/latent_diffusion-10tf

``--data`` (default fashion-mnist) names the dataset of ``recon``, ``fid`` and ``bpd``.
The time breakdown uses public hooks only: forward hooks on the UNet and the decoder
(``nn.Module.register_forward_pre_hook``/``register_forward_hook``) and a ``TorchFunctionMode``
that times the per-sample draws (``torch.randn``/``torch.rand`` with a ``generator=``, as
``zoo.rng`` makes them; stacking the draws counts as sampler arithmetic).
  # 4. the variational bound in bits/dim: all T terms on a few test images, and the stratified estimate
  python benchmarks/bench_diffusion.py bpd --run runs/diffusion-10tf --n-full 100 --terms 50 --n-strat 1000

Speed does not depend on the weights' values, so ``--family NAME`` (default size, untrained)
times the same as a trained run. Timings on a shared machine are provisional.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from torch.overrides import TorchFunctionMode

import zoo
from zoo import rng
from zoo.images import to_uint8, write_images
from zoo.perf import count_flops, matmul_gflops

# (sampler, steps): few-step samplers at 10/20/50 NFE and the two 1000-step references
CONFIGS = [("dpm++2m", 10), ("dpm++2m", 20), ("dpm++2m", 50), ("ddim", 10), ("ddim", 20), ("ddim", 50),
           ("ddpm", 1000), ("ddim", 1000)]


def sampler_opts(sampler: str, steps: int) -> dict:
    """The sampler options of a config: 'dpm++2m-sde@trailing' names a timestep spacing after '@'
    (otherwise the run's own default spacing)."""
    name, _, spacing = sampler.partition("@")
    return {"sampler": name, "steps": steps, **({"spacing": spacing} if spacing else {})}


def config_label(sampler: str, steps: int) -> str:
    """'dpm++2m-10': a (sampler, steps) config's name in files and tables."""
    return f"{sampler}-{steps}"


# ---- 1. samples -----------------------------------------------------------------------------
def cmd_samples(args) -> None:
    """Sample every config of CONFIGS (n, or n_long for 1000 steps) and save uint8 .npz files."""
    model = zoo.load(args.run)
    fam = model.name
    out = Path(args.out) / fam
    out.mkdir(parents=True, exist_ok=True)
    configs = parse_configs(args.only) if args.only else CONFIGS
    for sampler, steps in configs:
        path = out / f"{config_label(sampler, steps)}.npz"
        if path.exists():
            made_by = json.loads(str(np.load(path)["meta"]))
            if made_by.get("run") != args.run or made_by.get("seed") != args.seed:
                raise SystemExit(f"{path} holds samples of {made_by.get('run')} (seed {made_by.get('seed')}), "
                                 f"not of {args.run} (seed {args.seed}): use another --out")
            print(f"{path} exists, skipped")
            continue
        n = args.n_long if steps >= 1000 else args.n
        opts = sampler_opts(sampler, steps)
        imgs = torch.empty(n, model.config.channels, model.config.image_size, model.config.image_size,
                           dtype=torch.uint8)
        batch_s = []
        model.eval()
        for s, gens in rng.batches(args.seed, n, args.batch):
            b = len(gens)
            t0 = time.perf_counter()
            # model.sample one batch at a time (timed per batch): image i still depends only on (seed, i)
            with torch.no_grad(), rng.device_scope(model.device):
                x = model.generate(gens, **opts)
            imgs[s:s + b] = to_uint8(x)
            batch_s.append((b, time.perf_counter() - t0))
            print(f"{fam} {config_label(sampler, steps)}: {s + b}/{n} ({batch_s[-1][1]:.1f} s)", flush=True)
        full = [t for b, t in batch_s if b == args.batch]
        meta = {"family": fam, "run": args.run, "sampler": sampler, "steps": steps, "nfe": model.nfe(**opts),
                "n": n, "seed": args.seed, "batch": args.batch, "batch_seconds": [t for _, t in batch_s],
                "images_per_s_at_batch": args.batch / float(np.median(full)) if full else None,
                "threads": torch.get_num_threads()}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, images=imgs.numpy(), meta=json.dumps(meta))
        tmp.replace(path)
        print(json.dumps({k: v for k, v in meta.items() if k != "batch_seconds"}), flush=True)


def cmd_recon(args) -> None:
    """Autoencoder reconstructions of the first n training images (the floor for latent diffusion's FID)."""
    from zoo.data import load_dataset
    from zoo.images import to_float
    model = zoo.load(args.run)
    train = load_dataset(args.data, "train").images[:args.n]
    with torch.no_grad():
        rec = torch.cat([to_uint8(model.decode(model.encode(to_float(train[s:s + 500]))[0]).clamp(-1, 1))
                         for s in range(0, args.n, 500)])
    err = to_float(rec) - to_float(train)
    meta = {"family": model.name, "run": args.run, "sampler": "ae-recon", "steps": 0, "nfe": 0, "n": args.n,
            "seed": 0, "mse": float((err ** 2).mean()), "l1": float(err.abs().mean()),
            "psnr_db": float(10 * math.log10(4 / (err ** 2).mean()))}
    out = Path(args.out) / model.name
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "ae-recon-0.npz", images=rec.numpy(), meta=json.dumps(meta))
    print(json.dumps(meta))


# ---- 2. FID ---------------------------------------------------------------------------------
def cmd_fid(args) -> None:
    """FID (fmnist-cnn features, test split) of every saved sample file; table, JSON and plot."""
    from zoo.metrics.evaluate import evaluate
    rows = []
    for fam_dir in sorted(Path(args.samples).iterdir()):
        for path in sorted(fam_dir.glob("*.npz")):
            if path.name.endswith(".tmp.npz"):
                continue
            z = np.load(path)
            imgs, meta = torch.from_numpy(z["images"]), json.loads(str(z["meta"]))
            row = {**{k: meta[k] for k in ("family", "sampler", "steps", "nfe", "n", "seed")},
                   "images_per_s_at_batch": meta.get("images_per_s_at_batch")}
            for n in sorted({k for k in (500, 1000, 5000) if k <= len(imgs)} | {len(imgs)}):
                r = evaluate(imgs[:n], data=args.data, features=args.features, metrics=("fid",), n=n)
                row[f"fid_n{n}"] = r["fid"]
                row["provenance"] = r["provenance"]
            rows.append(row)
            print(f"{row['family']:<17} {config_label(row['sampler'], row['steps']):<14} "
                  + " ".join(f"{k}={v:.3f}" for k, v in row.items() if k.startswith("fid_")), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fid_vs_nfe.json").write_text(json.dumps(rows, indent=2))
    table = fid_table(rows)
    (out / "fid_vs_nfe.md").write_text(table)
    print(table)
    plot(rows, out / "fid_vs_nfe.png", args.features, args.data)


def fid_table(rows: list[dict]) -> str:
    """Markdown table: FID at n=5000/1000/500 per family and sampler config, and the ratio to the same
    family's 1000-step DDIM and DDPM results at the largest n both were measured at (n shown)."""
    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    def ratio(r, ref):
        if ref is None or ref is r:
            return "-"
        common = [n for n in (5000, 1000, 500) if r.get(f"fid_n{n}") is not None and ref.get(f"fid_n{n}") is not None]
        if not common:
            return "-"
        n = common[0]
        return f"{r[f'fid_n{n}'] / ref[f'fid_n{n}']:.2f} (n={n})"
    lines = ["| family | sampler | NFE | FID n=5000 | FID n=1000 | FID n=500 | / DDIM-1000 | / DDPM-1000 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["family"], r["sampler"], r["nfe"])):
        refs = [next((q for q in rows if q["family"] == r["family"] and q["sampler"] == s and q["steps"] == 1000), None)
                for s in ("ddim", "ddpm")]
        lines.append(f"| {r['family']} | {r['sampler']} | {r['nfe']} | {fmt(r.get('fid_n5000'))} | "
                     f"{fmt(r.get('fid_n1000'))} | {fmt(r.get('fid_n500'))} | {ratio(r, refs[0])} | {ratio(r, refs[1])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, features: str, data: str = "fashion-mnist") -> list[str]:
    """FID against NFE per family and sampler (n=500 lines, n=5000 faint), with the autoencoder floor;
    returns the legend's labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"dpm++2m": "o", "dpm++2m-sde": "D", "ddim": "s", "ddpm": "^"}
    colors = {"diffusion": "tab:blue", "latent_diffusion": "tab:orange"}
    for fam in sorted({r["family"] for r in rows}):
        # every sampler config present (a name may carry a spacing after '@', e.g. dpm++2m-sde@trailing)
        for sampler in sorted({r["sampler"] for r in rows if r["family"] == fam and r["nfe"] > 0}):
            base = sampler.partition("@")[0]
            sel = [r for r in rows if r["family"] == fam and r["sampler"] == sampler and r["nfe"] > 0]
            pts = sorted((r["nfe"], r["fid_n500"]) for r in sel if r.get("fid_n500") is not None)
            if pts:
                ax.plot(*zip(*pts), marker=markers.get(base, "x"), color=colors.get(fam), label=f"{fam} {sampler}",
                        linestyle="--" if base == "ddim" else "-")
            pts5 = sorted((r["nfe"], r["fid_n5000"]) for r in sel if r.get("fid_n5000") is not None)
            if pts5:
                ax.plot(*zip(*pts5), marker=markers.get(base, "x"), color=colors.get(fam), alpha=0.35, linestyle=":",
                        markersize=4)
        floor = next((r for r in rows if r["family"] == fam and r["sampler"] == "ae-recon"), None)
        if floor is not None and floor.get("fid_n500") is not None:
            ax.axhline(floor["fid_n500"], color=colors.get(fam), linewidth=0.8, linestyle="-.",
                       label=f"{fam}: autoencoder reconstructions")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per sample (NFE)")
    ax.set_ylabel(f"FID ({features} features, {data} test)")
    ax.set_title("FID vs NFE (lines: n=500, the n every config has; faint dotted: n=5000)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return ax.get_legend_handles_labels()[1]


def cmd_plot(args) -> None:
    """Redraw the FID-against-NFE plot from a JSON written by `fid` (no samples needed)."""
    rows = json.loads(Path(args.json).read_text())
    features = next((r["provenance"].get("extractor") for r in rows if r.get("provenance")), None)
    plot(rows, Path(args.out), features or "fmnist-cnn")


def cmd_grid(args) -> None:
    """10x10 grids of the first 100 saved samples of every config: <out>/<family>/grid_<label>.png."""
    for fam_dir in sorted(Path(args.samples).iterdir()):
        for path in sorted(fam_dir.glob("*.npz")):
            if path.name.endswith(".tmp.npz"):
                continue
            target = Path(args.out) / fam_dir.name / f"grid_{path.stem}.png"
            write_images(torch.from_numpy(np.load(path)["images"][:100]), target, nrow=10)
            print(f"wrote {target}")


# ---- 3. speed and where the time goes -------------------------------------------------------
class DrawTimer(TorchFunctionMode):
    """Wall time of the per-sample random draws: torch.randn/torch.rand called with a generator=, as
    zoo.rng draws them (seen through torch's function-mode hook, nothing patched)."""
    DRAWS = (torch.randn, torch.rand)

    def __init__(self):
        super().__init__()
        self.seconds = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.DRAWS and kwargs.get("generator") is not None:
            t0 = time.perf_counter()
            out = func(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            return out
        return func(*args, **kwargs)


def time_forward(module: torch.nn.Module, name: str, totals: dict[str, float]) -> list:
    """Forward hooks adding the wall time of every ``module(...)`` call to ``totals[name]``; returns
    the hook handles (call ``.remove()`` on each)."""
    start: list[float] = []

    def pre(mod, args):
        start.append(time.perf_counter())

    def post(mod, args, out):
        totals[name] = totals.get(name, 0.0) + time.perf_counter() - start.pop()
    return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


def breakdown(model, batch: int, **opts) -> dict:
    """Wall time of one batch split into UNet, decoder (latent), RNG draws and the rest (sampler arithmetic)."""
    model.sample(2, seed=0, batch_size=2, **opts)   # warm-up
    totals: dict[str, float] = {}
    handles = time_forward(model.unet, "unet", totals)
    dec = getattr(model, "decoder", None)
    if dec is not None:
        handles += time_forward(dec, "decoder", totals)
    draws = DrawTimer()
    try:
        with draws:
            t0 = time.perf_counter()
            model.sample(batch, seed=0, batch_size=batch, **opts)
            total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    parts = {k: totals.get(k, 0.0) for k in ("unet", "decoder")}
    parts["rng"] = draws.seconds
    parts["sampler_other"] = total - sum(parts.values())
    return {"total_s": total, **parts}


def cmd_speed(args) -> None:
    models = [(f, zoo.get_model(f)) for f in args.family] + [(r, zoo.load(r)) for r in args.run]
    if not models:
        raise SystemExit("give --run or --family")
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul {peak:.1f} GFLOP/s\n")
    rows = []
    for label, m in models:
        m.eval()
        shape = m.latent_shape()
        with torch.no_grad():
            unet_flops, _ = count_flops(m.unet, torch.zeros(4, *shape), torch.zeros(4, dtype=torch.long))
            dec_flops = 0
            if hasattr(m, "decoder"):
                dec_flops, _ = count_flops(m.decoder, torch.zeros(4, *shape))
        for sampler, steps in args.configs:
            opts = sampler_opts(sampler, steps)
            b = breakdown(m, args.batch, **opts)
            nfe = m.nfe(**opts)
            rows.append({"model": label, "family": m.name, "sampler": sampler, "nfe": nfe,
                         "images_per_s": args.batch / b["total_s"], "unet_mflop_per_nfe": unet_flops / 4e6,
                         "decoder_mflop": dec_flops / 4e6,
                         "unet_ms_per_nfe_per_image": 1e3 * b["unet"] / nfe / args.batch, **b})
            r = rows[-1]
            print(f"| {label} | {sampler} | {nfe} | {r['images_per_s']:.1f} | {r['unet_mflop_per_nfe']:.1f} | "
                  f"{100 * b['unet'] / b['total_s']:.1f}% | {100 * b['decoder'] / b['total_s']:.2f}% | "
                  f"{100 * b['rng'] / b['total_s']:.1f}% | {100 * b['sampler_other'] / b['total_s']:.1f}% | "
                  f"{r['unet_ms_per_nfe_per_image']:.4f} |", flush=True)
    print("\n| model | sampler | NFE | images/s @%d | UNet MFLOP/NFE | UNet | decoder | RNG | sampler arithmetic "
          "| UNet ms per NFE per image |" % args.batch)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tot = r["total_s"]
        print(f"| {r['model']} | {r['sampler']} | {r['nfe']} | {r['images_per_s']:.1f} | {r['unet_mflop_per_nfe']:.1f} | "
              f"{100 * r['unet'] / tot:.1f}% | {100 * r['decoder'] / tot:.2f}% | {100 * r['rng'] / tot:.1f}% | "
              f"{100 * r['sampler_other'] / tot:.1f}% | {r['unet_ms_per_nfe_per_image']:.4f} |")
    fams = {r["family"] for r in rows}
    if {"diffusion", "latent_diffusion"} <= fams:
        def per_nfe(f):
            v = [r["unet_ms_per_nfe_per_image"] for r in rows if r["family"] == f]
            return float(np.median(v))
        px, lt = per_nfe("diffusion"), per_nfe("latent_diffusion")
        print(f"\nUNet time per NFE per image: pixel {px:.4f} ms, latent {lt:.4f} ms -> latent is {px / lt:.2f}x "
              f"faster per network evaluation")
    print(f"\nmatmul ceiling re-measured after: {matmul_gflops():.1f} GFLOP/s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"batch": args.batch, "matmul_gflops": peak, "rows": rows}, indent=2))


# ---- 4. bits/dim ----------------------------------------------------------------------------
def cmd_bpd(args) -> None:
    """Test bits/dim from the full T-term bound and from the stratified K-term estimate."""
    from zoo.data import load_dataset
    from zoo.metrics.bpd import bits_per_dim
    model = zoo.load(args.run)
    test = load_dataset(args.data, "test").images
    rows = []
    for label, n, terms in (("full", args.n_full, 0), ("stratified", args.n_full, args.terms),
                            ("stratified", args.n_strat, args.terms)):
        t0 = time.perf_counter()
        r = bits_per_dim(model, test[:n], batch_size=args.batch, seed=0, terms=terms)
        r.update(estimator=label, seconds=time.perf_counter() - t0,
                 evaluations_per_image=(model.schedule.T if terms == 0 else terms + 1))
        rows.append(r)
        print(f"| {label} | {terms or model.schedule.T} | {n} | {r['bpd']:.4f} +- {r['bpd_sem']:.4f} | "
              f"{r['seconds']:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def parse_configs(items: list[str]) -> list[tuple[str, int]]:
    """['dpm++2m-10', 'ddpm-1000'] -> [('dpm++2m', 10), ('ddpm', 1000)]."""
    out = []
    for it in items:
        s, n = it.rsplit("-", 1)
        out.append((s, int(n)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("samples", help="sample every config and save .npz files")
    a.add_argument("--run", required=True)
    a.add_argument("--out", default="runs/diffusion-samples")
    a.add_argument("--n", type=int, default=5000, help="images per few-step config")
    a.add_argument("--n-long", type=int, default=1000, help="images per 1000-step config")
    a.add_argument("--batch", type=int, default=256)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--only", nargs="*", default=None, help="sampler-steps labels like dpm++2m-10 or ddpm-100 (default: CONFIGS)")
    r = sub.add_parser("recon", help="autoencoder reconstructions of training images (latent family)")
    r.add_argument("--run", required=True)
    r.add_argument("--out", default="runs/diffusion-samples")
    r.add_argument("--n", type=int, default=5000)
    r.add_argument("--data", default="fashion-mnist", help="dataset spec of the training images")
    b = sub.add_parser("fid", help="FID of saved samples: table, JSON and plot")
    b.add_argument("--samples", default="runs/diffusion-samples")
    b.add_argument("--out", default="results/diffusion")
    b.add_argument("--features", default="fmnist-cnn")
    b.add_argument("--data", default="fashion-mnist", help="dataset spec of the reference test split")
    p = sub.add_parser("plot", help="redraw the FID-against-NFE plot from the JSON that fid wrote")
    p.add_argument("--json", required=True, help="a fid_vs_nfe.json")
    p.add_argument("--out", required=True, help="the .png to write")
    g = sub.add_parser("grid", help="10x10 grids of the first 100 saved samples of each config")
    g.add_argument("--samples", default="runs/diffusion-samples")
    g.add_argument("--out", default="results")
    c = sub.add_parser("speed", help="images/s and time breakdown")
    c.add_argument("--run", action="append", default=[])
    c.add_argument("--family", action="append", default=[])
    c.add_argument("--batch", type=int, default=256)
    c.add_argument("--configs", nargs="*", default=["dpm++2m-sde-10", "dpm++2m-sde-20", "dpm++2m-sde-50", "ddpm-1000"],
                   help="sampler-steps labels (default: the families' default sampler, DPM-Solver++(2M) SDE)")
    c.add_argument("--json", default=None, help="also write the rows as JSON here")
    d = sub.add_parser("bpd", help="test bits/dim (variational bound) of a pixel diffusion run")
    d.add_argument("--run", required=True)
    d.add_argument("--n-full", type=int, default=100, help="test images for the full T-term bound")
    d.add_argument("--terms", type=int, default=50, help="strata of the stratified estimate")
    d.add_argument("--n-strat", type=int, default=1000, help="test images for the stratified estimate")
    d.add_argument("--batch", type=int, default=100)
    d.add_argument("--data", default="fashion-mnist", help="dataset spec of the test images")
    d.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.cmd == "speed":
        args.configs = parse_configs(args.configs)
    {"samples": cmd_samples, "recon": cmd_recon, "fid": cmd_fid, "plot": cmd_plot, "grid": cmd_grid, "speed": cmd_speed, "bpd": cmd_bpd}[args.cmd](args)


if __name__ == "__main__":
    main()
