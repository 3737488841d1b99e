"""Test helpers shared across test modules (imported as ``from helpers import ...``; shared fixtures
live in conftest.py)."""
import contextlib
import dataclasses
import importlib
import json
import os
import time
from pathlib import Path

import pytest
import torch

import zoo
from zoo.bench import PROFILES, cell
from zoo.data import load_dataset
from zoo.metrics.classifier import CNNConfig, FeatureCNN, save_cnn
from zoo.metrics.features import CNNExtractor
from zoo.train import TrainConfig, fit

TESTS = Path(__file__).parent
#: the environment for a `zoo` subprocess that takes ``--import zoo_test_family``: tests/ goes ahead
#: of the caller's PYTHONPATH (which names the checkout under test), one thread
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
       "OMP_NUM_THREADS": "1"}
#: the families of the tiny bench folder (the ``finished`` fixture)
BENCH_FAMILIES = ["vae", "gan"]

_DATA = {}


def data(spec="synthetic", split="train"):
    if (spec, split) not in _DATA:
        _DATA[(spec, split)] = load_dataset(spec, split)
    return _DATA[(spec, split)]


def tiny(name, **fields):
    cls = zoo.get_model_class(name)
    d = data()
    c, h, _ = d.shape
    return cls(cls.tiny_config(channels=c, image_size=h, **fields))


def train_tiny(name, out, steps=12, batch_size=16, seed=0, **fields):
    torch.manual_seed(seed)
    m = tiny(name, **fields)
    d = data()
    fit(m, d.images, None, out, TrainConfig(steps=steps, batch_size=batch_size, seed=seed, log_every=5),
        progress=False)
    return zoo.load(out)


def run_cache(tmp_path_factory, make):
    """For a module-scoped fixture: ``get(name)`` = ``make(name, out)`` for a fresh run folder ``out``,
    made once per family name and shared by the module's tests."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make(name, tmp_path_factory.mktemp(name) / "run")
        return cache[name]
    return get


def assert_same_images(a: torch.Tensor, b: torch.Tensor, max_frac: float = 2e-3):
    """Samples of the same (seed, i) taken at different batch sizes.

    The random draws are exactly per-sample; the float32 arithmetic of batched CPU kernels
    (GEMM, conv) is not bitwise batch-invariant (differences ~1e-7), which can flip a pixel's
    rounding to uint8 in rare cases. So allow a tiny fraction of differing pixels.
    """
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    frac = (a != b).float().mean().item()
    assert frac <= max_frac, f"{frac:.4%} of pixels differ"


def signal_once_logging(proc, run_dir, sig, *, timeout: float, poll: float = 0.1, settle: float = 0.3):
    """Wait (up to ``timeout`` s) until the training run in ``run_dir`` has written its first log
    line, let it run ``settle`` s more, send ``sig`` to ``proc`` and return its (stdout, stderr)."""
    deadline = time.time() + timeout
    while not (run_dir / "log.jsonl").exists() and time.time() < deadline:
        time.sleep(poll)
    time.sleep(settle)
    proc.send_signal(sig)
    return proc.communicate(timeout=timeout)


def random_cnn(path, seed=0, num_classes=4, **cfg):
    """A randomly initialised (untrained) feature CNN saved to ``path``: an extractor for tests."""
    torch.manual_seed(seed)
    net = FeatureCNN(CNNConfig(num_classes=num_classes, **cfg)).eval()
    save_cnn(net, path, {"data": "synthetic"})
    return CNNExtractor(path)


def patch_loss(monkeypatch, model, *, before=None, after=None):
    """Wrap the loss of ``model``'s class: ``before(n)`` runs ahead of call n (1-based) and
    ``after(n, out)`` may change its result. Returns the original loss."""
    orig = type(model).loss
    calls = {"n": 0}

    def loss(self, x, labels=None, *, phase="main"):
        calls["n"] += 1
        if before is not None:
            before(calls["n"])
        out = orig(self, x, labels, phase=phase)
        if after is not None:
            after(calls["n"], out)
        return out
    monkeypatch.setattr(type(model), "loss", loss)
    return orig


def tiny_quick():
    """The quick profile cut down to a tiny bench: the profile of the ``finished`` fixture."""
    return dataclasses.replace(PROFILES["quick"], tflops=0.01, n=100, bpd_images=50, probe_seconds=0.2)


# ---- canned bench measurements: cells train for real (one step of a tiny family, so run folders
# are genuine) but sampling, metrics and the speed probe give a canned record, as do floor and ceiling

def fake_reference(data, n, *, features="fmnist-cnn", **kw):
    return {"fid": 0.5, "kid_mean": 1e-4, "precision": 0.9, "recall": 0.9, "density": 1.0, "coverage": 0.9,
            "classifier_score": 9.0, "memorization": 0.0, "provenance": {"n": n}}


def fake_cell(calls):
    """run_cell that trains for real (one step) and returns a canned record instead of measuring."""
    def run(family, seed, profile, data, out, features, train_set, test_set, log=print, tiny=False):
        calls.append(f"{family}-s{seed}")
        run_dir = cell.train_cell(family, seed, profile, data, out, features, train_set, log=log, tiny=tiny)
        s = json.loads((run_dir / "summary.json").read_text())
        return {"family": family, "seed": seed, "likelihood": "none", "params": s["params"],
                "train_tflops": s["train_tflops"], "steps": s["steps"], "epochs": s["epochs"],
                "train_wall_s": s["wall_s"], "sample_wall_s": 0.1, "fid": 10.0 + len(calls), "kid_mean": 0.01,
                "precision": 0.5, "recall": 0.5, "density": 0.5, "coverage": 0.5, "classifier_score": 2.0,
                "memorization": 1.0, "metrics_provenance": {"extractor": "fmnist-cnn", "weights_sha256": "x"},
                "bpd": None, "bpd_sem": None, "bpd_images": 0, "images_per_s": 100.0, "latency_s": 0.01,
                "nfe": 1, "peak_mem_mb": 1.0, "sample_flops_per_image": 1.0, "sweep": []}
    return run


@contextlib.contextmanager
def faked(calls, mp=None):
    """Canned measurements (see above), recording which cells ran in ``calls``."""
    ev = importlib.import_module("zoo.metrics.evaluate")  # zoo.metrics.evaluate is also a function's name
    with (contextlib.nullcontext(mp) if mp else pytest.MonkeyPatch.context()) as m:
        m.setattr(ev, "real_vs_real", fake_reference)
        m.setattr(ev, "noise_ceiling", fake_reference)
        m.setattr(cell, "run_cell", fake_cell(calls))
        yield
