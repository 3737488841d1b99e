"""The size axis (zoo.sizing, Generator.size_fields) and `zoo bench --profile isoflop`: every network
of a family grows together, size 1 is exactly today's model, a parameter scale finds its width, and
the IsoFLOP fits recover known minima and exponents. Bench cells train for real (one step of a tiny
family) with canned measurements, as in test_scaling."""
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.api import build_model, get_model_class, recipe_model, split_recipe
from zoo.bench import PROFILES
from zoo.bench.isoflop import fit_minimum, fit_size_rule, folder, run_isoflop, write_isoflop
from zoo.bench.settings import cell_settings, recipe
from zoo.errors import ZooError
from zoo.sizing import (fitted_param_scale, fitted_params, params_at, scale_depth, scale_width, size_for_params,
                        size_overrides, sized_model)
from zoo.train.run import plan_train

from helpers import faked

ZOO = str(Path(sys.executable).parent / "zoo")
ISOFLOP = Path(__file__).parents[1] / "results" / "isoflop" / "isoflop.json"   # the committed sweep
SIZED = [f for f in zoo.list_models() if get_model_class(f).size_fields]
DEEP = [f for f in zoo.list_models() if get_model_class(f).depth_fields]
# the networks of each family that the size axis must grow together (attribute names on the model)
NETWORKS = {"gan": ("gen", "disc"), "vae_gan": ("decoder", "disc"), "latent_diffusion": ("encoder", "unet"),
            "vqvae": ("encoder", "prior")}


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_family_of_the_default_bench_has_a_size_axis():
    bench = [f for f in zoo.list_models() if get_model_class(f).in_default_bench]
    assert sorted(bench) == sorted(SIZED)


def test_scale_width_rounds_to_multiples_and_never_below_one():
    assert scale_width((16, 32, 64), 2.0, 4) == (32, 64, 128)
    assert scale_width((16, 32, 64), 0.7, 4) == (12, 24, 44)
    assert scale_width(48, 0.01, 4) == 4
    assert scale_width(32, 1.5, 8) == 48


@pytest.mark.parametrize("family", SIZED)
def test_size_one_is_the_default_model_and_size_two_is_wider_everywhere(family):
    cls = get_model_class(family)
    assert size_overrides(cls, 1.0) == {}
    wide = size_overrides(cls, 2.0)
    assert set(wide) == set(cls.size_fields)
    for f, v in wide.items():   # every width field doubled (to its rounding multiple)
        base = getattr(cls.Config(), f)
        pairs = zip(v, base) if isinstance(v, tuple) else [(v, base)]
        assert all(abs(a - 2 * b) <= cls.size_fields[f] for a, b in pairs), (f, v, base)
    assert sized_model(family, 10.0, 1.0).num_params() == recipe_model(family, 10.0).num_params()
    small, big = build_model(family, (1, 28, 28), {}), build_model(family, (1, 28, 28), _sets(wide))
    assert _params(big) > 1.5 * _params(small)
    for net in NETWORKS.get(family, ()):   # each of the family's networks grows, not just one of them
        assert _params(getattr(big, net)) > 1.5 * _params(getattr(small, net)), net


def _sets(overrides: dict) -> dict:
    return {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in overrides.items()}


@pytest.mark.parametrize("family", ["vae", "pixel_gpt", "flow"])
def test_size_for_params_lands_near_the_asked_parameter_count(family):
    base = params_at(family, 1.0, 1.0)
    counts = []
    for scale in (0.2, 0.45, 2.2, 5.0):
        s = size_for_params(family, scale, 1.0)
        counts.append(params_at(family, s, 1.0))
        assert abs(math.log(counts[-1] / (scale * base))) < math.log(1.3), (scale, s, counts[-1], base)
    assert counts == sorted(counts) and counts[-1] / counts[0] >= 16   # the isoflop span, after rounding
    assert size_for_params(family, 1.0, 1.0) == 1.0


def test_bad_sizes_and_families_without_a_size_axis_are_one_line_errors():
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ZooError, match="size must be a finite number > 0"):
            size_overrides(get_model_class("vae"), bad)
    with pytest.raises(ZooError, match="has no size axis"):
        size_overrides(get_model_class("cascade"), 2.0)
    assert size_overrides(get_model_class("cascade"), 1.0) == {}


def test_a_cell_at_a_parameter_scale_records_the_widths_in_its_recipe():
    rec = recipe("vae", 10.0, False, 2.2)
    s = size_for_params("vae", 2.2, 10.0)
    assert rec == {**get_model_class("vae").recipe(10.0), **size_overrides(get_model_class("vae"), s)}
    assert recipe("vae", 10.0, False, 1.0) == get_model_class("vae").recipe(10.0)   # size-1 cells are unchanged
    tiny = recipe("gan", 1.0, True, 2.2)          # the tiny config's widths, scaled
    assert set(tiny) == {"g_widths", "d_widths"}


def test_train_at_a_size_builds_the_wider_config(tmp_path):
    zoo.train("gan", tmp_path / "r", data="synthetic", steps=1, size=2.0, batch_size=4,
              sets=["latent_dim=4"], progress=False)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert tuple(cfg["g_widths"]) == (128, 64, 32) and tuple(cfg["d_widths"]) == (64, 128)
    assert cfg["latent_dim"] == 4   # the user's --set keeps its own value


# ---- the depth axis ------------------------------------------------------------------------------
def test_scale_depth_rounds_half_up_and_keeps_the_least_count():
    assert [scale_depth(8, d, 1) for d in (0.25, 0.5, 2.0)] == [2, 4, 16]
    assert scale_depth(3, 0.5, 1) == 2 and scale_depth(1, 0.1, 1) == 1 and scale_depth(1, 0.1, 0) == 0


@pytest.mark.parametrize("family", DEEP)
def test_depth_multiplies_every_block_count_and_the_parameters_follow(family):
    cls = get_model_class(family)
    assert size_overrides(cls, 1.0, depth=1.0) == {}
    deep = size_overrides(cls, 1.0, depth=2.0)
    assert set(deep) == set(cls.depth_fields)
    assert all(v == 2 * getattr(cls.Config(), f) for f, v in deep.items()), deep
    assert params_at(family, 1.0, 1.0, depth=2.0) > params_at(family, 1.0, 1.0)
    both = size_overrides(cls, 2.0, depth=2.0)   # the two axes together: the widths of size 2, the counts of depth 2
    assert both == {**size_overrides(cls, 2.0), **deep}


def test_families_without_a_depth_axis_refuse_a_depth_and_bad_depths_are_one_line_errors():
    with pytest.raises(ZooError, match="family 'gan' has no depth axis"):
        size_overrides(get_model_class("gan"), 1.0, depth=0.5)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ZooError, match="depth must be a finite number > 0"):
            size_overrides(get_model_class("flow"), 1.0, depth=bad)


def test_a_shallower_flow_reaches_a_scale_below_its_width_floor():
    """At depth 1 every coupling width bottoms out (multiples of 4) above 0.05x of the default flow's
    parameters; at a quarter of its steps the width search lands near 0.05x."""
    base = params_at("flow", 1.0, 1.0)
    floor = params_at("flow", size_for_params("flow", 0.05, 1.0), 1.0)
    shallow = params_at("flow", size_for_params("flow", 0.05, 1.0, depth=0.25), 1.0, depth=0.25)
    assert floor > 0.065 * base
    assert abs(math.log(shallow / (0.05 * base))) < math.log(1.3), (shallow, base)
    assert size_for_params("flow", 1.0, 1.0, depth=0.5) > 1.0   # scale 1 at half depth: wider, to the same count


def test_isoflop_at_a_depth_runs_its_own_folder_and_the_tables_take_it(tmp_path, monkeypatch):
    calls = []
    out = tmp_path / "iso"
    with faked(calls, monkeypatch):
        run_isoflop(PROF, ["pixel_gpt"], "synthetic", out, "fmnist-cnn", "cmd", tiny=True, log=lambda s: None)
        run_isoflop(dataclasses.replace(PROF, param_scales=(1.0,), depth=2.0), ["pixel_gpt"], "synthetic", out,
                    "fmnist-cnn", "cmd", tiny=True, log=lambda s: None)
    assert calls == ["pixel_gpt-s0"] * 4
    where = folder(out, 1e-6, 1.0, 2.0)
    assert where.name == "p1-d2"
    cell = json.loads((where / "cells" / "pixel_gpt-s0.json").read_text())
    assert cell["settings"]["depth"] == 2.0
    cfg = json.loads((where / "runs" / "pixel_gpt-s0" / "config.json").read_text())["config"]
    assert cfg["n_layers"] == 2 * get_model_class("pixel_gpt").tiny_config().n_layers
    doc = json.loads((out / "isoflop.json").read_text())   # one curve of FID against parameters, at any depth
    assert sorted((p["param_scale"], p["depth"]) for p in doc["points"]) == [(0.45, 1.0), (1.0, 1.0), (1.0, 2.0),
                                                                            (2.2, 1.0)]
    assert doc["minima"]["pixel_gpt"]["1e-06"]["points"] == 4
    assert "4 sizes (0.45, 1, 1 at depth 2, 2.2 times" in (out / "ISOFLOP.md").read_text()


# ---- the IsoFLOP fits ---------------------------------------------------------------------------
def _pts(vertex_log_n: float, budget: float = 1.0, logs=(4.0, 4.5, 5.0, 5.5, 6.0)):
    return [{"params": 10 ** x, "fid": 3.0 * (x - vertex_log_n) ** 2 + 10.0, "param_scale": i, "tflops": budget}
            for i, x in enumerate(logs)]


def test_fit_minimum_finds_an_interior_vertex_and_names_an_edge():
    m = fit_minimum(_pts(4.8))
    assert m["interior"] and m["edge"] is None
    assert math.log10(m["n_opt"]) == pytest.approx(4.8, abs=1e-9) and m["fid_opt"] == pytest.approx(10.0)
    assert m["best_tried_params"] == pytest.approx(10 ** 5.0)
    low = fit_minimum(_pts(3.0))        # still falling at the smallest size tried
    assert not low["interior"] and low["edge"] == "small" and low["n_opt"] == pytest.approx(1e4)
    high = fit_minimum(_pts(7.0))
    assert not high["interior"] and high["edge"] == "large"
    assert fit_minimum(_pts(4.8)[:2]) is None
    # a vertex inside the range, pulled there by far points while the best size tried is the smallest,
    # is an edge: the range has to grow
    skew = [{"params": 10 ** x, "fid": f, "param_scale": i, "tflops": 1.0}
            for i, (x, f) in enumerate(zip((4.0, 4.5, 5.0, 5.5, 6.0), (20.0, 20.5, 23.0, 30.0, 45.0)))]
    m = fit_minimum(skew)
    assert not m["interior"] and m["edge"] == "small" and m["n_opt"] == pytest.approx(1e4)


def test_fit_size_rule_recovers_the_exponent_and_needs_three_budgets_for_its_se():
    # N_opt = 10^4.5 * C^0.5 at C = 1, 3, 10, with a little scatter so that the SE is finite
    minima = {c: fit_minimum(_pts(4.5 + 0.5 * math.log10(c) + d, c)) for c, d in ((1, 0.0), (3, 0.01), (10, -0.005))}
    r = fit_size_rule(minima)
    assert r["a"] == pytest.approx(0.5, abs=0.03) and r["budgets"] == 3 and 0 < r["a_se"] < 0.05
    two = fit_size_rule({1: minima[1], 10: minima[10]})
    assert two["a"] == pytest.approx(0.495, abs=1e-6) and two["a_se"] is None
    assert fit_size_rule({1: minima[1], 3: fit_minimum(_pts(3.0, 3))}) is None   # an edge minimum does not count


# ---- the profile ---------------------------------------------------------------------------------
PROF = dataclasses.replace(PROFILES["isoflop"], n=100, budgets=(1e-6,), param_scales=(0.45, 1.0, 2.2))


def test_isoflop_runs_a_folder_per_budget_and_size_and_resumes(tmp_path, monkeypatch):
    calls = []
    out = tmp_path / "iso"
    with faked(calls, monkeypatch):
        run_isoflop(PROF, ["gan"], "synthetic", out, "fmnist-cnn", "cmd", tiny=True, log=lambda s: None)
        assert calls == ["gan-s0"] * 3
        params = []
        for s in PROF.param_scales:
            cell = json.loads((folder(out, 1e-6, s) / "cells" / "gan-s0.json").read_text())
            assert cell["settings"].get("param_scale", 1.0) == s
            cfg = json.loads((folder(out, 1e-6, s) / "runs" / "gan-s0" / "config.json").read_text())["config"]
            params.append(cell["params"])
            assert tuple(cfg["g_widths"]) == tuple(recipe("gan", 1e-6, True, s).get("g_widths", (16, 8, 8)))
        assert params == sorted(params) and params[-1] > 3 * params[0]
        doc = json.loads((out / "isoflop.json").read_text())
        assert len(doc["points"]) == 3 and doc["minima"]["gan"]["1e-06"]["points"] == 3
        md = (out / "ISOFLOP.md").read_text()
        assert "## The best size at each budget" in md and "figures/isoflop-gan.png" in md
        assert (out / "figures" / "isoflop-gan.png").stat().st_size > 0 and (out / "figures" / "isoflop.png").exists() and (out / "figures" / "isoflop-cost.png").exists()
        calls.clear()
        (folder(out, 1e-6, 2.2) / "cells" / "gan-s0.json").unlink()
        run_isoflop(PROF, ["gan"], "synthetic", out, "fmnist-cnn", "cmd", tiny=True, log=lambda s: None)
        assert calls == ["gan-s0"]    # resumed: only the removed cell is redone
        calls.clear()                 # extended below the smallest size: the tables take every scale run
        run_isoflop(dataclasses.replace(PROF, param_scales=(0.2,)), ["gan"], "synthetic", out, "fmnist-cnn", "cmd",
                    tiny=True, log=lambda s: None)
        assert calls == ["gan-s0"]
        write_isoflop(out, PROF, ["gan"], "cmd")
        doc = json.loads((out / "isoflop.json").read_text())
        assert sorted(p["param_scale"] for p in doc["points"]) == [0.2, 0.45, 1.0, 2.2]
        assert doc["minima"]["gan"]["1e-06"]["points"] == 4
        # speeds measured by zoo bench speed replace the cell's own in the cost columns, marked †
        (folder(out, 1e-6, 1.0) / "speed.json").write_text(json.dumps({"rows": [{"family": "gan", "images_per_s": 123.0}]}))
        write_isoflop(out, PROF, ["gan"], "cmd")
        pts = {p["param_scale"]: p for p in json.loads((out / "isoflop.json").read_text())["points"]}
        assert pts[1.0]["images_per_s"] == 123.0 and pts[0.45]["images_per_s"] == 100.0   # the canned cell's
        assert "| 123.0† |" in (out / "ISOFLOP.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--profile", "isoflop", "--families", "cascade"], "needs a size axis; cascade has none"),
    (["--profile", "isoflop", "--param-scale", "2"], "--param-scale does not apply"),
    (["--profile", "standard", "--budgets", "1,3"], "--budgets is for the profiles with several budgets"),
    (["--profile", "isoflop", "--budgets", "1,x"], "bad --budgets '1,x'"),
    (["--profile", "quick", "--param-scale", "0"], "--param-scale must be a finite number > 0"),
    (["--profile", "standard", "--param-scales", "0.1"], "--param-scales is for the isoflop profile"),
    (["--profile", "isoflop", "--param-scales", "0,1"], "bad --param-scales '0,1'"),
    (["--profile", "isoflop", "--families", "gan", "--depth", "0.5"], "--depth needs a depth axis; gan has none"),
    (["--profile", "quick", "--families", "flow", "--depth", "0"], "--depth must be a finite number > 0"),
    (["--profile", "isoflop", "--sizes", "fitted"], "--sizes fitted does not apply"),
    (["--profile", "scaling", "--sizes", "best"], "Invalid value for '--sizes'"),
])
def test_cli_refuses_bad_size_requests_in_one_line(tmp_path, args, message):
    r = subprocess.run([ZOO, "bench", *args, "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


def test_cli_train_and_list_take_a_size(tmp_path):
    r = subprocess.run([ZOO, "train", "vae", "--size", "0", "--steps", "1", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "size must be a finite number > 0" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([ZOO, "list", "--json", "--size", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {x["family"]: x["params"] for x in json.loads(r.stdout)}
    assert set(rows) == set(SIZED) and rows["vae"] == sized_model("vae", 10.0, 2.0).num_params()
    r = subprocess.run([ZOO, "list", "--json", "--depth", "0.5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {x["family"]: x["params"] for x in json.loads(r.stdout)}
    assert set(rows) == set(DEEP) and rows["flow"] == sized_model("flow", 10.0, depth=0.5).num_params()
    r = subprocess.run([ZOO, "train", "gan", "--depth", "0.5", "--steps", "1", "--out", str(tmp_path / "g")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "family 'gan' has no depth axis" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "g").exists()


def test_the_size_rules_are_the_ones_the_committed_isoflop_sweep_fitted():
    rules = json.loads(ISOFLOP.read_text())["size_rules"]
    assert set(rules) <= set(SIZED)
    for fam in SIZED:   # a rule is taken once three budgets give its exponent a standard error
        mine, fit = get_model_class(fam).size_rule, rules.get(fam)
        fit = fit if fit and fit["budgets"] >= 3 and fit["a_se"] is not None else None
        assert (mine is None) == (fit is None), fam
        if fit is not None:
            assert mine == pytest.approx((fit["a"], fit["c"]), abs=5e-4), fam


def test_a_fitted_size_follows_its_rule_and_a_family_without_one_refuses(monkeypatch):
    fam = next(f for f in SIZED if get_model_class(f).size_rule is not None)
    a, c = get_model_class(fam).size_rule
    for t in (1.0, 30.0):
        n_opt = fitted_params(fam, t)
        assert n_opt == pytest.approx(10 ** (c + a * math.log10(t)))
        n = params_at(fam, size_for_params(fam, fitted_param_scale(fam, t), t), t)
        assert abs(math.log(n / n_opt)) < math.log(1.3), (fam, t, n, n_opt)   # widths round to multiples
    monkeypatch.setattr(get_model_class("gan"), "size_rule", None)
    with pytest.raises(ZooError, match="'gan' has no fitted size rule"):
        fitted_param_scale("gan", 10.0)


def test_sizes_fitted_trains_each_cell_and_run_at_its_budgets_fitted_size(tmp_path):
    fam = next(f for f in SIZED if get_model_class(f).size_rule is not None)
    prof = dataclasses.replace(PROFILES["scaling"], tflops=30.0, sizes="fitted")
    s = cell_settings(prof, family=fam, data="synthetic", features="fmnist-cnn", tiny=False, seed=0)
    size = size_for_params(fam, fitted_param_scale(fam, 30.0), 30.0)
    assert size != 1 and s["recipe"] == json.loads(json.dumps(recipe(fam, 30.0, False, fitted_param_scale(fam, 30.0))))
    assert s["sizes"] == "fitted"
    assert "sizes" not in cell_settings(PROFILES["scaling"], family=fam, data="synthetic", features="fmnist-cnn",
                                        tiny=False, seed=0)   # default sizes: cells recorded as before
    plan = plan_train(fam, tmp_path / "r", tflops=30.0, size="fitted")   # zoo train --size fitted: the same widths
    widths = split_recipe(size_overrides(get_model_class(fam), size))[0]
    assert {k: plan.model_sets[k] for k in widths} == widths
    assert not (tmp_path / "r").exists()


def test_cli_sizes_fitted_mistakes_are_one_line_errors(tmp_path):
    for args, message in ((["train", "vae", "--size", "fitted", "--steps", "1"], "--size fitted needs --tflops"),
                          (["train", "vae", "--size", "wide", "--steps", "1"], "neither a number nor 'fitted'")):
        r = subprocess.run([ZOO, *args, "--out", str(tmp_path / "r")], capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    ruleless = [f for f in SIZED if get_model_class(f).size_rule is None]
    if ruleless:
        r = subprocess.run([ZOO, "bench", "--profile", "scaling", "--sizes", "fitted", "--families", ruleless[0],
                            "--out", str(tmp_path / "b")], capture_output=True, text=True)
        assert r.returncode == 2 and f"{ruleless[0]} has none" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "b").exists()
