"""zoo under torchrun with 2 CPU processes (gloo), as users launch it: DDP training, sharded
sampling and evaluation, exact resume after a kill, and bench shards sharing one folder.

Every launch is ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m -- zoo ...``
(the ``--`` keeps torchrun from reading zoo's options, such as ``--n``, as its own).
"""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import ENV, signal_once_logging

ZOO = str(Path(sys.executable).parent / "zoo")


def torchrun(*args, nproc=2, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "--", "zoo", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def zoo(*args, timeout=300):
    return subprocess.run([ZOO, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


def ok(r):
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def weights(path, prefix=""):
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}


PIXEL_GPT = ["train", "pixel_gpt", "--data", "synthetic", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """pixel_gpt (a loss without randomness) trained 2 steps in one process and in two."""
    d = tmp_path_factory.mktemp("ddp")
    ok(zoo(*PIXEL_GPT, "--steps", 2, "--out", d / "one"))
    r = ok(torchrun(*PIXEL_GPT, "--steps", 2, "--out", d / "two"))
    return d / "one", d / "two", r


def test_ddp_steps_equal_one_process_on_the_whole_batch(one_and_two):
    """Weights and Adam moments after 2 steps: the gradient averaged by DDP over two halves of each
    batch is the gradient of the whole batch."""
    one, two, _ = one_and_two
    a, b = weights(one / "checkpoint.safetensors"), weights(two / "checkpoint.safetensors")
    keys = [k for k in a if k.startswith(("model.", "opt.")) and a[k].is_floating_point()]
    assert any(".exp_avg" in k for k in keys) and keys == [k for k in b if k in keys]
    for k in keys:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)
    moments = torch.cat([a[k].flatten() for k in keys if k.endswith(".exp_avg")])
    assert moments.abs().max() > 1e-4   # gradients flowed: the comparison is not of untouched zeros


def test_ddp_budget_and_records_are_those_of_one_process(one_and_two):
    one, two, r = one_and_two
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s1["flops_per_step"] == s2["flops_per_step"] and s1["steps"] == s2["steps"] == 2
    assert json.loads((two / "train.json").read_text())["world_size"] == 2
    assert r.stdout.count("trained pixel_gpt") == 1   # rank 0 alone prints
    ck = load_file(str(two / "checkpoint.safetensors"))
    assert "rng.torch.1" in ck and not torch.equal(ck["rng.torch"], ck["rng.torch.1"])  # independent noise per rank


@pytest.mark.parametrize("family", ["gan", "vqvae"])
def test_multi_phase_and_multi_stage_families_stay_in_step(tmp_path, family):
    """GAN (D and G phases) and VQ-VAE (two stages, EMA codebook, restarts): the trainer checks at
    every checkpoint that both processes hold bitwise the same weights, else the run fails."""
    ok(torchrun("train", family, "--data", "synthetic", "--steps", 6, "--batch-size", 8, "--quiet",
                "--set", "train.ckpt_every=2", *(["--set", "dead_after=1"] if family == "vqvae" else []),
                "--out", tmp_path / "run"))
    assert (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_batch_must_split_over_the_processes(tmp_path):
    r = torchrun(*PIXEL_GPT[:-3], "--batch-size", 7, "--steps", 1, "--quiet", "--out", tmp_path / "r")
    assert r.returncode != 0 and "does not split over 2 processes" in r.stderr
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_sharded_sample_and_eval_equal_one_process(one_and_two, tmp_path):
    """22 images in batches of 4 over 2 processes (3 batches each, the last one short): the same
    bytes as one process; the sharded eval's features give the very same FID, KID and coverage."""
    import zoo as zoo_lib
    from zoo.images import read_images
    from zoo.metrics.evaluate import evaluate
    one = one_and_two[0]
    ok(torchrun("sample", one, "--n", 22, "--batch-size", 4, "--out", tmp_path / "b.npz"))
    ok(torchrun("eval", one, "--n", 200, "--quiet", "--metrics", "fid,kid,dc", "--json", tmp_path / "b.json"))
    b = json.loads((tmp_path / "b.json").read_text())
    model = zoo_lib.load(one)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as each torchrun process: float kernels may round differently with 2 threads
    try:
        assert torch.equal(read_images(str(tmp_path / "b.npz")), model.sample(22, batch_size=4))
        a = evaluate(model.sample(200, batch_size=256), metrics="fid,kid,dc", n=200)   # fashion-mnist test
    finally:
        torch.set_num_threads(threads)
    assert a["fid"] == b["fid"] and a["kid_mean"] == b["kid_mean"] and a["coverage"] == b["coverage"]


TOY = ["train", "toy_mean", "--import", "zoo_test_family", "--data", "synthetic", "--batch-size", "8", "--quiet",
       "--set", "train_noise=0.5", "--set", "train.log_every=5"]


@pytest.mark.slow   # about 25 s of torchrun; the default suite keeps the one-step DDP equality and single-process exact resume
def test_two_process_run_killed_midway_resumes_exactly(tmp_path):
    """SIGTERM to torchrun mid-run: both processes finish the step, rank 0 checkpoints (with each
    rank's RNG state), exit 130; --resume then ends bitwise where an uninterrupted run ends."""
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "--",
           "zoo", *TOY, "--steps", "1000000", "--out", str(cut)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _, err = signal_once_logging(p, cut, signal.SIGTERM, timeout=120)
    state = json.loads(load_file_meta(cut / "checkpoint.safetensors"))["state"]
    k = state["step"]
    assert 1 <= k < 1000000, err[-2000:]
    ok(torchrun(*TOY, "--steps", k + 40, "--out", cut, "--resume"))
    ok(torchrun(*TOY, "--steps", k + 40, "--out", tmp_path / "whole"))
    a, b = weights(cut / "checkpoint.safetensors"), weights(tmp_path / "whole" / "checkpoint.safetensors")
    for key in a:
        if key.startswith(("model.", "ema.", "opt.", "rng.")):
            assert torch.equal(a[key], b[key]), key
    # at another world size --resume works too (fresh noise streams: no longer bitwise)
    ok(zoo(*TOY, "--steps", k + 45, "--out", cut, "--resume"))
    assert json.loads((cut / "summary.json").read_text())["steps"] == k + 45


def load_file_meta(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["zoo"]


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_two_bench_shards_in_parallel_fill_one_folder(tmp_path):
    out = tmp_path / "bench"
    args = [ZOO, "bench", "--tiny", "--families", "toy_mean", "--import", "zoo_test_family", "--seeds", "0-1",
            "--n", "20", "--tflops", "1e-9", "--out", str(out)]
    procs = [subprocess.Popen(args + ["--shard", f"{k}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV) for k in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert sorted(c["seed"] for c in doc["cells"]) == [0, 1]
    for s in range(2):
        assert json.loads((out / "cells" / f"toy_mean-s{s}.json").read_text())["seed"] == s
    assert "toy_mean" in (out / "RESULTS.md").read_text()
    assert not list(out.rglob("*.tmp"))
    r = ok(zoo("bench", "--tiny", "--families", "toy_mean", "--import", "zoo_test_family", "--seeds", "0-1",
               "--n", "20", "--tflops", "1e-9", "--out", out, "--merge"))
    assert "merged" in r.stdout


def test_bench_refuses_torchrun_and_bad_shards(tmp_path):
    from zoo.bench.runner import shard_cells
    from zoo.bench import parse_shard
    from zoo.errors import ZooError
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad, msg in (("3/2", "1 <= K <= N"), ("0/2", "1 <= K <= N"), ("x", "K/N"), ("1/2/3", "K/N")):
        with pytest.raises(ZooError, match=msg):
            parse_shard(bad)
    grid = [(f, s) for f in "abc" for s in range(3)]
    shards = [shard_cells(grid, (k, 4)) for k in range(1, 5)]
    assert sorted(sum(shards, [])) == sorted(grid) and max(map(len, shards)) - min(map(len, shards)) <= 1
    r = zoo("bench", "--shard", "3/2", "--out", tmp_path / "b")
    assert r.returncode == 2 and "1 <= K <= N" in r.stderr and not (tmp_path / "b").exists()
    r = subprocess.run([ZOO, "bench", "--out", str(tmp_path / "b")], capture_output=True, text=True,
                       env={**ENV, "WORLD_SIZE": "2"})   # what torchrun sets
    assert r.returncode == 2 and "--shard K/N" in r.stderr
