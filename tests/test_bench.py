"""`zoo bench` end to end on synthetic data with two tiny families: outputs, provenance, resume."""
import csv
import dataclasses
import json

import pytest

from zoo import bench
from zoo.bench import PROFILES, run_bench

FAMILIES = ["vae", "gan"]
PROVENANCE = {"zoo_version", "git_commit", "torch", "cpu", "threads", "budget_tflops", "n", "data",
              "reference_split", "date", "profile"}


@pytest.fixture(scope="module")
def extractor():
    from zoo.metrics.features import get_extractor
    return get_extractor("fmnist-cnn", data="fashion-mnist")  # the packaged classifier, used on synthetic shapes


def tiny_quick():
    return dataclasses.replace(PROFILES["quick"], tflops=0.01, n=100, bpd_images=50, probe_seconds=0.2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, extractor):
    out = tmp_path_factory.mktemp("bench") / "quick"
    run_bench(tiny_quick(), FAMILIES, "synthetic", out, extractor, "test-command", log=lambda *_: None, tiny=True)
    return out


def test_outputs_parse(finished):
    doc = json.loads((finished / "results.json").read_text())
    assert [c["family"] for c in doc["cells"]] == sorted(FAMILIES)
    for c in doc["cells"]:
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
    ws = {w["key"]: w for w in doc["winners"]}
    assert ws["fid"]["value"] == min(r["fid"] for r in doc["families"])
    assert ws["images_per_s"]["value"] == max(r["images_per_s"] for r in doc["families"])
    assert "bpd" not in ws  # only one family of the two has a likelihood: no ranking
    assert ws["nfe"]["tie"] and ws["nfe"]["winner"] == "gan, vae" and ws["nfe"]["runner_up"] is None
    assert "Best family per column" in md
    for fig in ("pareto.png", "training_curves.png", "samples-vae.png", "samples-gan.png", "interpolations.png"):
        assert (finished / "figures" / fig).stat().st_size > 0, fig


def test_provenance_fields_present(finished):
    doc = json.loads((finished / "results.json").read_text())
    assert PROVENANCE <= set(doc["provenance"])
    for c in doc["cells"]:
        assert PROVENANCE <= set(c["provenance"])
        assert {"extractor", "weights_sha256", "n", "reference_split"} <= set(c["metrics_provenance"])
    row = next(csv.DictReader((finished / "results.csv").open()))
    assert PROVENANCE <= set(row)


def _step_tflops(family):
    """Training TFLOP of one default-batch step of the tiny family (all phases)."""
    import torch
    from helpers import tiny
    from zoo.perf import count_flops
    from zoo.images import to_float
    from zoo.data import load_dataset
    m = tiny(family)
    x = to_float(load_dataset("synthetic").images[:128])

    def step():
        for p in next(iter(m.stage_plan().values())):
            m.loss(x, phase=p)["loss"].backward()
    return count_flops(step)[0] / 1e12


def test_resume_after_kill(tmp_path, extractor, monkeypatch):
    """Kill the run inside the second cell's training; the rerun skips the finished first cell
    and resumes the second from its checkpoint, ending with the full budget."""
    from zoo import train as train_mod
    out = tmp_path / "quick"
    prof = dataclasses.replace(tiny_quick(), tflops=12 * _step_tflops("gan"))
    real_fit = train_mod.fit
    calls = []

    def fit_killed_in_gan(model, images, labels, out_dir, tcfg, **kw):
        calls.append(model.name)
        if model.name != "gan" or kw.get("resume"):
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
    monkeypatch.setattr(train_mod, "fit", fit_killed_in_gan)
    with pytest.raises(KeyboardInterrupt):
        run_bench(prof, FAMILIES, "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    assert not (out / "cells" / "gan-s0.json").exists()
    assert (out / "runs" / "gan-s0" / "checkpoint.safetensors").exists()
    done_vae = (out / "cells" / "vae-s0.json").read_text()
    assert [c["family"] for c in json.loads((out / "results.json").read_text())["cells"]] == ["vae"]

    calls.clear()
    lines = []
    run_bench(prof, FAMILIES, "synthetic", out, extractor, "cmd", log=lines.append, tiny=True)
    assert any("vae seed 0: done already" in line for line in lines)
    assert any("resuming" in line for line in lines)
    assert calls == ["gan"]
    assert (out / "cells" / "vae-s0.json").read_text() == done_vae
    summary = json.loads((out / "runs" / "gan-s0" / "summary.json").read_text())
    assert summary["train_tflops"] >= prof.tflops and summary["steps"] >= 12
    assert {c["family"] for c in json.loads((out / "results.json").read_text())["cells"]} == set(FAMILIES)


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


def test_diffusion_sweep_and_stratified_bound(tmp_path, extractor):
    """The NFE sweep reuses the main sample at the default step count, and the VLB honours bpd_terms."""
    prof = dataclasses.replace(tiny_quick(), sweep_steps=(2, 5), sweep_n=100, bpd_terms=3)  # tiny default: 5 steps
    out = tmp_path / "std"
    # flow and vqvae have no steps= (one rejects it, one ignores it): no sweep, and no crash
    run_bench(prof, ["diffusion", "flow", "vqvae"], "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    cells = {c["family"]: c for c in json.loads((out / "results.json").read_text())["cells"]}
    assert cells["flow"]["sweep"] == [] and cells["vqvae"]["sweep"] == []
    assert cells["flow"].get("bpd_terms") is None
    cell = cells["diffusion"]
    assert cell["bpd_terms"] == 3 and cell["bpd"] > 0
    by_steps = {s["steps"]: s for s in cell["sweep"]}
    assert by_steps[5]["fid"] == cell["fid"] and by_steps[5]["nfe"] == cell["nfe"]
    assert by_steps[2]["nfe"] < cell["nfe"] and by_steps[2]["fid"] != cell["fid"]
    assert "Quality against network evaluations" in (out / "RESULTS.md").read_text()


def test_failed_cell_does_not_stop_the_others(tmp_path, extractor, monkeypatch):
    real = bench.run_cell

    def flaky(family, *a, **k):
        if family == "gan":
            raise RuntimeError("boom")
        return real(family, *a, **k)
    monkeypatch.setattr(bench, "run_cell", flaky)
    out = tmp_path / "q"
    with pytest.raises(bench.ZooError, match="1 of 2 cells failed.*gan seed 0: RuntimeError: boom"):
        run_bench(tiny_quick(), FAMILIES, "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    assert (out / "cells" / "vae-s0.json").exists() and not (out / "cells" / "gan-s0.json").exists()
    assert "RuntimeError: boom" in (out / "cells" / "gan-s0.failed.txt").read_text()
    monkeypatch.setattr(bench, "run_cell", real)  # the re-run retries only the failed cell
    run_bench(tiny_quick(), FAMILIES, "synthetic", out, extractor, "cmd", log=lambda *_: None, tiny=True)
    assert (out / "cells" / "gan-s0.json").exists() and not (out / "cells" / "gan-s0.failed.txt").exists()
