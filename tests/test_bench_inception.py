"""zoo bench --inception: the Inception FID of a cell and its floor row, the column in the tables,
and cells made with and without it told apart. The Inception network is replaced by a tiny seeded
stand-in and the protocol's n is shrunk through the profile, so no weights and no 299x299 forward
passes are needed (the real network is tested in test_features.py)."""
import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import zoo.bench.inception as inception
from helpers import BENCH_FAMILIES, assert_same_images, tiny, tiny_quick
from zoo.bench import run_bench
from zoo.bench.report import write_report
from zoo.bench.runner import plan_run
from zoo.errors import ZooError
from zoo.metrics.features import Extractor

INCEPTION_N = 108   # the tiny profile's n is 100: 8 more samples are drawn for the Inception FID


class StandIn(Extractor):
    """A fixed random projection of 7x7 mean-pooled pixels, named as the Inception extractor."""
    name, weights_sha256, dim = "inception", "stand-in", 8

    def __init__(self):
        self.proj = torch.randn(49, self.dim, generator=torch.Generator().manual_seed(0))

    def _embed(self, u: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(u.float().mean(1, keepdim=True) / 255, 7).flatten(1)   # (B, 49)
        return x @ self.proj                                                               # (B, 8)


def with_inception():
    return dataclasses.replace(tiny_quick(), inception_n=INCEPTION_N)


@pytest.fixture(scope="module")
def inception_folder(tmp_path_factory, finished, extractor):
    """A copy of the tiny bench folder (cells made without --inception) run again with --inception:
    the vae cell gets the Inception FID added (a top-up), the gan cell, whose file is removed but whose
    run folder stays, is made again with it; returns (folder, log lines, the vae cell before)."""
    out = tmp_path_factory.mktemp("inception") / "quick"
    shutil.copytree(finished, out)
    before = json.loads((out / "cells" / "vae-s0.json").read_text())
    (out / "cells" / "gan-s0.json").unlink()
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE", str(out.parent / "cache"))
        mp.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
        run_bench(with_inception(), ["vae", "gan"], "synthetic", out, extractor, "cmd --inception",
                  log=logs.append, tiny=True)
    return out, logs, before


def test_inception_cell_floor_and_tables(inception_folder, tmp_path):
    out, logs, _ = inception_folder
    cell = json.loads((out / "cells" / "gan-s0.json").read_text())
    assert math.isfinite(cell["fid_inception"]) and cell["fid_inception"] > 0 and cell["inception_n"] == INCEPTION_N
    assert cell["settings"]["inception_n"] == INCEPTION_N
    prov = cell["inception_provenance"]
    assert prov["weights_sha256"] == "stand-in" and "TF-Inception" in prov["protocol"] and "108" in prov["protocol"]
    assert not any(line.startswith("  train ") for line in logs)   # both run folders are reused, not retrained
    assert any("8 more images" in line for line in logs)           # a new cell draws only the remainder
    floor = json.loads((out / "cells" / "_floor_inception.json").read_text())
    assert math.isfinite(floor["fid"]) and floor["settings"] == {"n": INCEPTION_N, "data": "synthetic",
                                                                 "features": "inception"}
    md = (out / "RESULTS.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert "FID (Inception) ↓" in table[0] and "TF-Inception" in md
    floor_line = next(line for line in table if line.startswith("| floor"))
    assert f"{floor['fid']:.2f}" in floor_line
    with open(out / "results_mean.csv") as fh:
        assert "fid_inception" in next(csv.reader(fh))
    with open(out / "results.csv") as fh:
        assert "fid_inception" in next(csv.reader(fh))
    html = write_report(out, tmp_path / "site").read_text()
    assert "FID (Inception)" in html and "pool3" in html


def test_inception_added_to_a_finished_cell(inception_folder, finished, extractor, tmp_path, monkeypatch):
    """--inception on a finished cell adds the Inception FID of samples drawn again from its run
    folder, with the same per-image seeds, and leaves every other number of the cell as it was."""
    out, logs, before = inception_folder
    after = json.loads((out / "cells" / "vae-s0.json").read_text())
    assert any(f"sample {INCEPTION_N} images for the Inception FID" in line for line in logs)
    assert math.isfinite(after["fid_inception"]) and after["inception_n"] == INCEPTION_N
    added = {"fid_inception", "inception_n", "inception_provenance"}
    assert {k: v for k, v in after.items() if k not in added | {"settings"}} == \
        {k: v for k, v in before.items() if k != "settings"}
    assert after["settings"] == {**before["settings"], "inception_n": INCEPTION_N}
    where = after["inception_provenance"]["added_to_finished_cell"]
    assert where["threads"] == torch.get_num_threads() and where["git_commit"] and where["date"]
    assert where["cpu_id"] == before["train_provenance"]["cpu_id"]   # made here: the same CPU generation
    # the cell made again with --inception from the start scores the same images: the same Inception FID
    again = tmp_path / "quick"
    shutil.copytree(finished, again)
    (again / "cells" / "vae-s0.json").unlink()
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
    run_bench(with_inception(), ["vae"], "synthetic", again, extractor, "cmd --inception", log=lambda *_: None,
              tiny=True)
    made = json.loads((again / "cells" / "vae-s0.json").read_text())
    assert made["fid"] == before["fid"]
    assert made["fid_inception"] == pytest.approx(after["fid_inception"], rel=1e-9, abs=1e-9)


def test_inception_never_makes_a_cell_stale(inception_folder, finished, extractor, tmp_path):
    """A run without --inception reuses cells that have it; a run with it tops up the finished cells
    of its grid, reuses the others as they are, and refuses (as stale) only a cell whose run folder
    is gone, since the Inception samples cannot be drawn again."""
    todo = [(f, 0) for f in BENCH_FAMILIES]
    plain = plan_run(finished, tiny_quick(), todo, "synthetic", extractor, tiny=True)
    assert plain.done == {"vae-s0", "gan-s0"} and not plain.stale and not plain.topup
    bench = json.loads((finished / "bench.json").read_text())
    assert "inception_n" not in bench["profile"] and "Inception" not in (finished / "RESULTS.md").read_text()
    wanting = plan_run(finished, with_inception(), todo, "synthetic", extractor, tiny=True)
    assert wanting.topup == {"vae-s0", "gan-s0"} and not wanting.done and not wanting.stale and not wanting.stale_runs
    one = plan_run(finished, with_inception(), [("vae", 0)], "synthetic", extractor, tiny=True)
    assert one.topup == {"vae-s0"} and one.done == {"gan-s0"}
    out, _, _ = inception_folder
    back = plan_run(out, tiny_quick(), todo, "synthetic", extractor, tiny=True)
    assert back.done == {"vae-s0", "gan-s0"} and not back.stale
    gone = tmp_path / "quick"
    shutil.copytree(finished, gone)
    shutil.rmtree(gone / "runs" / "vae-s0")
    lost = plan_run(gone, with_inception(), todo, "synthetic", extractor, tiny=True)
    assert [(p.name, d) for p, d in lost.stale] == [("vae-s0.json", "no recorded inception_n, not inception_n=108")]


def test_sample_from_an_offset_is_the_tail_of_sample():
    model = tiny("vae")
    whole = model.sample(10, seed=3, batch_size=4)
    assert_same_images(model.sample(4, seed=3, offset=6, batch_size=3), whole[6:])


def test_inception_without_weights_exits_2_before_training(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "ZOO_INCEPTION_WEIGHTS": str(tmp_path / "missing.pth"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(Path(sys.executable).parent / "zoo"), "bench", "--tiny", "--data", "synthetic", "--n",
                        "10", "--families", "vae", "--inception", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.strip().splitlines() == [f"error: Inception weights not found: {tmp_path / 'missing.pth'}"]


def test_inception_table_script(inception_folder, finished, tmp_path):
    """benchmarks/inception_table.py puts every cell's Inception FID, the floor and the published
    numbers in one table, read from the cell files; a folder without the Inception FID is refused."""
    out, _, _ = inception_folder
    script = [sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "inception_table.py")]
    r = subprocess.run(script + [str(out), "--out", str(tmp_path / "table")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "table" / "inception.json").read_text())
    cells = {f: json.loads((out / "cells" / f"{f}-s0.json").read_text()) for f in ("vae", "gan")}
    assert {x["family"]: x["fid_inception"] for x in doc["rows"]} == {f: c["fid_inception"] for f, c in cells.items()}
    floor = json.loads((out / "cells" / "_floor_inception.json").read_text())
    md = (tmp_path / "table" / "INCEPTION.md").read_text()
    for f, c in cells.items():
        assert f"| {f} | {c['params']:,} | " in md and f"| {c['fid_inception']:.2f} | {c['fid']:.2f} |" in md
    assert f"| {floor['fid']:.2f} |" in md and "| Lucic et al. 2018 | WGAN | 21.5 ± 1.6 |" in md
    r = subprocess.run(script + [str(finished), "--out", str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == f"error: no cell with the Inception FID in {finished}"


def test_a_cell_topped_up_since_the_plan_is_not_topped_up_again(inception_folder, extractor, monkeypatch):
    """A shard whose plan listed a cell for a top-up skips it when another process has added the
    Inception FID since (the cell file is read again under the cell's lock)."""
    import zoo.bench.runner as runner
    out, _, _ = inception_folder
    before = (out / "cells" / "vae-s0.json").read_text()
    planned = runner.plan_run(out, with_inception(), [("vae", 0)], "synthetic", extractor, tiny=True)
    planned.topup.add("vae-s0")   # as planned before the other process finished it
    monkeypatch.setattr(runner, "plan_run", lambda *a, **k: planned)
    monkeypatch.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
    logs: list[str] = []
    runner.run_bench(with_inception(), ["vae"], "synthetic", out, extractor, "cmd --inception", log=logs.append,
                     tiny=True)
    assert any("vae seed 0: done already, skipped" in line for line in logs)
    assert (out / "cells" / "vae-s0.json").read_text() == before


def _gone(finished: Path, where: Path, edit=None) -> Path:
    """A copy of the tiny bench folder whose vae run folder is gone (its cell file edited by ``edit``)."""
    shutil.copytree(finished, where)
    shutil.rmtree(where / "runs" / "vae-s0")
    if edit:
        path = where / "cells" / "vae-s0.json"
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return where


def test_rebuild_trains_a_lost_run_again_and_adds_the_same_inception_fid(inception_folder, finished, extractor,
                                                                           tmp_path, monkeypatch):
    """--rebuild: a finished cell whose run folder is gone has it trained again; the rebuilt run samples
    the cell's FID exactly, so its Inception FID is the one the original run folder gives, and the
    cell's other numbers and provenance stay as they were."""
    topped_up = json.loads((inception_folder[0] / "cells" / "vae-s0.json").read_text())   # from the original run
    out = _gone(finished, tmp_path / "quick")
    before = json.loads((out / "cells" / "vae-s0.json").read_text())
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
    logs: list[str] = []
    run_bench(with_inception(), ["vae"], "synthetic", out, extractor, "cmd --inception --rebuild", log=logs.append,
              tiny=True, rebuild=True)
    after = json.loads((out / "cells" / "vae-s0.json").read_text())
    assert any(line.startswith("  train vae seed 0") for line in logs)
    assert any("the rebuilt run reproduces the cell" in line for line in logs)
    assert after["fid_inception"] == pytest.approx(topped_up["fid_inception"], rel=1e-9, abs=1e-9)
    added = {"fid_inception", "inception_n", "inception_provenance"}
    assert {k: v for k, v in after.items() if k not in added | {"settings"}} == \
        {k: v for k, v in before.items() if k != "settings"}
    rebuilt = after["inception_provenance"]["added_to_finished_cell"]["rebuilt_run"]
    assert rebuilt["fid"] == pytest.approx(before["fid"], rel=1e-9)
    assert rebuilt["train_provenance"]["threads"] == before["train_provenance"]["threads"]
    assert (out / "runs" / "vae-s0" / "model.safetensors").exists()


def test_a_rebuilt_run_that_misses_the_cell_is_set_aside(finished, extractor, tmp_path, monkeypatch):
    """A rebuilt run whose samples do not give the FID the cell records is not the cell's run: the cell
    file stays byte for byte, the run folder is renamed aside, and the run ends with RunFailed."""
    from zoo.errors import RunFailed
    out = _gone(finished, tmp_path / "quick", lambda c: {**c, "fid": c["fid"] + 1.0})
    before = (out / "cells" / "vae-s0.json").read_text()
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
    with pytest.raises(RunFailed, match="vae seed 0: ZooError: the rebuilt run gives FID"):
        run_bench(with_inception(), ["vae"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True,
                  rebuild=True)
    assert (out / "cells" / "vae-s0.json").read_text() == before
    assert not (out / "runs" / "vae-s0").exists()
    assert [p.name.split("-2")[0] for p in (out / "runs").glob("vae-s0.unverified-*")] == ["vae-s0.unverified"]


@pytest.mark.parametrize("key, other, shown", [
    ("threads", lambda v: v + 7, r"threads \d+, this process has \d+; its run repeats bit for bit only there "
                                 r"\(set OMP_NUM_THREADS\)"),
    ("cpu_id", lambda v: "family 1, model 1, stepping 1", r"cpu_id 'family 1, model 1, stepping 1', this process "
                                                          r"has .*; its run repeats bit for bit only there"),
])
def test_rebuild_refuses_another_machine_before_training(finished, extractor, tmp_path, monkeypatch, key, other,
                                                         shown):
    """Training repeats bit for bit only on the thread count and the CPU generation a cell records (its
    family and model: two hosts of one generic name such as 'AMD EPYC' may differ): elsewhere
    --rebuild stops with one line before anything is trained."""
    def edit(c):
        prov = c["train_provenance"]
        return {**c, "train_provenance": {**prov, key: other(prov.get(key))}}
    out = _gone(finished, tmp_path / "quick", edit)
    monkeypatch.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
    with pytest.raises(ZooError, match=rf"^--rebuild: cell vae-s0 was trained with {shown}$"):
        run_bench(with_inception(), ["vae"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True,
                  rebuild=True)
    assert not (out / "runs" / "vae-s0").exists()


def test_a_lost_run_folder_is_reported_with_both_ways_out(finished, extractor, tmp_path, monkeypatch):
    out = _gone(finished, tmp_path / "quick")
    monkeypatch.setattr(inception, "inception_extractor", lambda device="cpu": StandIn())
    with pytest.raises(ZooError, match="lacks the Inception FID and has no finished run folder: --rebuild trains "
                                       "it again .*, --force redoes it$"):
        run_bench(with_inception(), ["vae"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    assert not (out / "runs" / "vae-s0").exists()


def test_rebuild_without_inception_exits_2(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / "zoo"), "bench", "--tiny", "--data", "synthetic",
                        "--families", "vae", "--rebuild", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and not (tmp_path / "b").exists()
    assert r.stderr.strip().splitlines() == ["error: --rebuild trains a finished cell's run folder again to add its "
                                             "Inception FID: add --inception"]
