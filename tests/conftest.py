import importlib
import os

import pytest
import torch

import zoo
from zoo.api import unregister_model

from helpers import BENCH_FAMILIES, random_cnn, tiny_quick


def pytest_configure(config):
    # Under pytest-xdist every worker is a torch process: share the cores between them, or their
    # OpenMP threads spin against each other (two 2-thread processes on 2 cores run 10x slower).
    # The `zoo` subprocesses a test starts get the same share (through OMP_NUM_THREADS), so that a run
    # made in-process and one made by the command match bit for bit, as they do at one thread count.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def synthetic():
    from zoo.data import load_dataset
    return load_dataset("synthetic", "train")


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    return random_cnn(tmp_path_factory.mktemp("cnn") / "cnn.safetensors")


@pytest.fixture(scope="session")
def extractor():
    from zoo.metrics.features import get_extractor
    return get_extractor("fmnist-cnn", data="fashion-mnist")  # the packaged classifier, used on synthetic shapes


@pytest.fixture(scope="session")
def finished(tmp_path_factory, extractor):
    """A finished tiny bench folder, made once per test run and shared: read it, or copy it first."""
    from zoo.bench import run_bench
    out = tmp_path_factory.mktemp("bench") / "quick"
    run_bench(tiny_quick(), BENCH_FAMILIES, "synthetic", out, extractor, "test-command", log=lambda *_: None,
              tiny=True)
    return out


@pytest.fixture()
def toy_families():
    """Registers the families of tests/zoo_test_family.py (toy_mean, toy_nan, toy_recipe) for one test,
    then removes them again: the registry holds exactly what it held before."""
    before = set(zoo.list_models())
    toys = importlib.import_module("zoo_test_family")   # registers them on its first import
    for obj in vars(toys).values():                     # and again after an earlier test removed them
        if isinstance(obj, type) and issubclass(obj, zoo.Generator) and "name" in vars(obj):
            zoo.register_model(obj.name)(obj)
    yield
    for name in set(zoo.list_models()) - before:
        unregister_model(name)
