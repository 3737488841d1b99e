"""Generator.recipe: a family's config follows the training budget, applied by `zoo train --tflops`
and `zoo bench` (a user's own settings win), and recorded so that a changed recipe never mixes cells."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.api import recipe_sets
from zoo.bench import PROFILES, run_bench
from zoo.errors import ZooError

from helpers import ENV

ZOO = str(Path(sys.executable).parent / "zoo")


def train(tmp_path, name, *args):
    out = tmp_path / name
    r = subprocess.run([ZOO, "train", "toy_recipe", "--import", "zoo_test_family", "--data", "synthetic", "--quiet",
                        "--out", str(out), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())["config"]
    tcfg = json.loads((out / "train.json").read_text())["train"]
    return r.stdout, cfg, tcfg


@pytest.mark.usefixtures("toy_families")
def test_recipe_sets_split_model_and_trainer_fields():
    cls = zoo.get_model_class("toy_recipe")
    assert recipe_sets(cls, 0.5) == ({"noise": "0.05"}, {"batch_size": "16"})
    assert recipe_sets(cls, 3) == ({"noise": "0.2"}, {})
    assert recipe_sets(cls, None) == ({}, {})          # a step budget has no recipe


def test_zoo_train_follows_the_recipe_and_the_user_wins(tmp_path):
    out, cfg, tcfg = train(tmp_path, "a", "--tflops", "1e-7")
    assert cfg["noise"] == 0.05 and tcfg["batch_size"] == 16
    assert "recipe of toy_recipe for 1e-07 TFLOP: train.batch_size=16 noise=0.05" in out
    out, cfg, tcfg = train(tmp_path, "b", "--tflops", "1e-7", "--batch-size", "8", "--set", "noise=0.3")
    assert cfg["noise"] == 0.3 and tcfg["batch_size"] == 8 and "recipe of" not in out
    _, cfg, tcfg = train(tmp_path, "c", "--tflops", "1e-7", "--no-recipe")
    assert cfg["noise"] == 0.1 and tcfg["batch_size"] == 128
    _, cfg, tcfg = train(tmp_path, "d", "--steps", "2")       # a step budget: no recipe
    assert cfg["noise"] == 0.1 and tcfg["batch_size"] == 128


@pytest.mark.usefixtures("toy_families")
def test_a_changed_recipe_makes_cells_stale(tmp_path, monkeypatch):
    from helpers import faked
    prof = dataclasses.replace(PROFILES["quick"], tflops=1e-6, n=100)
    out = tmp_path / "bench"
    calls = []
    with faked(calls, monkeypatch):
        run_bench(prof, ["toy_recipe"], "synthetic", out, "fmnist-cnn", "cmd", log=lambda s: None)
        rec = json.loads((out / "cells" / "toy_recipe-s0.json").read_text())
        assert rec["settings"]["recipe"] == {"noise": 0.05, "train.batch_size": 16}
        run_dir = out / "runs" / "toy_recipe-s0"
        assert json.loads((run_dir / "train.json").read_text())["train"]["batch_size"] == 16
        assert json.loads((run_dir / "config.json").read_text())["config"]["noise"] == 0.05
        monkeypatch.setattr(zoo.get_model_class("toy_recipe"), "recipe", classmethod(lambda cls, t: {"noise": 0.07}))
        with pytest.raises(ZooError, match="recipe="):
            run_bench(prof, ["toy_recipe"], "synthetic", out, "fmnist-cnn", "cmd", log=lambda s: None)
    assert calls == ["toy_recipe-s0"]


def test_budget_rules_pick_the_first_bound_that_covers_the_budget():
    from zoo.api import by_budget
    rules = [(1.0, {"train.batch_size": 8}), (10.0, {"train.batch_size": 32, "lr": 1e-3})]
    assert by_budget(0.5, rules) == by_budget(1.0, rules) == {"train.batch_size": 8}
    assert by_budget(5.0, rules) == {"train.batch_size": 32, "lr": 1e-3}
    assert by_budget(300.0, rules) == {"train.batch_size": 32, "lr": 1e-3}   # the last rule covers the rest

    class Ruled(zoo.Generator):
        budget_rules = tuple(rules)
    assert Ruled.recipe(0.1) == {"train.batch_size": 8} and zoo.Generator.recipe(0.1) == {}
    # every family's own recipe names only fields its config and the trainer have
    from zoo.config import apply_overrides
    from zoo.train import TrainConfig
    for name in zoo.list_models():
        cls = zoo.get_model_class(name)
        for t in (1.0, 10.0, 100.0):
            model_sets, train_sets = recipe_sets(cls, t)
            apply_overrides(cls.Config(), model_sets)
            apply_overrides(TrainConfig(tflops=t), train_sets)


#: the fields every family takes from the shared base ``zoo.ModelConfig`` (zoo/api.py)
SHARED_FIELDS = ("channels", "image_size", "lr", "cond_dim", "text_encoder", "cond_drop")


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_config_field_is_declared_in_the_family_module(name):
    """A family's Config is its own module's dataclass over ModelConfig alone: every field it has
    is declared, with its default, in that module's text, or is one of the shared base's fields."""
    import inspect
    import re
    cls = zoo.get_model_class(name)
    assert tuple(f.name for f in dataclasses.fields(zoo.ModelConfig)) == SHARED_FIELDS
    for base in cls.Config.__mro__:
        if base not in (zoo.ModelConfig, object):
            assert base.__module__ == cls.__module__, f"{name}: {base.__name__} comes from {base.__module__}"
    text = inspect.getsource(sys.modules[cls.__module__])
    for f in dataclasses.fields(cls.Config):
        declared = re.search(rf"^    {f.name}: [^=\n]+=", text, re.MULTILINE)
        assert declared or f.name in SHARED_FIELDS, f"{name}: field {f.name!r} is not declared in {cls.__module__}"
