"""What made a cell: the settings each cell file records, the machine it ran on, and the comparison
that lets a rerun reuse a cell only when it would have made the same one."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ..version import __version__
from ..provenance import git_commit, machine
from .profiles import QUIET_FIELDS, SAMPLE_SEED, Profile

# the settings the trained run folder depends on; the rest (n, features, bits/dim, sweep) only
# change what is measured on it, so a run folder is reused when these match
TRAIN_KEYS = ("tflops", "recipe", "data", "tiny", "seed", "device", "amp", "compile", "conditional")
# settings added after cells were first committed, with the value an older cell (which does not
# record them) was made with: such a cell matches a run that wants exactly this value
LATER_KEYS = {"conditional": "", "guidance": 1.0}
# profile fields a cell records only away from their QUIET_FIELDS value (inception_n of zoo bench
# --inception): such a key missing on either side, the cell's or the run's, stands for that value


def features_name(features) -> str:
    """The name of a feature extractor given by name or as an extractor object."""
    return features if isinstance(features, str) else str(getattr(features, "name", type(features).__name__))


def _plain(d: dict) -> dict:
    return json.loads(json.dumps(d))  # tuples -> lists, as they read back from a cell file


def recipe(family: str, tflops: float, tiny: bool, param_scale: float = 1.0, depth: float = 1.0) -> dict:
    """The family's recipe for the budget (``Generator.recipe``) that a cell trains with (none for
    the tiny test configs, which keep their own sizes), and at a parameter scale or depth other than 1
    the block counts of ``depth`` and the widths that give the parameter scale at that depth
    (``zoo.sizing``; of the tiny config's fields for ``tiny``)."""
    from ..api import get_model_class
    from ..sizing import size_for_params, size_overrides
    cls = get_model_class(family)
    rec = {} if tiny else dict(cls.recipe(float(tflops)))
    if param_scale != 1 or depth != 1:
        size = size_for_params(family, param_scale, float(tflops), tiny, depth)
        rec.update(size_overrides(cls, size, cls.tiny_config() if tiny else None, depth))
    return rec


def cell_param_scale(profile: Profile, family: str) -> float:
    """The parameter scale a ``family`` cell of ``profile`` trains at: the profile's, times the family's
    fitted best size at the cell's budget under ``--sizes fitted`` (``zoo.sizing.fitted_param_scale``)."""
    if profile.sizes != "fitted":
        return profile.param_scale
    from ..sizing import fitted_param_scale
    return profile.param_scale * fitted_param_scale(family, profile.tflops)


def cell_sampler(family: str) -> dict:
    """The sampler options a ``family`` cell draws every sample with (``Generator.sampler_settings``)."""
    from ..api import get_model_class
    return dict(get_model_class(family).sampler_settings)


def _recorded_sampler(family: str) -> dict:
    """The ``sampler`` entry of a cell's settings: none (``{}``) while the family's sampler settings are
    its config's defaults, so that cells made before the entry existed match; else the settings."""
    from ..api import get_model_class
    sampler, config = cell_sampler(family), get_model_class(family).Config()
    return {} if all(getattr(config, k, None) == v for k, v in sampler.items()) else sampler


def cell_settings(profile: Profile, *, family: str, data: str, features, tiny: bool, seed: int) -> dict:
    """Everything that decides a (family, seed) cell's numbers, in the order a difference is reported."""
    quiet = {k: getattr(profile, k) for k, v in QUIET_FIELDS.items() if getattr(profile, k) != v}
    sampler = _recorded_sampler(family)
    return _plain({"profile": profile.name, "tflops": profile.tflops,
                   "recipe": recipe(family, profile.tflops, tiny, cell_param_scale(profile, family), profile.depth), "n": profile.n, "data": data,
                   "features": features_name(features), "tiny": bool(tiny), "seed": seed,
                   "sample_seed": SAMPLE_SEED, "bpd_images": profile.bpd_images, "bpd_terms": profile.bpd_terms,
                   "sweep_steps": list(profile.sweep_steps), "sweep_n": profile.sweep_n,
                   "device": profile.device, "amp": profile.amp, "compile": profile.compile,
                   "conditional": profile.conditional, "guidance": profile.guidance,
                   **({"sampler": sampler} if sampler else {}), **quiet})


def train_settings(settings: dict) -> dict:
    """The part of a cell's settings that its trained run folder depends on."""
    return {k: settings[k] for k in TRAIN_KEYS if k in settings}


def reference_settings(profile: Profile, *, data: str, features) -> dict:
    """What decides the floor and ceiling rows."""
    return {"n": profile.n, "data": data, "features": features_name(features)}


def inception_reference_settings(profile: Profile, *, data: str) -> dict:
    """What decides the Inception floor row (zoo bench --inception)."""
    return {"n": profile.inception_n, "data": data, "features": "inception"}


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return v
    return json.dumps(v)


def difference(recorded, wanted: dict) -> str | None:
    """None when ``recorded`` holds ``wanted``; else the first difference, worded 'tflops=1, not 2'."""
    if not isinstance(recorded, dict):
        return "no recorded settings (an older zoo, or not made by zoo bench)"
    defaults = {**LATER_KEYS, **QUIET_FIELDS}
    for key in [*wanted, *(k for k in QUIET_FIELDS if k in recorded and k not in wanted)]:
        want = wanted.get(key, QUIET_FIELDS.get(key))
        if key not in recorded and key in defaults and defaults[key] == want:
            continue
        if key not in recorded:
            return f"no recorded {key}, not {key}={_show(want)}"
        if recorded[key] != want:
            return f"{key}={_show(recorded[key])}, not {_show(want)}"
    return None


def trained_by(rec: dict) -> dict:
    """The commit and machine (cpu, threads, ...) that trained a cell's run folder: the cell's
    ``train_provenance`` (from the run's summary.json), which differs from its ``provenance`` when the
    cell was measured again on a run folder trained earlier; a cell made before it was recorded
    gives its own ``provenance``."""
    return rec.get("train_provenance") or rec.get("provenance", {})


def provenance(profile: Profile, data: str) -> dict:
    """Where this invocation's cells came from: zoo version, git commit, machine (CPU, GPU, threads,
    torch, python), profile, budget, n, data, and the date."""
    return {"zoo_version": __version__, "git_commit": git_commit() or "unknown", **machine(),
            "profile": profile.name, "budget_tflops": profile.tflops, "n": profile.n, "data": data,
            "reference_split": "test", "sample_seed": SAMPLE_SEED,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
