"""Test helpers shared across test modules."""
import time

import torch

import zoo
from zoo.data import load_dataset
from zoo.train import TrainConfig, fit

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
