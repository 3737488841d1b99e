"""`zoo bench` never mixes or destroys results: cell settings, --force, corrupt files, run folders,
machines, failures and option checks.

The bench's bookkeeping is under test, not its measurements (test_bench.py runs real cells): each
cell here trains for real (one step of a tiny family, so run folders are genuine) but its sampling,
metrics and speed probe are replaced by a canned record, and the floor and ceiling rows are canned.
"""
import dataclasses
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo.bench import PROFILES, cell, run_bench
from zoo.cli import cli
from zoo.errors import ZooError

from helpers import fake_cell, faked

FAMILIES = ["vae", "gan"]
TFLOPS = 1e-6      # one training step of a tiny family
N = 100            # <= the 128 test images of the synthetic dataset


def profile(**kw):
    return dataclasses.replace(PROFILES["quick"], **{"tflops": TFLOPS, "n": N, **kw})


def bench(out, prof=None, families=FAMILIES, **kw):
    lines = []
    kw.setdefault("warn", lines.append)
    run_bench(prof or profile(), families, "synthetic", out, "fmnist-cnn", "cmd", log=lines.append, tiny=True, **kw)
    return lines


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "base"
    with faked([]):
        bench(out)
    return out


@pytest.fixture()
def made(base, tmp_path):
    """A private copy of a finished two-cell bench folder."""
    out = tmp_path / "b"
    shutil.copytree(base, out, symlinks=True)
    return out


@pytest.fixture()
def calls(monkeypatch):
    c = []
    with faked(c, monkeypatch):
        yield c


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_cells_record_their_settings(made):
    rec = json.loads((made / "cells" / "vae-s0.json").read_text())
    assert rec["settings"] == {**rec["settings"], "profile": "quick", "tflops": TFLOPS, "n": N, "data": "synthetic",
                               "features": "fmnist-cnn", "tiny": True, "seed": 0, "bpd_images": 200, "recipe": {},
                               "bpd_terms": 50, "sweep_steps": [], "sweep_n": 0}   # quick: stratified diffusion bpd
    assert json.loads((made / "runs" / "vae-s0" / "bench_settings.json").read_text())["tflops"] == TFLOPS
    assert json.loads((made / "cells" / "_floor.json").read_text())["settings"] == {
        "n": N, "data": "synthetic", "features": "fmnist-cnn"}


def test_same_settings_reuse_every_cell(made, calls):
    bench(made)
    assert calls == []


def test_rerun_with_other_budget_stops_and_changes_nothing(made):
    """The installed command, as a user meets it: exit 2, one line on stderr, not a byte changed."""
    before = snapshot(made)
    zoo = Path(sys.executable).parent / "zoo"
    r = subprocess.run([str(zoo), "bench", "--data", "synthetic", "--tiny", "--families", "vae,gan",
                        "--n", str(N), "--tflops", "2e-6", "--out", str(made)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "gan-s0, vae-s0" in r.stderr and "tflops=1e-06, not 2e-06" in r.stderr and "--force" in r.stderr
    assert snapshot(made) == before


@pytest.mark.parametrize("change", [{"n": 50}, {"bpd_images": 10}, {"sweep_steps": (5,), "sweep_n": 50}])
def test_any_measurement_setting_stops_a_rerun(made, calls, change):
    with pytest.raises(ZooError, match=f"made with {next(iter(change))}="):
        bench(made, profile(**change))
    assert calls == []


def test_tiny_and_data_are_settings_too(made, calls):
    # without --tiny a cell trains with its family's recipe, the first setting that differs
    with pytest.raises(ZooError, match='made with recipe=\\{\\}, not \\{"train.batch_size": 32[,}]'):
        run_bench(profile(), FAMILIES, "synthetic", made, "fmnist-cnn", "cmd", log=lambda *_: None, tiny=False)
    with pytest.raises(ZooError, match="data=synthetic, not synthetic:16"):
        run_bench(profile(), ["vae"], "synthetic:16", made, "fmnist-cnn", "cmd", log=lambda *_: None, tiny=True)
    assert calls == []


def test_force_redoes_and_sets_old_files_aside(made, calls):
    bench(made, profile(tflops=2 * TFLOPS), families=["vae"], force=True)
    assert calls == ["vae-s0"]
    cells = sorted(p.name for p in (made / "cells").iterdir())
    assert "vae-s0.json" in cells and any(n.startswith("vae-s0.json.replaced-") for n in cells)
    # gan-s0 was not asked for: set aside (so that it cannot be mixed in), not redone
    assert "gan-s0.json" not in cells and any(n.startswith("gan-s0.json.replaced-") for n in cells)
    assert any(p.name.startswith("vae-s0.replaced-") for p in (made / "runs").iterdir())  # old training kept
    doc = json.loads((made / "results.json").read_text())
    assert [c["settings"]["tflops"] for c in doc["cells"]] == [2 * TFLOPS]
    assert "for 2e-06 TFLOP" in (made / "RESULTS.md").read_text()


def test_force_keeps_the_training_when_only_measurement_changed(made, calls, monkeypatch):
    train_mod = importlib.import_module("zoo.train")
    fits = []
    real_fit = train_mod.fit
    monkeypatch.setattr(train_mod, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    bench(made, profile(n=50), force=True)
    assert sorted(calls) == ["gan-s0", "vae-s0"] and fits == []   # redone on the same trained runs
    assert not [p for p in (made / "runs").iterdir() if ".replaced-" in p.name]


def test_corrupt_cell_and_reference_are_set_aside_and_redone(made, calls):
    p = made / "cells" / "vae-s0.json"
    p.write_text(p.read_text()[:40])          # a truncated write
    (made / "cells" / "_floor.json").write_text("{")
    warnings = []
    bench(made, warn=warnings.append)
    assert calls == ["vae-s0"]
    assert len(warnings) == 2 and all("corrupt" in w and "\n" not in w for w in warnings)
    names = [q.name for q in (made / "cells").iterdir()]
    assert any(n.startswith("vae-s0.json.corrupt-") for n in names)
    assert any(n.startswith("_floor.json.corrupt-") for n in names)
    assert json.loads(p.read_text())["family"] == "vae"
    assert json.loads((made / "cells" / "_floor.json").read_text())["fid"] == 0.5
    assert "| vae |" in (made / "RESULTS.md").read_text()


def test_killed_run_folder_is_cleared_but_foreign_files_survive(made, calls):
    """A run killed before its first checkpoint: zoo's own files go, the user's stay."""
    run = made / "runs" / "vae-s0"
    for name in ("summary.json", "model.safetensors", "checkpoint.safetensors"):
        (run / name).unlink(missing_ok=True)
    (made / "cells" / "vae-s0.json").unlink()
    (run / "notes.txt").write_text("mine")
    (run / "keep").mkdir()
    (run / "keep" / "config.json").write_text("also mine")
    bench(made)
    assert calls == ["vae-s0"]
    assert (run / "notes.txt").read_text() == "mine" and (run / "keep" / "config.json").read_text() == "also mine"
    assert (run / "summary.json").exists() and (made / "cells" / "vae-s0.json").exists()


def test_clear_run_deletes_only_zoo_files(tmp_path):
    from zoo.bench.rundir import ZOO_FILES, clear_run
    for name in ZOO_FILES | {"notes.txt", "model.pt", "config.json.bak"}:
        (tmp_path / name).write_text("x")
    assert clear_run(tmp_path) == ["config.json.bak", "model.pt", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json.bak", "model.pt", "notes.txt"]


def test_symlinked_run_folder_is_refused(made, calls, tmp_path):
    target = tmp_path / "elsewhere"
    shutil.copytree(made / "runs" / "gan-s0", target)
    (target / "checkpoint.safetensors").unlink(missing_ok=True)  # would be cleared if it were followed
    (target / "summary.json").unlink()
    shutil.rmtree(made / "runs" / "gan-s0")
    (made / "runs" / "gan-s0").symlink_to(target, target_is_directory=True)
    (made / "cells" / "gan-s0.json").unlink()
    before, before_target = snapshot(made), snapshot(target)
    with pytest.raises(ZooError, match="gan-s0 is a symbolic link") as e:
        bench(made)
    assert "\n" not in str(e.value) and calls == []
    assert snapshot(target) == before_target and snapshot(made) == before


def test_results_md_names_every_machine(made, calls):
    p = made / "cells" / "gan-s0.json"
    rec = json.loads(p.read_text())
    from zoo.provenance import describe_machine
    here = describe_machine(rec["provenance"])
    rec["provenance"]["cpu"] = "Other CPU 9000"
    p.write_text(json.dumps(rec))
    bench(made)
    assert calls == []
    md = (made / "RESULTS.md").read_text()
    assert f"on several machines: cell gan-s0 on {describe_machine(rec['provenance'])} " in md
    assert f"; cell vae-s0 on {here} " in md and "Other CPU 9000" in describe_machine(rec["provenance"])


def test_failed_cell_exits_1_naming_it(made, monkeypatch):
    calls = []
    real = fake_cell(calls)

    def flaky(family, *a, **k):
        if family == "gan":
            raise RuntimeError("boom\nsecond line")
        return real(family, *a, **k)
    with faked(calls, monkeypatch):
        monkeypatch.setattr(cell, "run_cell", flaky)
        shutil.rmtree(made)
        r = CliRunner().invoke(cli, ["bench", "--data", "synthetic", "--tiny", "--families", "vae,gan", "--n", str(N),
                                     "--tflops", str(TFLOPS), "--out", str(made)])
    assert r.exit_code == 1, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("failed: 1 of 2 cells failed") and last.endswith("gan seed 0: RuntimeError: boom")
    assert (made / "cells" / "vae-s0.json").exists() and (made / "cells" / "gan-s0.failed.txt").exists()
    assert "second line" in (made / "cells" / "gan-s0.failed.txt").read_text()
    calls.clear()
    with faked(calls):  # the same command again retries only the failed cell
        r = CliRunner().invoke(cli, ["bench", "--data", "synthetic", "--tiny", "--families", "vae,gan", "--n", str(N),
                                     "--tflops", str(TFLOPS), "--out", str(made)])
    assert r.exit_code == 0 and calls == ["gan-s0"], r.output
    assert (made / "cells" / "gan-s0.json").exists() and not (made / "cells" / "gan-s0.failed.txt").exists()


def _step_tflops(family):
    """Training TFLOP of one default-batch step of the tiny family (all phases)."""
    from helpers import tiny
    from zoo.data import load_dataset
    from zoo.images import to_float
    from zoo.perf import count_flops
    m = tiny(family)
    x = to_float(load_dataset("synthetic").images[:128])

    def step():
        for p in next(iter(m.stage_plan().values())):
            m.loss(x, phase=p)["loss"].backward()
    return count_flops(step)[0] / 1e12


def test_resume_after_kill(tmp_path, calls, monkeypatch):
    """Kill the bench inside a cell's training; the rerun resumes it from its checkpoint (not from
    scratch: the run folder's settings match) and ends with the full budget."""
    train_mod = importlib.import_module("zoo.train")
    out = tmp_path / "quick"
    prof = profile(tflops=12 * _step_tflops("gan"))
    real_fit = train_mod.fit
    fits = []

    def fit_killed(model, images, labels, out_dir, tcfg, **kw):
        fits.append(kw.get("resume"))
        if kw.get("resume"):
            return real_fit(model, images, labels, out_dir, tcfg, **kw)
        orig = type(model).loss
        count = {"i": 0}

        def loss(self, x, labels=None, *, phase="main"):
            count["i"] += 1
            if count["i"] == 11:  # two phases per step: inside step 6, after the checkpoint at step 3
                raise KeyboardInterrupt
            return orig(self, x, labels, phase=phase)
        monkeypatch.setattr(type(model), "loss", loss)
        try:
            return real_fit(model, images, labels, out_dir, dataclasses.replace(tcfg, ckpt_every=3), **kw)
        finally:
            monkeypatch.setattr(type(model), "loss", orig)
    monkeypatch.setattr(train_mod, "fit", fit_killed)
    with pytest.raises(KeyboardInterrupt):
        bench(out, prof, families=["gan"])
    assert not (out / "cells" / "gan-s0.json").exists()
    assert (out / "runs" / "gan-s0" / "checkpoint.safetensors").exists()

    lines = bench(out, prof, families=["gan"])
    assert any("resuming" in line for line in lines)
    assert fits == [False, True]
    summary = json.loads((out / "runs" / "gan-s0" / "summary.json").read_text())
    assert summary["train_tflops"] >= prof.tflops and summary["steps"] >= 12
    assert [c["family"] for c in json.loads((out / "results.json").read_text())["cells"]] == ["gan"]


@pytest.mark.parametrize("args, message", [
    (["--tflops", "inf"], "--tflops must be a finite number > 0"),
    (["--tflops", "nan"], "--tflops must be a finite number > 0"),
    (["--tflops", "0"], "--tflops must be a finite number > 0"),
    (["--n", "1"], "--n must be >= 2"),
    (["--n", "129"], "--n 129 exceeds the 128 images of the test split"),
    (["--seeds", "a"], "bad --seeds"),
    (["--seeds", "-1"], "bad --seeds"),
    (["--families", "vae,nope"], "unknown model 'nope'"),
    (["--families", ","], "--families"),
])
def test_bad_options_create_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    r = CliRunner().invoke(cli, ["bench", "--data", "synthetic", "--tiny", "--out", str(out), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_table_prints_per_seed_rows(made):
    r = CliRunner().invoke(cli, ["bench", "table", str(made), "--families", "vae,gan"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"From `{made / 'results.json'}` (profile quick")
    assert [ln.split(" | ")[0] for ln in lines if ln.startswith("| vae") or ln.startswith("| gan")] == ["| vae", "| gan"]
    assert "vae: FID mean ± std over 1 seeds = " in r.output
    r = CliRunner().invoke(cli, ["bench", "table", str(made), "--families", "flow"])
    assert r.exit_code == 2 and "no cells of flow" in r.output


def test_collapse_reports_every_run(made, tmp_path):
    out = tmp_path / "collapse.json"
    r = CliRunner().invoke(cli, ["bench", "collapse", str(made), "--families", "gan", "--n", "16", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["n"] == 16 and doc["reference"] == "synthetic test[:16]"
    assert list(doc["runs"]) == [str(made / "runs" / "gan-s0")]
    assert {"std_ratio", "collapsed"} <= set(doc["runs"][str(made / "runs" / "gan-s0")])
    r = CliRunner().invoke(cli, ["bench", "collapse", str(made), "--families", "flow", "--n", "16"])
    assert r.exit_code == 2 and "no cells of family 'flow'" in r.output


def test_cells_carry_a_schema_version_and_cells_without_one_are_reused(made, calls):
    p = made / "cells" / "vae-s0.json"
    rec = json.loads(p.read_text())
    assert rec["schema_version"] == 1
    assert json.loads((made / "cells" / "_floor.json").read_text())["schema_version"] == 1
    for q in (made / "cells").glob("*.json"):   # as the committed cells are: no schema_version
        old = json.loads(q.read_text())
        del old["schema_version"]
        q.write_text(json.dumps(old))
    bench(made)
    assert calls == []   # every cell read back and reused
    doc = json.loads((made / "results.json").read_text())
    assert sorted(c["family"] for c in doc["cells"]) == sorted(FAMILIES)


def test_results_mean_csv_has_mean_and_std_over_seeds(made, calls):
    import csv
    import statistics
    for fam, fid in (("vae", 20.0), ("gan", 30.0)):   # seed 0 apart from the canned seed-1 values
        p = made / "cells" / f"{fam}-s0.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "fid": fid}))
    bench(made, profile(seeds=(0, 1)))
    per_seed = list(csv.DictReader((made / "results.csv").open()))
    mean_rows = {r["family"]: r for r in csv.DictReader((made / "results_mean.csv").open())}
    assert sorted(mean_rows) == sorted(FAMILIES)
    for fam, row in mean_rows.items():
        fids = [float(r["fid"]) for r in per_seed if r["family"] == fam]
        assert len(fids) == 2 and row["seeds"] == "2"
        assert float(row["fid"]) == pytest.approx(statistics.mean(fids))
        assert float(row["fid_std"]) == pytest.approx(statistics.stdev(fids)) and float(row["fid_std"]) > 0
        assert row["bpd"] == "" and row["bpd_std"] == ""   # no family here has a likelihood in the canned cells
