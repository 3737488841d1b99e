"""The driver behind `zoo bench`: check everything, then run every (family, seed) cell.

Before anything is written, the folder is read: a cell is reused only when the settings it
records (profile, budget, n, data, features, tiny, seed, bits/dim and sweep settings, device)
are those of this run; a run folder is resumed or reused only when its recorded training settings
match. Any difference stops the run with one line, unless ``force``: then the old cell files and
run folders are renamed aside (never deleted) and redone. Unreadable cell or reference files are
renamed aside with a warning and redone. The Inception FID (``--inception``) is the one measurement
that never makes a cell stale: a run with it adds it to a finished cell of its grid whose run folder
is still there (a top-up: the run folder is reloaded and only the Inception samples are drawn),
and a run without it reuses cells that have it. A cell that fails is recorded, the others still run,
and the run ends with RunFailed naming the failed cells.

A grid can be spread over processes or machines that share the folder: ``shard=(k, n)`` runs only
every n-th cell starting with the k-th (1-based), a cell already locked by another process is
skipped, and the tables are rebuilt under a lock from whatever cells exist (``merge``: only that).
"""
from __future__ import annotations

import dataclasses
import json
import time
import traceback
from pathlib import Path
from typing import Callable

import click
import torch

from ..api import atomic_write_text
from ..errors import RunFailed, ZooError
from ..train import StopRequested
from . import cell as cell_module
from .outputs import write_outputs
from .inception import check_inception, inception_floor
from .profiles import Profile, check_profile, profile_record
from ..provenance import REPEAT_KEYS, machine
from .rundir import (RUNS_DIR, has_training, is_trained, recorded_settings, refuse_symlink, run_dir,
                     trained_as_recorded)
from .settings import (cell_settings, difference, inception_reference_settings, provenance, reference_settings,
                       train_settings)
from .store import (CELLS_DIR, INCEPTION_FLOOR, REFERENCE_ROWS, CorruptFile, cell_files, cell_lock, cell_name, cell_path,
                    read_record, reference_path, set_aside, tables_lock, write_record)


def _warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


@dataclasses.dataclass
class Plan:
    """What a run will do to an existing bench folder, found without changing anything."""
    corrupt: list[tuple[Path, str]] = dataclasses.field(default_factory=list)   # (file, why): set aside, redone
    stale: list[tuple[Path, str]] = dataclasses.field(default_factory=list)     # (file, difference)
    stale_runs: list[tuple[Path, str]] = dataclasses.field(default_factory=list)  # (run folder, difference)
    done: set[str] = dataclasses.field(default_factory=set)                     # cells reused as they are
    topup: set[str] = dataclasses.field(default_factory=set)    # cells reused, the Inception FID added (--inception)
    rebuild: set[str] = dataclasses.field(default_factory=set)  # of those, the ones whose run folder is trained
                                                                # again, then checked against the cell (--rebuild)
    no_run: list[Path] = dataclasses.field(default_factory=list)  # cells lacking the Inception FID, no finished run


def _wanted_for(path: Path, profile: Profile, data: str, features, tiny: bool, rec: dict) -> dict | None:
    if path.stem == INCEPTION_FLOOR:   # checked only by a run that computes it
        return inception_reference_settings(profile, data=data) if profile.inception_n else None
    if path.name.startswith("_"):
        return reference_settings(profile, data=data, features=features)
    return cell_settings(profile, family=rec["family"], data=data, features=features, tiny=tiny, seed=rec["seed"])


def plan_run(out: Path, profile: Profile, todo: list[tuple[str, int]], data: str, features,
             tiny: bool, rebuild: bool = False) -> Plan:
    """Compare every cell, reference row and to-be-run run folder in ``out`` with this run's settings
    (read-only). ``rebuild``: a cell that lacks only the Inception FID and whose run folder is gone is
    topped up after its run folder is trained again (else it is listed in ``no_run``)."""
    plan = Plan()
    for fam, seed in todo:
        refuse_symlink(run_dir(out, cell_name(fam, seed)))
    if not (out / CELLS_DIR).is_dir():
        return plan
    files = cell_files(out) + [p for p in (reference_path(out, r) for r in REFERENCE_ROWS) if p.exists()]
    names = {cell_name(fam, seed) for fam, seed in todo}
    for p in files:
        try:
            rec = read_record(p, cell=not p.name.startswith("_"))
        except CorruptFile as e:
            plan.corrupt.append((p, str(e)))
            continue
        wanted = _wanted_for(p, profile, data, features, tiny, rec)
        diff = wanted is not None and difference(rec.get("settings"), wanted)
        if diff and not p.name.startswith("_") and _inception_only(rec.get("settings"), wanted):
            if not (wanted.get("inception_n") and p.stem in names):   # the same cell, one metric more or less
                plan.done.add(p.stem)
                continue
            trained = is_trained(run_dir(out, p.stem))
            if trained or rebuild:   # the same cell: add its Inception FID
                plan.topup.add(p.stem)
                if not trained:
                    plan.rebuild.add(p.stem)
                continue
            plan.no_run.append(p)
        if diff:
            plan.stale.append((p, diff))
        elif not p.name.startswith("_"):
            plan.done.add(p.stem)
    for fam, seed in todo:
        name = cell_name(fam, seed)
        rd = run_dir(out, name)
        if name in plan.done or (name in plan.topup and name not in plan.rebuild) or not has_training(rd):
            continue
        want = train_settings(cell_settings(profile, family=fam, data=data, features=features, tiny=tiny,
                                            seed=seed))
        diff = difference(recorded_settings(rd), want)
        if diff:
            plan.stale_runs.append((rd, diff))
    return plan


def _inception_only(recorded, wanted: dict) -> bool:
    """Whether a cell's recorded settings differ from ``wanted`` in inception_n alone."""
    if not isinstance(recorded, dict):
        return False
    return difference({k: v for k, v in recorded.items() if k != "inception_n"},
                      {k: v for k, v in wanted.items() if k != "inception_n"}) is None


def _lacks_inception(path: Path, profile: Profile) -> bool:
    """Whether a cell planned for a top-up still lacks this run's Inception FID (another shard may
    have added it since the plan was made)."""
    return read_record(path).get("settings", {}).get("inception_n") != profile.inception_n


def _names(items: list[tuple[Path, str]]) -> str:
    names = [p.name.removesuffix(".json") for p, _ in items]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def refuse_stale(out: Path, plan: Plan) -> None:
    """One-line ZooError naming the cells (or run folders) made with other settings, and the first difference."""
    if plan.no_run and len(plan.no_run) == len(plan.stale):
        many = len(plan.no_run) > 1
        raise ZooError(f"cell{'s' if many else ''} {_names([(p, '') for p in plan.no_run])} in {out} "
                       f"lack{'' if many else 's'} the Inception FID and {'have' if many else 'has'} no finished run folder: "
                       f"--rebuild trains {'them' if many else 'it'} again (checked against each cell), "
                       f"--force redoes {'them' if many else 'it'}")
    if plan.stale:
        many = len(plan.stale) > 1
        raise ZooError(f"cell{'s' if many else ''} {_names(plan.stale)} in {out} {'were' if many else 'was'} made "
                       f"with {plan.stale[0][1]}: use another --out, or --force to redo "
                       f"{'them' if many else 'it'}")
    if plan.stale_runs:
        many = len(plan.stale_runs) > 1
        raise ZooError(f"run folder{'s' if many else ''} {_names(plan.stale_runs)} in {out / RUNS_DIR} "
                       f"{'were' if many else 'was'} trained with {plan.stale_runs[0][1]}: use another --out, "
                       f"or --force to retrain {'them' if many else 'it'}")


def keep_stale_cells(out: Path, plan: Plan, warn: Callable[[str], None]) -> None:
    """--merge runs no cell: a finished cell made with other settings than today's code would use
    (an older recipe) stays in the tables as it was made, since each cell records its own settings
    and commit; a warning names it. Reference rows made otherwise still stop the merge."""
    cells = [(p, d) for p, d in plan.stale if not p.name.startswith("_")]
    if cells:
        many = len(cells) > 1
        warn(f"--merge: cell{'s' if many else ''} {_names(cells)} in {out} {'were' if many else 'was'} made with "
             f"{cells[0][1]}; kept as made (--force would redo {'them' if many else 'it'})")
    plan.stale = [(p, d) for p, d in plan.stale if p.name.startswith("_")]
    plan.no_run = [p for p in plan.no_run if p.name.startswith("_")]


def apply_plan(plan: Plan, log: Callable[[str], None], warn: Callable[[str], None]) -> None:
    """Rename aside the corrupt files (with a warning) and, under --force, the stale cells and run folders."""
    for p, why in plan.corrupt:
        new = set_aside(p, "corrupt")
        warn(f"{p} is corrupt ({why}): set aside as {new.name}; it is redone")
    for p, diff in plan.stale:
        new = set_aside(p, "replaced")
        log(f"--force: {p.name} was made with {diff}: set aside as {new.name}")
    for p, diff in plan.stale_runs:
        new = set_aside(p, "replaced")
        log(f"--force: run folder {p.name} was trained with {diff}: set aside as {new.name}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def check_request(profile: Profile, families: list[str], data: str):
    """Every check on a bench request that needs no bench folder: the profile, the device, the
    families, the dataset and its test split size, the Inception weights of --inception. Returns
    (train split, test split)."""
    from ..data import load_dataset
    check_profile(profile)
    if profile.device.startswith("cuda") and not torch.cuda.is_available():
        raise ZooError(f"profile {profile.name!r} needs a CUDA device; none is available here")
    if not families:
        raise ZooError("no families to run")
    train_set, test_set = load_dataset(data, "train"), load_dataset(data, "test")
    check_profile(profile, len(test_set))
    check_inception(profile, len(test_set), len(train_set))
    return train_set, test_set


def write_reference_rows(out: Path, profile: Profile, data: str, features,
                         log: Callable[[str], None] = click.echo) -> None:
    """The floor (real vs real) and ceiling (uniform noise) rows, and with --inception the Inception
    floor row, unless already there."""
    from ..metrics.evaluate import noise_ceiling, real_vs_real
    ref_settings = reference_settings(profile, data=data, features=features)
    for name, fn in (("_floor", real_vs_real), ("_ceiling", noise_ceiling)):
        p = reference_path(out, name)
        if not p.exists():
            log(f"reference row {name[1:]}: n={profile.n}")
            write_record(p, {**fn(data, profile.n, features=features), "settings": ref_settings})
    p = reference_path(out, INCEPTION_FLOOR)
    if profile.inception_n and not p.exists():
        log(f"reference row floor (Inception): n={profile.inception_n}")
        write_record(p, {**inception_floor(profile, data), "settings": inception_reference_settings(profile, data=data)})


def shard_cells(cells: list, shard: tuple[int, int] | None) -> list:
    """Shard k of n (1-based) of the grid: every n-th cell from the k-th, so each shard gets a mix of
    families; the n shards together are the grid, each cell once."""
    if shard is None:
        return list(cells)
    k, n = shard
    return list(cells)[k - 1::n]


def run_bench(profile: Profile, families: list[str], data: str, out: Path, features, command: str,
              log: Callable[[str], None] = click.echo, tiny: bool = False, force: bool = False,
              warn: Callable[[str], None] = _warn, shard: tuple[int, int] | None = None,
              merge: bool = False, rebuild: bool = False) -> Path:
    """Run every (family, seed) cell of ``profile`` into ``out`` (or shard ``(k, n)`` of them, or
    none with ``merge``) and rebuild its tables and figures from every cell the folder holds.
    ``rebuild`` (with --inception): a finished cell whose run folder is gone is trained again and
    checked against the cell before its Inception FID is added (cell.rebuild_run).

    Every check (profile, device, dataset, test split size, the settings of what ``out`` already
    holds) comes before anything is created. Raises ZooError (a mistake: nothing changed) or
    RunFailed (some cells failed; the others finished)."""
    train_set, test_set = check_request(profile, families, data)
    todo = [] if merge else shard_cells([(f, s) for f in families for s in profile.seeds], shard)
    plan = plan_run(out, profile, todo, data, features, tiny, rebuild=rebuild)
    if merge and not force:
        keep_stale_cells(out, plan, warn)
    if not force:
        refuse_stale(out, plan)
    check_rebuild(out, plan, profile)

    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    apply_plan(plan, log, warn)
    prov = provenance(profile, data)
    atomic_write_text(out / "bench.json", json.dumps({"command": command, "profile": profile_record(profile),
                                                      "families": families, "tiny": tiny, "provenance": prov},
                                                     indent=2))
    with tables_lock(out):   # one shard computes the rows, the others then find them
        write_reference_rows(out, profile, data, features, log)
    failures: list[str] = []
    t_start = time.time()
    for i, (fam, seed) in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {fam} seed {seed}"
        with cell_lock(out, fam, seed) as mine:
            if not mine:
                log(f"{tag}: running in another process, skipped")
                continue
            path = cell_path(out, fam, seed)
            finished = path.exists()
            if finished and not (cell_name(fam, seed) in plan.topup and _lacks_inception(path, profile)):
                log(f"{tag}: done already, skipped")
                continue
            log(tag)
            if finished:
                rec = _top_up(fam, seed, profile, data, out, features, train_set, log=log, tiny=tiny)
            else:
                rec = _run_one(fam, seed, profile, data, out, features, train_set, test_set, prov, log=log,
                               tiny=tiny)
        if isinstance(rec, str):
            failures.append(f"{fam} seed {seed}: {rec}")
            continue
        with tables_lock(out):
            write_outputs(out, profile, data, command, prov)
        inc = f", FID (Inception) {rec['fid_inception']:.2f}" if "fid_inception" in rec else ""
        log(f"{tag}: FID {rec.get('fid', float('nan')):.2f}{inc}, {rec['images_per_s']:.1f} images/s, "
            f"cell {rec['cell_wall_s']:.0f} s")
    with tables_lock(out):
        write_outputs(out, profile, data, command, prov)
    what = "merged" if merge else f"{len(todo)} cells" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")
    log(f"bench {profile.name}: {what}, {time.time() - t_start:.0f} s this invocation -> {out / 'RESULTS.md'}")
    if failures:
        raise RunFailed(f"{len(failures)} of {len(todo)} cells failed (tracebacks in {out / CELLS_DIR}/*.failed.txt;"
                        f" re-run the same command to retry them): " + "; ".join(failures))
    return out


def _guarded(fam: str, seed: int, out: Path, log: Callable[[str], None], work: Callable[[], dict]) -> dict | str:
    """``work()``'s record; on failure its traceback written beside the cell and the error's first line."""
    failed = out / CELLS_DIR / f"{cell_name(fam, seed)}.failed.txt"
    try:
        rec = work()
    except StopRequested:
        raise
    except Exception as e:  # one broken cell must not cost the others: record it, go on, fail at the end
        atomic_write_text(failed, traceback.format_exc())
        log(f"  {fam} seed {seed}: FAILED ({_first_line(e)}); traceback in {failed}")
        return _first_line(e)
    failed.unlink(missing_ok=True)
    return rec


def check_rebuild(out: Path, plan: Plan, profile: Profile) -> None:
    """One-line ZooError unless every cell whose run folder --rebuild would train again was trained on
    this machine's CPU kind, thread count and torch: elsewhere training does not repeat bit for bit,
    so the rebuilt run could not pass its check against the cell (cell.rebuild_run). A cell made
    before cells recorded the CPU's family and model (``cpu_id``) is checked on its model name only;
    its check against the cell's FID then tells."""
    if not plan.rebuild:
        return
    if profile.conditional:
        raise ZooError("--rebuild is not for --conditional cells")
    here = machine()
    for name in sorted(plan.rebuild):
        trained = read_record(out / CELLS_DIR / f"{name}.json").get("train_provenance", {})
        for key in REPEAT_KEYS:
            if (key != "cpu_id" or key in trained) and trained.get(key) != here[key]:
                raise ZooError(f"--rebuild: cell {name} was trained with {key} {trained.get(key)!r}, this process has "
                               f"{here[key]!r}; its run repeats bit for bit only there"
                               + (" (set OMP_NUM_THREADS)" if key == "threads" else ""))


def _top_up(fam: str, seed: int, profile: Profile, data: str, out: Path, features, train_set, *,
            log: Callable[[str], None], tiny: bool = False) -> dict | str:
    """Add the Inception FID to a finished cell from its run folder and rewrite the cell; its other
    numbers, settings and provenance stay as they were (cell.add_inception). A cell whose run folder
    is gone (planned under --rebuild) has it trained again and checked first (cell.rebuild_run)."""
    path = cell_path(out, fam, seed)
    rd = run_dir(out, cell_name(fam, seed))

    def work() -> dict:
        rec = read_record(path)
        images, rebuilt = None, None
        if not (is_trained(rd) and trained_as_recorded(rd, rec)):   # trained again (or being): check it first
            images, rebuilt = cell_module.rebuild_run(rec, profile, data, out, features, train_set, log=log, tiny=tiny)
        return cell_module.add_inception(rec, rd, profile, data, images=images, rebuilt=rebuilt, log=log)

    rec = _guarded(fam, seed, out, log, work)
    if not isinstance(rec, str):
        write_record(path, rec)
    return rec


def _run_one(fam: str, seed: int, profile: Profile, data: str, out: Path, features, train_set, test_set,
             prov: dict, *, log: Callable[[str], None], tiny: bool) -> dict | str:
    """Run one cell and write its record with its settings and provenance; on failure write its
    traceback beside it and return the error's first line."""
    t0 = time.time()
    rec = _guarded(fam, seed, out, log, lambda: cell_module.run_cell(
        fam, seed, profile, data, out, features, train_set, test_set, log=log, tiny=tiny))
    if isinstance(rec, str):
        return rec
    rec["tiny"] = tiny
    rec["settings"] = cell_settings(profile, family=fam, data=data, features=features, tiny=tiny, seed=seed)
    rec["cell_wall_s"] = round(time.time() - t0, 1)
    rec["provenance"] = prov
    write_record(cell_path(out, fam, seed), rec)
    return rec
