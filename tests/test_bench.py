"""`zoo bench` end to end on synthetic data with tiny families: outputs, provenance, the NFE sweep.

The bookkeeping (cell settings, --force, corrupt files, run folders, machines, resume after a kill,
failed cells) is in test_bench_safety.py."""
import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import bench
from zoo.bench import run_bench
from zoo.errors import ZooError

from helpers import BENCH_FAMILIES as FAMILIES, tiny_quick

PROVENANCE = {"zoo_version", "git_commit", "torch", "cpu", "threads", "budget_tflops", "n", "data",
              "reference_split", "date", "profile"}


def test_outputs_parse(finished):
    doc = json.loads((finished / "results.json").read_text())
    assert [c["family"] for c in doc["cells"]] == sorted(FAMILIES)
    for c in doc["cells"]:
        assert c["settings"]["tflops"] == 0.01 and c["settings"]["n"] == 100 and c["settings"]["tiny"] is True
        assert c["settings"]["data"] == "synthetic" and c["settings"]["features"] == "fmnist-cnn"
        assert c["fid"] >= 0 and 0 <= c["precision"] <= 1 and c["images_per_s"] > 0 and c["nfe"] >= 1
        assert c["train_tflops"] >= 0.01
    vae = next(c for c in doc["cells"] if c["family"] == "vae")
    gan = next(c for c in doc["cells"] if c["family"] == "gan")
    assert vae["bpd"] > 0 and vae["likelihood"] == "bound"
    assert gan["bpd"] is None and gan["likelihood"] == "none"
    assert doc["floor"]["fid"] < doc["ceiling"]["fid"]
    rows = list(csv.DictReader((finished / "results.csv").open()))
    assert len(rows) == 2 and {r["family"] for r in rows} == set(FAMILIES)
    md = (finished / "RESULTS.md").read_text()
    assert "test-command" in md and "| vae |" in md and "floor: real vs real" in md
    assert f"{vae['bpd']:.3f} (bound, SE {vae['bpd_sem']:.3f})" in md and vae["bpd_sem"] > 0  # the estimate's error
    assert doc["cells"][0]["provenance"]["cpu"] in md
    ws = {w["key"]: w for w in doc["winners"]}
    assert ws["fid"]["value"] == min(r["fid"] for r in doc["families"])
    assert ws["images_per_s"]["value"] == max(r["images_per_s"] for r in doc["families"])
    assert "bpd" not in ws  # only one family of the two has a likelihood: no ranking
    assert ws["nfe"]["tie"] and ws["nfe"]["winner"] == "gan, vae" and ws["nfe"]["runner_up"] is None
    assert "Best family per column" in md
    for fig in ("pareto.png", "training_curves.png", "samples-vae.png", "samples-gan.png", "interpolations.png"):
        assert (finished / "figures" / fig).stat().st_size > 0, fig


def _clone(finished, out, *, kept=True):
    """``finished`` as a fresh clone has it: no runs/; with kept=False also without what the figures
    keep of the run folders (a folder made before they were kept)."""
    import shutil
    ignore = ["runs"] + ([] if kept else ["curves", "interpolation-*.png"])
    shutil.copytree(finished, out, ignore=shutil.ignore_patterns(*ignore))
    return out / "figures"


def _merge(out, extractor):
    run_bench(tiny_quick(), FAMILIES, "synthetic", out, extractor, "test-command", log=lambda *_: None,
              tiny=True, merge=True)


def test_a_merge_without_the_run_folders_keeps_the_figures(finished, extractor, tmp_path):
    """A fresh clone has the cells and figures but not runs/: --merge there must not lose figures,
    even of cells made before the figures kept what they need of the run folders."""
    out = tmp_path / "clone"
    figs = _clone(finished, out, kept=False)
    before = {f: (figs / f).read_bytes() for f in ("training_curves.png", "interpolations.png", "samples-vae.png")}
    _merge(out, extractor)
    md = (out / "RESULTS.md").read_text()
    for f, data in before.items():
        assert (figs / f).read_bytes() == data, f                       # kept, not redrawn empty
        assert f"![figures/{f}](figures/{f})" in md, f                  # and still linked
    assert "samples-gan.png" in md and (figs / "pareto.png").exists()


def test_a_merge_keeps_a_cell_an_older_recipe_made_and_names_it(finished, extractor, tmp_path):
    """--merge trains nothing: a cell whose recorded settings differ from what the code would use now
    stays in the tables as made, with a warning, where a run that trains stops (test_resume)."""
    import shutil
    out = tmp_path / "clone"
    shutil.copytree(finished, out, ignore=shutil.ignore_patterns("runs"))
    path = out / "cells" / "gan-s0.json"
    rec = json.loads(path.read_text())
    rec["settings"]["recipe"] = {**rec["settings"]["recipe"], "train.batch_size": 3}
    path.write_text(json.dumps(rec))
    warned: list[str] = []
    run_bench(tiny_quick(), FAMILIES, "synthetic", out, extractor, "test-command", log=lambda *_: None,
              tiny=True, merge=True, warn=warned.append)
    assert json.loads(path.read_text()) == rec and sorted(p.name for p in (out / "cells").iterdir()) == \
        sorted(p.name for p in (finished / "cells").iterdir())
    assert len(warned) == 1 and warned[0].startswith(f"--merge: cell gan-s0 in {out} was made with recipe=")
    assert "kept as made (--force would redo it)" in warned[0]
    assert f"{rec['fid']:.2f}" in (out / "RESULTS.md").read_text()
    with pytest.raises(ZooError, match="cell gan-s0 .* was made with recipe=.*--force to redo it$"):
        run_bench(tiny_quick(), FAMILIES, "synthetic", out, extractor, "test-command", log=lambda *_: None, tiny=True)


def test_the_figures_are_redrawn_from_what_they_kept(finished, extractor, tmp_path):
    """Each cell's loss curve and each family's interpolation strip are kept beside the figures, so
    a fresh clone redraws the figures whole from them."""
    import shutil
    from zoo.bench.figures import cell_curves
    cells = [json.loads(p.read_text()) for p in sorted((finished / "cells").glob("[!_]*.json"))]
    own = tmp_path / "own"          # cell_curves writes the kept curves: into a copy, not the shared folder
    shutil.copytree(finished, own, symlinks=True)
    from_logs, fresh = cell_curves(own, own / "figures", cells)
    assert fresh and all(from_logs.values()) and len(from_logs) == len(cells)
    out = tmp_path / "clone"
    figs = _clone(finished, out)
    assert cell_curves(out, figs, cells) == (from_logs, False)          # the same curves, with runs/ gone
    for f in ("training_curves.png", "interpolations.png"):
        (figs / f).unlink()
    _merge(out, extractor)
    assert (figs / "training_curves.png").stat().st_size > 0
    assert (figs / "interpolations.txt").read_text() == "rows, top to bottom: vae\n"
    assert (figs / "interpolations.png").read_bytes() == (finished / "figures" / "interpolations.png").read_bytes()


def test_a_cell_made_here_redraws_a_figure_instead_of_keeping_it(finished, extractor, tmp_path):
    """A cell (re)made in a checkout that lacks the other cells' run folders and kept curves: the
    figures are redrawn with what there is, not kept showing the replaced cell's old curve or strip."""
    import shutil
    out = tmp_path / "clone"
    figs = _clone(finished, out, kept=False)
    shutil.copytree(finished / "runs" / "vae-s0", out / "runs" / "vae-s0")   # made here; the GAN's is gone
    stale = b"an old figure"
    for f in ("training_curves.png", "interpolations.png"):
        (figs / f).write_bytes(stale)
    _merge(out, extractor)
    assert (figs / "training_curves.png").read_bytes() != stale
    assert (figs / "interpolations.png").read_bytes() != stale
    assert sorted(p.name for p in (figs / "curves").iterdir()) == ["vae-s0.json"]
    # the GAN has no latent, so no strip is missing although its run folder is gone
    assert (figs / "interpolations.txt").read_text() == "rows, top to bottom: vae\n"


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_a_folder_trained_again_reproduces_every_cell(finished, extractor, tmp_path):
    """Training the same cells from scratch in another folder gives the same figures, and
    benchmarks/reproduce_cells.py says so; a figure changed beyond --rtol makes it fail, naming it."""
    again = tmp_path / "again"
    run_bench(tiny_quick(), FAMILIES, "synthetic", again, extractor, "test-command", log=lambda *_: None, tiny=True)
    script = [sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "reproduce_cells.py"),
              str(finished), str(again)]
    r = subprocess.run(script, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 cells in both" in r.stdout and "0 beyond it" in r.stdout
    weights = script + ["--weights", "--rtol", "0"]          # weights and grids identical too
    r = subprocess.run(weights, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("| identical |") == 2, r.stdout + r.stderr
    from safetensors.torch import load_file, save_file
    w = again / "runs" / "vae-s0" / "model.safetensors"    # one weight nudged: named, and a failure
    tensors = load_file(str(w))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-6
    save_file(tensors, str(w))
    r = subprocess.run(weights, capture_output=True, text=True)
    assert r.returncode == 1 and f"differ: {name}" in r.stdout, r.stdout
    p = again / "cells" / "vae-s0.json"
    rec = json.loads(p.read_text())
    rec["coverage"] = rec["coverage"] + 0.01
    p.write_text(json.dumps(rec))
    r = subprocess.run(script, capture_output=True, text=True)
    assert r.returncode == 1 and "1 beyond it" in r.stdout
    assert "coverage" in r.stdout.splitlines()[-1]   # the figures that moved anywhere
    p = again / "cells" / "gan-s0.json"               # a cell made with other settings is not the same cell
    rec = json.loads(p.read_text())
    rec["settings"]["tflops"] = 1.0
    p.write_text(json.dumps(rec))
    r = subprocess.run(script, capture_output=True, text=True)
    assert r.returncode == 1 and "2 beyond it" in r.stdout
    assert "settings: tflops=0.01, not 1" in next(line for line in r.stdout.splitlines() if line.startswith("| gan-s0 |"))
    assert next(line for line in r.stdout.splitlines() if line.startswith("| vae-s0 |")).count("| coverage |") == 1


def test_provenance_fields_present(finished):
    doc = json.loads((finished / "results.json").read_text())
    assert PROVENANCE <= set(doc["provenance"])
    for c in doc["cells"]:
        assert PROVENANCE <= set(c["provenance"])
        assert {"extractor", "weights_sha256", "n", "reference_split"} <= set(c["metrics_provenance"])
    row = next(csv.DictReader((finished / "results.csv").open()))
    assert PROVENANCE <= set(row)


def test_parse_seeds_and_errors():
    from zoo.errors import ZooError
    assert bench.parse_seeds("0,1,2") == (0, 1, 2)
    assert bench.parse_seeds("0-3") == (0, 1, 2, 3)
    with pytest.raises(ZooError):
        bench.parse_seeds("a,b")


def test_cli_rejects_unknown_family_and_missing_cuda():
    from click.testing import CliRunner
    from zoo.cli import cli
    r = CliRunner().invoke(cli, ["bench", "--families", "vae,nope", "--out", "/tmp/zoo-never"])
    assert r.exit_code == 2 and "unknown model 'nope'" in r.output
    import torch
    if not torch.cuda.is_available():
        r = CliRunner().invoke(cli, ["bench", "--profile", "gpu", "--families", "vae", "--out", "/tmp/zoo-never"])
        assert r.exit_code == 2 and "needs a CUDA device" in r.output


@pytest.mark.slow   # a whole diffusion cell: ~45 s; the sweep and bound helpers have fast unit tests
def test_diffusion_sweep_and_stratified_bound(tmp_path, extractor):
    """The NFE sweep reuses the main sample at the default step count, and the VLB honours bpd_terms."""
    prof = dataclasses.replace(tiny_quick(), sweep_steps=(2, 5), sweep_n=100, bpd_terms=3)  # tiny default: 5 steps
    out = tmp_path / "std"
    run_bench(prof, ["diffusion"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    cell = json.loads((out / "results.json").read_text())["cells"][0]
    assert cell["bpd_terms"] == 3 and cell["bpd"] > 0
    by_steps = {s["steps"]: s for s in cell["sweep"]}
    assert by_steps[5]["fid"] == cell["fid"] and by_steps[5]["nfe"] == cell["nfe"]
    assert by_steps[2]["nfe"] < cell["nfe"] and by_steps[2]["fid"] != cell["fid"]
    assert "Quality against network evaluations" in (out / "RESULTS.md").read_text()


@pytest.mark.parametrize("family", ["flow", "vqvae", "gan"])
def test_families_without_a_step_count_get_no_sweep(family):
    """flow and vqvae have no steps= (one rejects it, one ignores it), gan has no sampler steps:
    no sweep and no crash; only the diffusion bound takes terms=."""
    from helpers import tiny
    from zoo.bench.cell import takes_steps, takes_terms
    m = tiny(family)
    assert not takes_steps(m) and not takes_terms(m)
    assert takes_steps(tiny("diffusion")) and takes_terms(tiny("diffusion"))


def test_the_nfe_plot_draws_every_sampler_config(tmp_path):
    """bench_diffusion.py's FID-against-NFE plot once knew only three sampler names and silently
    left out the DPM-Solver++(2M) SDE lines; every config in the rows must get its line."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "bench_diffusion", Path(__file__).parents[1] / "benchmarks" / "bench_diffusion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [{"family": "diffusion", "sampler": s, "steps": k, "nfe": k, "fid_n500": 20.0 - k / 100}
            for s, ks in (("dpm++2m-sde@trailing", (10, 20)), ("dpm++2m", (10, 20)), ("ddim", (50,)),
                          ("ddpm", (1000,))) for k in ks]
    labels = mod.plot(rows, tmp_path / "nfe.png", "fmnist-cnn")
    assert sorted(labels) == ["diffusion ddim", "diffusion ddpm", "diffusion dpm++2m", "diffusion dpm++2m-sde@trailing"]
    assert (tmp_path / "nfe.png").stat().st_size > 0


def test_a_cell_samples_with_its_familys_sampler_settings(tmp_path, extractor, monkeypatch):
    """A family's sampler settings (here a flow temperature) are recorded in each cell (``sampler``)
    and its FID is that of samples drawn with them. A cell recorded with other ones, or before cells
    recorded a sampler, is stale; --force measures it again on its trained run folder, without
    training again. A family without sampler settings matches the cells that recorded none."""
    from zoo import load
    from zoo.bench.profiles import SAMPLE_SEED
    from zoo.bench.runner import plan_run
    from zoo.bench.settings import cell_settings
    from zoo.metrics.evaluate import evaluate
    from zoo.models.flow import Flow
    prof, out = tiny_quick(), tmp_path / "quick"
    assert Flow.sampler_settings == {"temperature": Flow.Config().temperature}   # its default: recorded as none
    assert "sampler" not in cell_settings(prof, family="flow", data="synthetic", features=extractor, tiny=True, seed=0)
    monkeypatch.setattr(Flow, "sampler_settings", {"temperature": 1.0})
    run_bench(prof, ["flow"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    cell_file, run = out / "cells" / "flow-s0.json", out / "runs" / "flow-s0"
    cell = json.loads(cell_file.read_text())
    assert cell["settings"]["sampler"] == {"temperature": 1.0} != {"temperature": Flow.Config().temperature}
    assert "`temperature=1.0`" in (out / "RESULTS.md").read_text()
    model = load(run)
    hot = evaluate(model.sample(prof.n, seed=SAMPLE_SEED, temperature=1.0), data="synthetic", features=extractor,
                   metrics=("fid",), split="test", n=prof.n)["fid"]
    assert cell["fid"] == pytest.approx(hot, rel=1e-9)

    checkpoint = (run / "model.safetensors").read_bytes()
    monkeypatch.setattr(Flow, "sampler_settings", {"temperature": 0.0})
    plan = plan_run(out, prof, [("flow", 0)], "synthetic", extractor, tiny=True)
    assert [(p.name, d) for p, d in plan.stale] == [("flow-s0.json", 'sampler={"temperature": 1.0}, not {"temperature": 0.0}')]
    assert not plan.stale_runs   # the run folder is reused: the sampler changes no training
    run_bench(prof, ["flow"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True, force=True)
    cold = json.loads(cell_file.read_text())
    assert cold["settings"]["sampler"] == {"temperature": 0.0} and cold["steps"] == cell["steps"]
    assert (run / "model.safetensors").read_bytes() == checkpoint
    summary = json.loads((run / "summary.json").read_text())   # what trained the run folder, measured again
    assert cold["train_provenance"] == cell["train_provenance"] == {"git_commit": summary["git_commit"],
                                                                    **summary["machine"]}
    assert cold["fid"] == pytest.approx(evaluate(model.sample(prof.n, seed=SAMPLE_SEED, temperature=0.0),
                                                 data="synthetic", features=extractor, metrics=("fid",),
                                                 split="test", n=prof.n)["fid"], rel=1e-9)
    assert cold["fid"] != cell["fid"]

    older = {k: v for k, v in cold["settings"].items() if k != "sampler"}   # a cell from before the key
    cold["settings"] = older
    cell_file.write_text(json.dumps(cold))
    plan = plan_run(out, prof, [("flow", 0)], "synthetic", extractor, tiny=True)
    assert [d for _, d in plan.stale] == ['no recorded sampler, not sampler={"temperature": 0.0}']
    vae = cell_settings(prof, family="vae", data="synthetic", features=extractor, tiny=True, seed=0)
    assert "sampler" not in vae   # no sampler settings: a cell from before the key matches
