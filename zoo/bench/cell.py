"""One (family, seed) cell: train under the budget (or resume, or reuse the trained run), sample n
images with fixed seeds, compute every metric, bits/dim, sampling speed in a fresh process, and
the NFE sweep; returns the cell's record."""
from __future__ import annotations

import inspect
import json
import math
import time
from pathlib import Path
from typing import Callable

import click
import torch

from ..api import load
from ..errors import ZooError
from ..provenance import REPEAT_KEYS
from .inception import inception_record
from .profiles import SAMPLE_SEED, Profile
from .rundir import run_dir as run_folder, start_run, train_provenance
from .settings import cell_param_scale, cell_sampler, cell_settings, train_settings
from .store import cell_name, set_aside

METRICS = ("fid", "kid", "pr", "dc", "cs", "mem")


def run_cell(family: str, seed: int, profile: Profile, data: str, out: Path, features, train_set, test_set,
             log: Callable[[str], None] = click.echo, tiny: bool = False) -> dict:
    """Train (or resume), sample, evaluate and time one (family, seed) cell; returns its record."""
    from ..images import write_images
    from ..metrics.evaluate import evaluate

    run_dir = train_cell(family, seed, profile, data, out, features, train_set, log=log, tiny=tiny)
    summary = _read_summary(run_dir)
    model = load(run_dir).to(profile.device)

    prompts, cond, sampler = None, None, cell_sampler(family)
    if profile.conditional:   # prompted by the test split's own captions, so the FID reference stays the test split
        from ..text.encoder import caption_embeddings
        prompts, cond = caption_embeddings(profile.conditional, test_set.images[:profile.n], test_set.labels[:profile.n])
        sampler.update({"guidance": profile.guidance} if model.guidance else {})
    log(f"  sample {profile.n} images" + (f", prompted by test captions (guidance {sampler.get('guidance', 1):g})"
                                          if prompts else ""))
    t0 = time.time()
    images = model.sample(profile.n, seed=SAMPLE_SEED, cond=cond, progress=True, **sampler)
    sample_wall = time.time() - t0
    write_images(images[:100], run_dir / "samples.png", nrow=10)

    log("  metrics")
    metrics = evaluate(images, data=data, features=features, metrics=METRICS, split="test", n=profile.n)
    rec: dict = {"family": family, "seed": seed, "likelihood": model.likelihood, "params": model.num_params(),
                 "train_tflops": summary["train_tflops"], "steps": summary["steps"], "epochs": summary["epochs"],
                 "train_wall_s": summary["wall_s"], "sample_wall_s": round(sample_wall, 2),
                 "train_provenance": train_provenance(summary)}
    scale = cell_param_scale(profile, family)
    if scale != 1 or profile.depth != 1:   # a cell of the size axes: its scale and multipliers
        from ..sizing import size_for_params
        rec.update(param_scale=scale, size=size_for_params(family, scale, profile.tflops, tiny, profile.depth))
        if profile.depth != 1:
            rec["depth"] = profile.depth
    rec.update({k: v for k, v in metrics.items() if k != "provenance"})
    rec["metrics_provenance"] = metrics.get("provenance", {})
    if profile.inception_n:   # zoo bench --inception: the first profile.n samples reused, the rest drawn
        rec.update(inception_record(model, images, profile, data, sampler=sampler, log=log))
    if profile.conditional:   # bits/dim stay the unconditional table's: a conditional cell has no bpd column
        rec.update(conditional_record(model, images, prompts, profile, data, features, test_set, log=log))
        rec.update({"bpd": None, "bpd_sem": None, "bpd_images": 0})
    else:
        rec.update(bits_per_dim_record(model, profile, test_set, log=log))
    rec.update(speed_record(run_dir, profile, log=log))
    rec["sweep"] = nfe_sweep(model, profile, data, features, metrics["fid"], sample_wall, sampler=sampler, log=log)
    if model.has_latent:
        a, b = test_set.images[0], test_set.images[1]
        write_images(model.interpolate(a, b, steps=10), run_dir / "interpolation.png", nrow=10)
    return rec


def add_inception(rec: dict, run_dir: Path, profile: Profile, data: str, *, images: torch.Tensor | None = None,
                  rebuilt: dict | None = None, log: Callable[[str], None] = click.echo) -> dict:
    """A finished cell's record ``rec`` with the Inception FID of ``profile.inception_n`` samples of its
    trained ``run_dir`` added (zoo bench --inception on a cell made without it). The samples are drawn
    again with the cell's per-image seeds (``images``: the first of them, already drawn); the provenance
    of this addition (commit, machine, threads, date, and ``rebuilt``: the check of a rebuilt run folder)
    goes into ``inception_provenance``, beside the cell's own."""
    from .settings import provenance
    model = load(run_dir).to(profile.device)
    added = inception_record(model, images, profile, data, sampler=_sampler_of(rec), log=log)
    where = {k: v for k, v in provenance(profile, data).items()
             if k in ("zoo_version", "git_commit", *REPEAT_KEYS, "date")}
    if rebuilt:
        where["rebuilt_run"] = rebuilt
    added["inception_provenance"] = {**added["inception_provenance"], "added_to_finished_cell": where}
    return {**rec, **added, "settings": {**rec["settings"], "inception_n": profile.inception_n}}


# how close a rebuilt run's FID must be to its cell's: a run trained again bit for bit samples the same
# images, so at most the last digits may move; another run of the same recipe differs by a seed std
# (about 1e-2 relative), four orders of magnitude more
REBUILD_RTOL = 1e-6


def rebuild_run(rec: dict, profile: Profile, data: str, out: Path, features, train_set, *,
                log: Callable[[str], None] = click.echo, tiny: bool = False) -> tuple[torch.Tensor, dict]:
    """Train a finished cell's run folder again (zoo bench --inception --rebuild, when the folder is
    gone; a folder trained again already is only loaded) and check that it is the cell's: its first
    ``profile.n`` samples must give the FID the cell records, which holds only when training repeats
    bit for bit (the same code path, CPU kind and thread count). Returns those samples, the first of
    the Inception FID's, and the check as recorded. A run that fails the check is set aside as
    '<run>.unverified-<time>' and a ZooError says so."""
    from ..metrics.evaluate import evaluate
    family, seed = rec["family"], rec["seed"]
    run_dir = train_cell(family, seed, profile, data, out, features, train_set, log=log, tiny=tiny)
    model = load(run_dir).to(profile.device)
    log(f"  check the rebuilt run against the cell: {profile.n} samples")
    images = model.sample(profile.n, seed=SAMPLE_SEED, progress=True, **_sampler_of(rec))
    fid = evaluate(images, data=data, features=features, metrics=("fid",), split="test", n=profile.n)["fid"]
    if not math.isclose(fid, rec["fid"], rel_tol=REBUILD_RTOL):
        aside = set_aside(run_dir, "unverified")
        raise ZooError(f"the rebuilt run gives FID {fid:.6f} where the cell records {rec['fid']:.6f}, so it is not "
                       f"the cell's run (set aside as {aside.name}); the cell is unchanged")
    summary = _read_summary(run_dir)
    log(f"  the rebuilt run reproduces the cell: FID {fid:.6f}")
    return images, {"fid": fid, "train_wall_s": summary["wall_s"],
                    "train_provenance": train_provenance(summary)}


def _sampler_of(rec: dict) -> dict:
    """The sampler options a cell recorded (the family's current ones for a cell made before they were)."""
    return dict(rec["settings"].get("sampler", cell_sampler(rec["family"])))


def train_cell(family: str, seed: int, profile: Profile, data: str, out: Path, features, train_set, *,
               log: Callable[[str], None] = click.echo, tiny: bool = False) -> Path:
    """Train the cell's run folder under the profile's budget, resume it from its checkpoint, or
    reuse it when already trained with the same settings; returns the run folder."""
    from ..api import build_model, split_recipe
    from ..config import apply_overrides
    from ..train import TrainConfig, fit
    from ..train.run import caption_condition

    run_dir = run_folder(out, cell_name(family, seed))
    settings = train_settings(cell_settings(profile, family=family, data=data, features=features, tiny=tiny,
                                            seed=seed))
    state = start_run(run_dir, settings)
    if state == "trained":
        return run_dir
    resume = state == "resume"
    log(f"  train {family} seed {seed}: {profile.tflops} TFLOP" + (" (resuming)" if resume else ""))
    model_sets, train_sets = split_recipe(settings["recipe"])   # none for --tiny (see settings.recipe)
    cond = None
    if profile.conditional:   # the frozen encoder's embedding of each training image's caption
        cond_sets, cond = caption_condition(profile.conditional, train_set.images, train_set.labels)
        model_sets = {**model_sets, **cond_sets}
    tcfg = apply_overrides(TrainConfig(tflops=profile.tflops, seed=seed), train_sets)
    torch.manual_seed(seed)
    model = build_model(family, train_set.shape, model_sets, tiny=tiny)
    fit(model, train_set.images, cond, run_dir, tcfg,
        resume=resume, data_spec=data, device=profile.device, amp=profile.amp, compile=profile.compile)
    return run_dir


def _read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def bits_per_dim_record(model, profile: Profile, test_set, *, log: Callable[[str], None] = click.echo) -> dict:
    """bits/dim on the first ``profile.bpd_images`` test images (with ``profile.bpd_terms`` for a
    family whose log_prob takes terms=), or empty values for a family without a likelihood."""
    from ..metrics.bpd import bits_per_dim
    if model.likelihood == "none" or not profile.bpd_images:
        return {"bpd": None, "bpd_sem": None, "bpd_images": 0}
    log(f"  bits/dim on {profile.bpd_images} test images")
    kw = {"terms": profile.bpd_terms} if takes_terms(model) else {}
    r = bits_per_dim(model, test_set.images[:profile.bpd_images], batch_size=100, progress=True, **kw)
    return {"bpd": r["bpd"], "bpd_sem": r["bpd_sem"], "bpd_images": r["n"], "bpd_terms": kw.get("terms")}


def speed_record(run_dir: Path, profile: Profile, *, log: Callable[[str], None] = click.echo) -> dict:
    """Images/s at batch 256, batch-1 latency, NFE, peak memory and FLOPs per image, measured in a
    fresh process (zoo.perf.probe_run)."""
    from ..perf import probe_run
    log("  sampling speed")
    probe = probe_run(str(run_dir), batch=256, min_time=profile.probe_seconds, device=profile.device)
    return {"images_per_s": probe["images_per_s"], "latency_s": probe["latency_s"], "nfe": probe["nfe"],
            "peak_mem_mb": probe["peak_mem_mb"], "sample_flops_per_image": probe["flops_per_image"]}


def nfe_sweep(model, profile: Profile, data: str, features, main_fid: float, sample_wall: float, *,
              sampler: dict | None = None, log: Callable[[str], None] = click.echo) -> list[dict]:
    """FID and images/s at each of the profile's sampler step counts, for families whose sampler has
    one; a step count equal to the default reuses the main sample's FID."""
    from ..metrics.evaluate import evaluate
    sweep: list[dict] = []
    if not (profile.sweep_steps and takes_steps(model)) or profile.conditional:
        return sweep
    for steps in profile.sweep_steps:
        if model.nfe(steps=steps) == model.nfe() and profile.sweep_n == profile.n:
            # the default sampler at this step count made the main sample: reuse it
            sweep.append({"steps": steps, "nfe": model.nfe(), "fid": main_fid, "n": profile.n,
                          "images_per_s": profile.n / sample_wall})
            continue
        log(f"  sweep: {steps} steps, {profile.sweep_n} images")
        t0 = time.time()
        imgs = model.sample(profile.sweep_n, seed=SAMPLE_SEED, progress=True, **{**(sampler or {}), "steps": steps})
        wall = time.time() - t0
        m = evaluate(imgs, data=data, features=features, metrics=("fid",), split="test", n=profile.sweep_n)
        sweep.append({"steps": steps, "nfe": model.nfe(steps=steps), "fid": m["fid"], "n": profile.sweep_n,
                      "images_per_s": profile.sweep_n / wall})
    return sweep


def takes_terms(model) -> bool:
    """Whether the family's log_prob takes terms= (a stratified estimate of a many-term bound)."""
    return "terms" in inspect.signature(model.log_prob).parameters


def takes_steps(model) -> bool:
    """Whether the family's sampler has a step count that sets its network evaluations (the NFE sweep)."""
    try:
        return model.nfe(steps=10) != model.nfe(steps=20)
    except (TypeError, ValueError, ZooError):  # families without steps= reject it or ignore it
        return False


def conditional_record(model, images: torch.Tensor, prompts: list[str], profile: Profile, data: str, features,
                       test_set, *, log: Callable[[str], None] = click.echo) -> dict:
    """The conditional columns of a cell whose ``images`` were prompted by ``prompts`` (test captions):
    CLIP score, prompt accuracy, per-class FID, and the FID of the same model at the null condition."""
    from ..metrics.conditional import conditional_metrics
    from ..metrics.evaluate import evaluate
    log("  conditional metrics: CLIP score, prompt accuracy, per-class FID")
    rec = conditional_metrics(images, prompts, test_set.labels[:len(prompts)], data=data, features=features,
                              encoder=profile.conditional)
    log(f"  sample {profile.n} images at the null condition")
    uncond = model.sample(profile.n, seed=SAMPLE_SEED, progress=True)
    rec["fid_uncond"] = evaluate(uncond, data=data, features=features, metrics=("fid",), split="test", n=profile.n)["fid"]
    return rec
