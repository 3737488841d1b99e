"""`zoo bench --profile scaling`: a bench folder per budget, the reused standard cells, the power-law
fit and the crossings. Cells train for real (one step of a tiny family) with canned measurements,
as in test_bench_safety."""
import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.bench import PROFILES, run_bench
from zoo.bench.scaling import budget_profile, crossings, fit_power_law, run_scaling, within_noise, write_scaling
from zoo.bench.tables import winners, winners_table
from zoo.errors import ZooError

from helpers import faked

FAMILIES = ["vae", "gan"]
PROF = dataclasses.replace(PROFILES["scaling"], n=100, budgets=(1e-6, 2e-6, 4e-6))
ZOO = str(Path(sys.executable).parent / "zoo")


def test_power_law_fit_recovers_a_and_b():
    floor = 0.5
    pts = [{"tflops": c, "fid": floor + 40.0 * c ** -0.35} for c in (1, 3, 10, 30, 100)]
    f = fit_power_law(pts, floor)
    assert f["b"] == pytest.approx(0.35, abs=1e-9) and f["a"] == pytest.approx(40.0, rel=1e-9)
    assert f["r2"] == pytest.approx(1.0) and f["points"] == 5
    two = fit_power_law(pts[:2], floor)
    assert two["b"] == pytest.approx(0.35, abs=1e-9) and two["b_se"] is None
    assert fit_power_law(pts[:1], floor) is None
    assert fit_power_law([{"tflops": 1, "fid": 0.4}, {"tflops": 2, "fid": 0.3}], floor) is None  # below the floor


def test_crossings_name_the_budgets_where_the_order_flips():
    pts = [{"family": "a", "tflops": 1, "fid": 30}, {"family": "b", "tflops": 1, "fid": 40},
           {"family": "a", "tflops": 10, "fid": 20}, {"family": "b", "tflops": 10, "fid": 15},
           {"family": "c", "tflops": 1, "fid": 50}]
    assert crossings(pts, [1, 10]) == ["b overtakes a between 1 and 10 TFLOP"]
    assert crossings(pts[:2], [1, 10]) == []


def test_crossings_and_winner_say_when_the_gap_is_inside_the_seed_noise():
    pts = [{"family": "a", "tflops": 1, "fid": 30}, {"family": "b", "tflops": 1, "fid": 40},
           {"family": "a", "tflops": 10, "fid": 13.1, "fid_std": 0.8},
           {"family": "b", "tflops": 10, "fid": 12.9, "fid_std": 0.5}]
    assert within_noise(pts[2], pts[3]) is True and within_noise(pts[0], pts[1]) is None  # one seed: no std, no claim
    assert within_noise(pts[2], {"fid": 20}) is None                   # one of the two without a std: unknown
    assert within_noise({"fid": 10, "fid_std": 0.5}, {"fid": 12, "fid_std": 0.5}) is False
    # the larger std decides, as in the bench tables' winner column (a root-mean-square, 1.76, would not)
    assert within_noise({"fid": 10.55, "fid_std": 2.45}, {"fid": 12.85, "fid_std": 0.47}) is True
    assert crossings(pts, [1, 10]) == ["b overtakes a between 1 and 10 TFLOP (at 10 TFLOP the gap is inside the seed std)"]


def test_bench_winner_column_applies_the_same_rule():
    def row(fam, fid, std):
        return {"family": fam, "fid": fid, "fid_std": std}
    fid = lambda rows: next(w for w in winners(rows) if w["key"] == "fid")
    assert fid([row("vae_gan", 10.55, 2.45), row("latent", 12.85, 0.47)])["within_seed_spread"] is True
    assert fid([row("a", 10.0, 0.5), row("b", 12.0, 0.5)])["within_seed_spread"] is False
    # a row without a std beside one with a std counts as 0
    assert fid([row("a", 10.0, None), row("b", 10.4, 0.3)])["within_seed_spread"] is False
    assert fid([row("a", 10.0, None), row("b", 10.4, 0.5)])["within_seed_spread"] is True
    # one seed each: no spread to judge the margin by, and the table says so rather than "no"
    w = fid([row("a", 10.0, None), row("b", 10.4, None)])
    assert w["winner"] == "a" and w["within_seed_spread"] is None and w["margin"] == pytest.approx(0.4)
    assert "| a | 10 | b | 10.4 | 0.4 (4%) | — (one seed) |" in winners_table([w])


@pytest.fixture()
def reused(tmp_path, monkeypatch):
    """A 'standard' folder at the middle budget with seeds 0 and 1 (canned measurements)."""
    calls = []
    with faked(calls, monkeypatch):
        std = dataclasses.replace(budget_profile(PROF, 2e-6), name="standard", seeds=(0, 1), sweep_steps=(10,))
        run_bench(std, FAMILIES, "synthetic", tmp_path / "standard", "fmnist-cnn", "cmd", log=lambda s: None, tiny=True)
        yield tmp_path, calls


def test_scaling_runs_each_budget_and_reuses_the_standard_cells(reused):
    tmp_path, calls = reused
    out = tmp_path / "scaling"
    calls.clear()
    run_scaling(PROF, FAMILIES, "synthetic", out, "fmnist-cnn", "cmd", reuse=tmp_path / "standard", tiny=True,
                log=lambda s: None)
    assert sorted(calls) == sorted(f"{f}-s0" for f in FAMILIES for _ in range(2))   # two budgets trained
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["1e-06tf", "4e-06tf", "figures"]
    doc = json.loads((out / "scaling.json").read_text())
    mid = [p for p in doc["points"] if p["tflops"] == 2e-6]
    assert len(mid) == 2 and all(p["seeds"] == [0, 1] and p["fid_std"] is not None for p in mid)
    assert {p["tflops"] for p in doc["points"]} == {1e-6, 2e-6, 4e-6}
    for fam in FAMILIES:
        assert doc["fits"][fam]["points"] == 3 and math.isfinite(doc["fits"][fam]["b"])
    md = (out / "SCALING.md").read_text()
    assert "FID − floor ≈ a · C^(−b)" in md and "| vae |" in md and "figures/scaling.png" in md
    assert (out / "figures" / "scaling.png").stat().st_size > 0
    assert "| 2 of 2 |" in md                                           # every family measured at each budget
    # the two-seed budget says whether the winner's lead is inside the seed std; one-seed budgets cannot
    assert re.search(r"\| 2e-06 \| \w+ \| [\d.]+ \| \w+ \| [\d.]+ \| (yes|no) \| 2 of 2 \|", md), md
    assert re.search(r"\| 1e-06 \| \w+ \| [\d.]+ \| \w+ \| [\d.]+ \| — \| 2 of 2 \|", md), md
    (out / "4e-06tf" / "cells" / "gan-s0.json").unlink()                # a budget not finished for every family:
    write_scaling(out, PROF, FAMILIES, "cmd", reuse=tmp_path / "standard", reuse_at=2e-6)
    md = (out / "SCALING.md").read_text()
    assert "| 4e-06 | vae |" in md and "| 1 of 2 (not gan) |" in md     # its winner is only among those measured
    calls.clear()
    run_scaling(PROF, FAMILIES, "synthetic", out, "fmnist-cnn", "cmd", reuse=tmp_path / "standard", tiny=True,
                log=lambda s: None)
    assert calls == ["gan-s0"]                                          # resumed: only the removed cell is redone


def test_beside_sets_another_scaling_folder_beside_this_one(reused):
    import shutil
    tmp_path, calls = reused
    fixed = tmp_path / "fixed"
    run_scaling(PROF, FAMILIES, "synthetic", fixed, "fmnist-cnn", "cmd", reuse=tmp_path / "standard", tiny=True,
                log=lambda s: None)
    fitted = tmp_path / "fitted"
    shutil.copytree(fixed, fitted)
    (fitted / "1e-06tf" / "cells" / "vae-s0.json").unlink()   # the two folders differ in one point
    theirs = json.loads((fixed / "scaling.json").read_text())
    write_scaling(fitted, dataclasses.replace(PROF, sizes="fitted"), FAMILIES, "cmd", reuse=tmp_path / "standard",
                  reuse_at=2e-6, beside=fixed)
    md = (fitted / "SCALING.md").read_text()
    assert f"## Beside `{fixed}` (default sizes)" in md and "trained at its fitted sizes" in md
    vae_fixed = {p["tflops"]: p for p in theirs["points"] if p["family"] == "vae"}
    rows = [line for line in md.splitlines() if line.startswith(("| vae | fitted sizes |", "| | default sizes |"))]
    mine, other = rows[0].split(" | "), rows[1].split(" | ")   # the vae row, then the default-size row below it
    assert mine[2] == "—" and other[2].startswith(f"{vae_fixed[1e-6]['fid']:.2f} (")   # 1e-06 TFLOP: theirs only
    assert f"({vae_fixed[4e-6]['params']:,.0f})" in other[4] and other[-1].startswith(f"{theirs['fits']['vae']['b']:.3f}")
    doc = json.loads((fitted / "scaling.json").read_text())
    assert doc["beside"] == str(fixed)
    write_scaling(fitted, PROF, FAMILIES, "cmd", reuse=tmp_path / "standard", reuse_at=2e-6)   # no beside: kept
    assert f"## Beside `{fixed}`" in (fitted / "SCALING.md").read_text()
    write_scaling(fixed, PROF, FAMILIES, "cmd", reuse=tmp_path / "standard", reuse_at=2e-6)
    assert "## Beside" not in (fixed / "SCALING.md").read_text()   # nothing set beside where none was asked
    with pytest.raises(ZooError, match="not a scaling folder"):
        run_scaling(PROF, FAMILIES, "synthetic", tmp_path / "s", "fmnist-cnn", "cmd", beside=tmp_path / "standard",
                    tiny=True, log=lambda s: None)
    assert not (tmp_path / "s").exists()


def test_reuse_takes_cells_that_also_carry_an_inception_fid(reused):
    """A standard cell topped up with `--inception` still gives its budget's point: one metric more."""
    tmp_path, calls = reused
    cell = tmp_path / "standard" / "cells" / "vae-s0.json"
    rec = json.loads(cell.read_text())
    rec["settings"]["inception_n"] = 100
    rec["fid_inception"] = 42.0
    cell.write_text(json.dumps(rec))
    out = tmp_path / "scaling"
    run_scaling(PROF, FAMILIES, "synthetic", out, "fmnist-cnn", "cmd", reuse=tmp_path / "standard", tiny=True,
                log=lambda s: None)
    mid = [p for p in json.loads((out / "scaling.json").read_text())["points"] if p["tflops"] == 2e-6]
    assert sorted(p["family"] for p in mid) == sorted(FAMILIES)
    assert next(p for p in mid if p["family"] == "vae")["fid"] != 42.0   # the fmnist-cnn FID, not Inception's


def test_reuse_refuses_cells_made_with_other_settings(reused):
    tmp_path, calls = reused
    other = dataclasses.replace(PROF, n=90)
    with pytest.raises(ZooError, match="was made with n=100, not 90"):
        run_scaling(other, FAMILIES, "synthetic", tmp_path / "s", "fmnist-cnn", "cmd", reuse=tmp_path / "standard",
                    tiny=True, log=lambda s: None)
    with pytest.raises(ZooError, match="has no flow cell at seed 0"):
        run_scaling(PROF, FAMILIES + ["flow"], "synthetic", tmp_path / "s", "fmnist-cnn", "cmd",
                    reuse=tmp_path / "standard", tiny=True, log=lambda s: None)
    assert not (tmp_path / "s").exists()


def test_cli_refuses_tflops_and_misplaced_reuse(tmp_path):
    r = subprocess.run([ZOO, "bench", "--profile", "scaling", "--tflops", "3", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--tflops does not apply" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([ZOO, "bench", "--profile", "quick", "--reuse", str(tmp_path), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--reuse is for the scaling profile" in r.stderr
    r = subprocess.run([ZOO, "bench", "--profile", "quick", "--beside", str(tmp_path), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--beside is for the scaling profile" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([ZOO, "bench", "--profile", "scaling", "--beside", str(tmp_path), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a scaling folder" in r.stderr and not (tmp_path / "x").exists()
