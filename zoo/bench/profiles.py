"""Bench profiles (budget, n, seeds, bits/dim and sweep settings) and the checks on a user's overrides."""
from __future__ import annotations

import dataclasses
import math

from ..errors import ZooError
from ..rng import MAX_SEED
from ..sizing import check_size

SAMPLE_SEED = 0  # every cell samples images (SAMPLE_SEED, i): the same noise for every family
INCEPTION_N = 10_000   # zoo bench --inception: samples against the whole test split, floor at the same n


@dataclasses.dataclass(frozen=True)
class Profile:
    """What every cell of a bench run trains, samples and measures."""
    name: str
    tflops: float                    # training budget per cell (all stages), hardware-independent
    n: int                           # generated images per cell for the metrics
    seeds: tuple[int, ...]
    bpd_images: int                  # test images for bits/dim
    sweep_steps: tuple[int, ...]     # NFE sweep for families whose sampler takes steps=
    sweep_n: int                     # images per sweep point
    probe_seconds: float             # timing window of the sampling-speed probe
    device: str = "cpu"
    amp: bool = False                # bf16 autocast in training (gpu profile)
    compile: bool = False            # torch.compile the training losses (gpu profile)
    bpd_terms: int = 0               # families whose log_prob takes terms= (the diffusion VLB): 0 = every
                                     # term (T network evaluations per image); K = stratified unbiased estimate
    description: str = ""
    budgets: tuple[float, ...] = ()  # several budgets (TFLOP): a bench folder each, then the scaling tables
    conditional: str = ""            # text encoder of conditional cells (zoo bench --conditional); "": unconditional
    guidance: float = 1.0            # classifier-free guidance scale of conditional cells, for families that have it
    inception_n: int = 0             # images of the Inception FID and its floor (zoo bench --inception); 0: none
    param_scale: float = 1.0         # every family at this many times its default parameters (zoo.sizing)
    param_scales: tuple[float, ...] = ()  # several parameter scales per budget (the isoflop profile), a folder each
    depth: float = 1.0               # every family's block counts times this (zoo.sizing; families with a depth axis)
    sizes: str = "default"           # "fitted": each cell's parameter scale also times its family's fitted
                                     # best size at the cell's budget (Generator.size_rule)


# profile fields a record leaves out at these values, so that records made without them stay as they were
QUIET_FIELDS = {"inception_n": 0, "param_scale": 1.0, "param_scales": (), "depth": 1.0, "sizes": "default"}
SIZES = ("default", "fitted")   # zoo bench --sizes


def profile_record(profile: Profile) -> dict:
    """The profile as a bench folder records it (bench.json, results.json): every field, less those of
    ``QUIET_FIELDS`` at their quiet value."""
    return {k: v for k, v in dataclasses.asdict(profile).items() if not (k in QUIET_FIELDS and v == QUIET_FIELDS[k])}


PROFILES = {
    # bits/dim of the diffusion bound: a 50-term stratified estimate with its standard error (the full
    # bound costs T network evaluations per image); budget, n and bits/dim images sized for a short CPU job
    "quick": Profile("quick", tflops=0.5, n=1000, seeds=(0,), bpd_images=200, sweep_steps=(), sweep_n=0,
                     probe_seconds=1.0, bpd_terms=50,
                     description="the README's main job: 0.5 TFLOP of training per family"),
    # 10 TFLOP per cell, so that the standard cells double as the families' 10 TFLOP runs; bits/dim
    # of the diffusion bound as in "quick"
    "standard": Profile("standard", tflops=10.0, n=5000, seeds=(0, 1, 2), bpd_images=2000,
                        sweep_steps=(10, 20, 50), sweep_n=5000, probe_seconds=3.0, bpd_terms=50,
                        description="the committed table: 10 TFLOP per cell, 3 seeds"),
    # one seed per budget; the 10 TFLOP points may come from a standard folder's cells
    # (zoo bench --profile scaling --reuse results/standard)
    "scaling": Profile("scaling", tflops=10.0, n=5000, seeds=(0,), bpd_images=2000, sweep_steps=(), sweep_n=0,
                       probe_seconds=3.0, bpd_terms=50, budgets=(1.0, 3.0, 10.0, 30.0, 100.0),
                       description="every family at 1, 3, 10, 30 and 100 TFLOP: quality against training compute"),
    # IsoFLOP (Hoffmann et al. 2022): at each budget every family at 5 sizes, 1/5 to 5 times its default
    # parameter count (a 25x span, so that at least 16x remains after the widths round); lighter
    # bits/dim and speed probes than "scaling", the same n
    "isoflop": Profile("isoflop", tflops=1.0, n=5000, seeds=(0,), bpd_images=1000, sweep_steps=(), sweep_n=0,
                       probe_seconds=1.0, bpd_terms=50, budgets=(1.0, 3.0, 10.0),
                       param_scales=(0.2, 0.45, 1.0, 2.2, 5.0),
                       description="every family at 5 sizes at each of 1, 3 and 10 TFLOP: the best size per budget"),
    "gpu": Profile("gpu", tflops=200.0, n=10000, seeds=(0, 1, 2), bpd_images=10000,
                   sweep_steps=(10, 20, 50, 100), sweep_n=10000, probe_seconds=3.0, device="cuda", amp=True, compile=True,
                   description="larger budgets for a CUDA machine, bf16 autocast, torch.compile"),
}


MAX_SEEDS = 10_000   # a bench of more cells than this is a typing mistake


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' (1 <= K <= N) -> (K, N); None -> None; a one-line ZooError for anything else."""
    if text is None:
        return None
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ZooError(f"bad --shard {text!r}: use K/N, e.g. 1/8 for the first of 8 shards") from None
    if not 1 <= k <= n:
        raise ZooError(f"bad --shard {text!r}: K/N needs 1 <= K <= N")
    return k, n


def select_families(text: str, known: list[str]) -> list[str]:
    """'all' (the families with ``in_default_bench``) or a comma-separated list of registered families,
    without repeats; a one-line ZooError otherwise."""
    from ..api import get_model_class
    if text == "all":   # leaves out the families that ask to be named explicitly (e.g. the cascade rows)
        fams = [f for f in known if get_model_class(f).in_default_bench]
    else:
        fams = [f.strip() for f in text.split(",") if f.strip()]
    if not fams:
        raise ZooError(f"--families {text!r}: name one or more families, or all")
    for f in fams:
        get_model_class(f)  # one-line error for an unknown family
    return list(dict.fromkeys(fams))


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-2' -> (0, 1, 2); a one-line ZooError for anything else."""
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = map(int, part.split("-"))
                if not 0 <= a <= b <= MAX_SEED or b - a >= MAX_SEEDS:
                    raise ValueError
                out += list(range(a, b + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise ZooError(f"bad --seeds {text!r}: use e.g. 0,1,2 or 0-2") from None
    if not out or min(out) < 0 or max(out) > MAX_SEED or len(out) > MAX_SEEDS:
        raise ZooError(f"bad --seeds {text!r}: use e.g. 0,1,2 or 0-2 (at most {MAX_SEEDS} seeds, each from 0 "
                       f"to 2**64-1)")
    return tuple(dict.fromkeys(out))


def parse_numbers(text: str, option: str) -> tuple[float, ...]:
    """'1,3,10' -> (1.0, 3.0, 10.0): finite numbers > 0, without repeats; a one-line ZooError otherwise."""
    try:
        vals = tuple(dict.fromkeys(float(p) for p in text.split(",") if p.strip()))
    except ValueError:
        vals = ()
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ZooError(f"bad {option} {text!r}: use numbers > 0 separated by commas, e.g. 1,3,10")
    return vals


def with_overrides(profile: Profile, *, seeds: str | None = None, tflops: float | None = None,
                   n: int | None = None, inception: bool = False, budgets: str | None = None,
                   param_scale: float | None = None, param_scales: str | None = None,
                   depth: float | None = None, sizes: str | None = None) -> Profile:
    """``profile`` with the command line's --seeds/--tflops/--n/--inception/--budgets/--param-scale
    applied (--inception: the Inception FID of ``INCEPTION_N`` images; --budgets: a multi-budget
    profile's budgets; --param-scale: one-budget profiles only; --sizes fitted: not the isoflop profile);
    checked by :func:`check_profile`."""
    if budgets is not None and not profile.budgets:
        raise ZooError(f"--budgets is for the profiles with several budgets, not {profile.name!r} (use --tflops)")
    if param_scale is not None and profile.param_scales:
        raise ZooError(f"profile {profile.name!r} runs several parameter scales: --param-scale does not apply")
    if param_scales is not None and not profile.param_scales:
        raise ZooError(f"--param-scales is for the isoflop profile, not {profile.name!r} (use --param-scale)")
    if tflops is not None and profile.budgets:
        raise ZooError(f"profile {profile.name!r} runs several budgets ({', '.join(f'{b:g}' for b in profile.budgets)}"
                       f" TFLOP): --tflops does not apply")
    changes: dict = {}
    if seeds:
        changes["seeds"] = parse_seeds(seeds)
    if tflops is not None:
        changes["tflops"] = tflops
    if n is not None:
        changes["n"] = n
        changes["sweep_n"] = min(profile.sweep_n, n)
    if inception:
        changes["inception_n"] = INCEPTION_N
    if budgets is not None:
        changes["budgets"] = parse_numbers(budgets, "--budgets")
    if param_scale is not None:
        changes["param_scale"] = param_scale
    if param_scales is not None:
        changes["param_scales"] = parse_numbers(param_scales, "--param-scales")
    if depth is not None:
        changes["depth"] = depth
    if sizes is not None:
        if sizes not in SIZES:
            raise ZooError(f"unknown --sizes {sizes!r}: use {' or '.join(SIZES)}")
        if sizes == "fitted" and profile.param_scales:
            raise ZooError(f"profile {profile.name!r} runs its own sizes: --sizes fitted does not apply")
        changes["sizes"] = sizes
    profile = dataclasses.replace(profile, **changes)
    check_profile(profile)
    return profile


def check_profile(profile: Profile, test_size: int | None = None) -> None:
    """One-line ZooError unless the budget is finite and > 0, there are seeds, and 2 <= n <= the test split."""
    if not (isinstance(profile.tflops, (int, float)) and math.isfinite(profile.tflops) and profile.tflops > 0):
        raise ZooError(f"--tflops must be a finite number > 0, got {profile.tflops}")
    if profile.n < 2:
        raise ZooError(f"--n must be >= 2, got {profile.n}")
    if test_size is not None and profile.n > test_size:
        raise ZooError(f"--n {profile.n} exceeds the {test_size} images of the test split")
    check_size(profile.param_scale, "--param-scale")
    check_size(profile.depth, "--depth")
    if not profile.seeds or min(profile.seeds) < 0:
        raise ZooError(f"--seeds must be one or more seeds >= 0, got {profile.seeds}")
