"""Run the installed `zoo` command on user mistakes and edge cases, and print what each one does.

Each case runs `zoo ...` in a subprocess, as a script or a CI job would, and records its exit status,
the first line of stderr, how many lines stderr had, whether a traceback appeared, and whether
anything was lost or left half-made (a run folder created by a mistake, a finished run changed, a
foreign file deleted). Expected: 2 for a user's mistake, 1 for a failed run, 130 for an interrupt,
0 otherwise; one line on stderr; nothing lost. Some cases meet a second `zoo` process (a training
that holds the run folder's lock), or kill one (SIGKILL, SIGTERM) at a random point drawn from a
seeded generator, so the same points come back on every run.

    python benchmarks/edge_cases.py --out results/edge_cases.md
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

RNG = random.Random(0)   # the random points at which processes are killed or signalled
BG: dict = {}            # work folder -> a background `zoo` process a case runs beside

ZOO = str(Path(sys.executable).parent / "zoo")
TESTS = Path(__file__).resolve().parent.parent / "tests"   # tests/zoo_test_family.py: an outside family
TINY_VAE = ["--set", "widths=8,16,16", "--set", "latent_dim=4"]


@dataclass
class Case:
    name: str
    args: list                       # arguments after `zoo`; "{w}" is replaced by the case's work folder
    expect: int                      # the exit status a script should see
    setup: Callable[[Path], None] | None = None
    lost: Callable[[Path], str] | None = None   # returns "" when nothing was lost, else what was
    env: dict = field(default_factory=dict)
    interrupt_after: str | None = None          # send a signal once this file exists under the work folder
    signal: int = signal.SIGINT                 # ... this one, after a random (seeded) extra delay


def tree_digest(p: Path) -> str:
    """sha256 over the names and bytes of every file below p."""
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def zoo(args: list, env: dict | None = None, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([ZOO, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})},
                       cwd=cwd)
    if check and r.returncode != 0:
        raise SystemExit(f"set-up command failed: zoo {' '.join(map(str, args))}\n{r.stderr}")
    return r


# ---- shared fixtures, made once -------------------------------------------------------------
def make_fixtures(root: Path) -> dict:
    fx = {"root": root}
    fx["vae"] = root / "vae-run"
    zoo(["train", "vae", "--data", "synthetic", "--steps", 3, "--batch-size", 16, "--quiet", "--out", fx["vae"], *TINY_VAE])
    fx["gan"] = root / "gan-run"
    zoo(["train", "gan", "--data", "synthetic", "--steps", 2, "--batch-size", 16, "--quiet", "--out", fx["gan"],
         "--set", "g_widths=16,8,8", "--set", "d_widths=8,16", "--set", "latent_dim=8"])
    fx["npz"] = root / "samples.npz"
    zoo(["sample", fx["vae"], "--n", 50, "--out", fx["npz"]])
    return fx


def copy_run(fx: dict, name: str, w: Path) -> Path:
    dst = w / "run"
    shutil.copytree(fx[name], dst)
    return dst


def unchanged(path_fn: Callable[[Path], Path]) -> Callable[[Path], str]:
    """A 'lost' check: the folder's digest taken at set-up time is the same after the command."""
    def check(w: Path) -> str:
        before = (w / ".digest").read_text()
        return "" if tree_digest(path_fn(w)) == before else "the existing run was changed"
    return check


def remember_digest(path_fn: Callable[[Path], Path]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        (w / ".digest").write_text(tree_digest(path_fn(w)))
    return setup


def no_folder(rel: str) -> Callable[[Path], str]:
    return lambda w: f"{rel} was created" if (w / rel).exists() else ""


def cases(fx: dict) -> list[Case]:
    T = ["train", "vae", "--data", "synthetic", "--quiet", *TINY_VAE, "--out", "{w}/run"]
    nf = no_folder("run")
    run_copy = lambda name: (lambda w: (copy_run(fx, name, w), remember_digest(lambda w: w / "run")(w)))  # noqa: E731
    same_run = unchanged(lambda w: w / "run")
    C = [
        # ---- train: budgets, numbers, config fields -------------------------------------
        Case("train --steps 0", T + ["--steps", 0], 2, lost=nf),
        Case("train --batch-size -5", T + ["--steps", 2, "--batch-size", -5], 2, lost=nf),
        Case("train --batch-size 0", T + ["--steps", 2, "--batch-size", 0], 2, lost=nf),
        Case("train --batch-size larger than the data", T + ["--steps", 2, "--batch-size", 100000], 2, lost=nf),
        Case("train --tflops inf", T + ["--tflops", "inf"], 2, lost=nf),
        Case("train --tflops nan", T + ["--tflops", "nan"], 2, lost=nf),
        Case("train --tflops -1", T + ["--tflops", -1], 2, lost=nf),
        Case("train with no budget", T, 2, lost=nf),
        Case("train with two budgets", T + ["--steps", 2, "--tflops", 1], 2, lost=nf),
        Case("train --set train.ckpt_every=0", T + ["--steps", 2, "--set", "train.ckpt_every=0"], 2, lost=nf),
        Case("train --set train.log_every=0", T + ["--steps", 2, "--set", "train.log_every=0"], 2, lost=nf),
        Case("train --set train.ema=1.5", T + ["--steps", 2, "--set", "train.ema=1.5"], 2, lost=nf),
        Case("train --set widths= (empty)", T + ["--steps", 2, "--set", "widths="], 2, lost=nf),
        Case("train --set latent_dim=-3", T + ["--steps", 2, "--set", "latent_dim=-3"], 2, lost=nf),
        Case("train --set latent_dim=x", T + ["--steps", 2, "--set", "latent_dim=x"], 2, lost=nf),
        Case("train --set bogus=1", T + ["--steps", 2, "--set", "bogus=1"], 2, lost=nf),
        Case("train --set novalue", T + ["--steps", 2, "--set", "novalue"], 2, lost=nf),
        Case("train --seed -1", T + ["--steps", 2, "--seed", -1], 2, lost=nf),
        Case("train unknown family", ["train", "nope", "--steps", 1, "--out", "{w}/run"], 2, lost=nf),
        Case("train --data idx:/no/such/dir", T + ["--steps", 1, "--data", "idx:/no/such/dir"], 2, lost=nf),
        Case("train --data mystery", T + ["--steps", 1, "--data", "mystery"], 2, lost=nf),
        Case("train --device cuda:7", T + ["--steps", 1, "--device", "cuda:7"], 2, lost=nf),
        Case("train --device bogus", T + ["--steps", 1, "--device", "bogus"], 2, lost=nf),
        Case("train --bogus-option", T + ["--steps", 1, "--bogus-option"], 2, lost=nf),
        Case("train without FAMILY", ["train"], 2),
        Case("train --out is a file", T[:-1] + ["{w}/afile", "--steps", 1], 2,
             setup=lambda w: (w / "afile").write_text("mine\n"),
             lost=lambda w: "" if (w / "afile").read_text() == "mine\n" else "the file was changed"),
        Case("train --out on a read-only file system", T[:-1] + ["{w}/ro/run", "--steps", 1], 2,
             setup=lambda w: mount_read_only(w / "ro")),
        Case("train into an existing run without --resume", T + ["--steps", 1], 2, setup=run_copy("vae"),
             lost=same_run),
        # ---- resume --------------------------------------------------------------------
        Case("train --resume with nothing there", T + ["--steps", 1, "--resume"], 2, lost=nf),
        Case("train --resume, train.json missing", T + ["--steps", 5, "--resume"], 2,
             setup=lambda w: (copy_run(fx, "vae", w) / "train.json").unlink()),
        Case("train --resume, train.json corrupt", T + ["--steps", 5, "--resume"], 2,
             setup=lambda w: (copy_run(fx, "vae", w) / "train.json").write_text("{trunc")),
        Case("train --resume --batch-size 32 (run used 16)", T + ["--steps", 5, "--resume", "--batch-size", 32], 2,
             setup=run_copy("vae"), lost=same_run),
        Case("train --resume --set train.ema=0.5", T + ["--steps", 5, "--resume", "--set", "train.ema=0.5"], 2,
             setup=run_copy("vae"), lost=same_run),
        Case("train --resume --set latent_dim=8", T + ["--steps", 5, "--resume", "--set", "latent_dim=8"], 2,
             setup=run_copy("vae"), lost=same_run),
        Case("train --resume as another family", ["train", "gan", "--steps", 5, "--resume", "--out", "{w}/run"], 2,
             setup=run_copy("vae"), lost=same_run),
        Case("train --resume, checkpoint truncated", T + ["--steps", 5, "--resume"], 2,
             setup=lambda w: truncate(copy_run(fx, "vae", w) / "checkpoint.safetensors")),
        Case("train --resume extends the run (ok)", T + ["--steps", 5, "--resume"], 0, setup=run_copy("vae")),
        # ---- failures and interrupts -----------------------------------------------------
        Case("train: loss turns NaN (outside family toy_nan)",
             ["train", "toy_nan", "--data", "synthetic", "--steps", 20, "--batch-size", 8, "--quiet", "--out", "{w}/run",
              "--import", "zoo_test_family"], 1, env={"PYTHONPATH": str(TESTS)}),
        Case("train: Ctrl-C mid-run (checkpoint kept)",
             ["train", "toy_mean", "--data", "synthetic", "--steps", 10 ** 6, "--batch-size", 8, "--quiet",
              "--out", "{w}/run", "--import", "zoo_test_family"], 130, env={"PYTHONPATH": str(TESTS)},
             interrupt_after="run/log.jsonl",
             lost=lambda w: "" if (w / "run" / "checkpoint.safetensors").exists() else "no checkpoint after Ctrl-C"),
        Case("--import a module that does not exist", ["--import", "no_such_module_xyz", "list"], 2),
        # ---- sample ----------------------------------------------------------------------
        Case("sample --n 0", ["sample", fx["vae"], "--n", 0, "--out", "{w}/g.png"], 2, lost=no_folder("g.png")),
        Case("sample --n -3", ["sample", fx["vae"], "--n", -3, "--out", "{w}/g.png"], 2, lost=no_folder("g.png")),
        Case("sample --frames 0 --trajectory", ["sample", fx["vae"], "--frames", 0, "--trajectory", "--out", "{w}/g.png"], 2),
        Case("sample --batch-size 0", ["sample", fx["vae"], "--batch-size", 0, "--out", "{w}/g.png"], 2),
        Case("sample --out x.jpg", ["sample", fx["vae"], "--out", "{w}/x.jpg"], 2, lost=no_folder("x.jpg")),
        Case("sample from a missing run", ["sample", "{w}/missing", "--out", "{w}/g.png"], 2),
        Case("sample --opt mode=weird", ["sample", fx["vae"], "--opt", "mode=weird", "--out", "{w}/g.png"], 2),
        Case("sample --opt steps=5 on a VAE", ["sample", fx["vae"], "--opt", "steps=5", "--out", "{w}/g.png"], 2),
        Case("sample --trajectory on a VAE", ["sample", fx["vae"], "--trajectory", "--out", "{w}/g.png"], 2),
        Case("sample --interpolate on a GAN", ["sample", fx["gan"], "--interpolate", "--out", "{w}/g.png"], 2),
        Case("sample, model.safetensors truncated", ["sample", "{w}/run", "--out", "{w}/g.png"], 2,
             setup=lambda w: truncate(copy_run(fx, "vae", w) / "model.safetensors")),
        Case("sample, config.json corrupt", ["sample", "{w}/run", "--out", "{w}/g.png"], 2,
             setup=lambda w: (copy_run(fx, "vae", w) / "config.json").write_text("{")),
        Case("sample, config.json from a newer zoo", ["sample", "{w}/run", "--out", "{w}/g.png"], 2,
             setup=lambda w: newer_version(copy_run(fx, "vae", w) / "config.json")),
        Case("sample --out folder/ (one PNG per image, ok)", ["sample", fx["vae"], "--n", 4, "--out", "{w}/pngs/"], 0),
        # ---- eval ------------------------------------------------------------------------
        Case("eval a truncated .npz", ["eval", "{w}/s.npz", "--n", 20], 2,
             setup=lambda w: (w / "s.npz").write_bytes(fx["npz"].read_bytes()[:300])),
        Case("eval a .npy renamed .npz", ["eval", "{w}/s.npz"], 2,
             setup=lambda w: (np.save(w / "s.npy", np.zeros((4, 28, 28), np.uint8)), (w / "s.npy").rename(w / "s.npz"))),
        Case("eval a 0-byte .npz", ["eval", "{w}/s.npz"], 2, setup=lambda w: (w / "s.npz").write_bytes(b"")),
        Case("eval a float .npz", ["eval", "{w}/s.npz"], 2,
             setup=lambda w: np.savez(w / "s.npz", images=np.zeros((4, 1, 28, 28), np.float32))),
        Case("eval images of the wrong size", ["eval", "{w}/s.npz"], 2,
             setup=lambda w: np.savez(w / "s.npz", images=np.zeros((8, 1, 32, 32), np.uint8))),
        Case("eval a folder with no images", ["eval", "{w}/empty"], 2, setup=lambda w: (w / "empty").mkdir()),
        Case("eval --n 0", ["eval", fx["npz"], "--n", 0], 2),
        Case("eval --n 3 (fewer than k+1 for precision/recall)", ["eval", fx["npz"], "--n", 3, "--metrics", "pr"], 2),
        Case("eval --metrics bogus", ["eval", fx["npz"], "--metrics", "bogus"], 2),
        Case("eval --metrics bpd on a .npz", ["eval", fx["npz"], "--metrics", "bpd"], 2),
        Case("eval --real-vs-real with a SOURCE", ["eval", fx["npz"], "--real-vs-real"], 2),
        Case("eval with nothing to score", ["eval"], 2),
        Case("eval --n more than the samples", ["eval", fx["npz"], "--n", 500], 2),
        Case("eval a .npz (ok)", ["eval", fx["npz"], "--metrics", "fid,kid"], 0),
        # ---- data ------------------------------------------------------------------------
        Case("data folder:...,size=abc", ["data", "folder:{w}/imgs,size=abc"], 2, setup=lambda w: png_folder(w / "imgs")),
        Case("data folder:...,size=0", ["data", "folder:{w}/imgs,size=0"], 2, setup=lambda w: png_folder(w / "imgs")),
        Case("data folder:...,colour=red", ["data", "folder:{w}/imgs,colour=red"], 2, setup=lambda w: png_folder(w / "imgs")),
        Case("data folder: a class missing from test (ok)", ["data", "folder:{w}/imgs"], 0,
             setup=lambda w: png_folder(w / "imgs", test_classes=("b",))),
        Case("data idx: with 0 images", ["data", "idx:{w}/idx"], 2, setup=lambda w: empty_idx(w / "idx")),
        Case("data mystery", ["data", "mystery"], 2),
        Case("data synthetic:abc", ["data", "synthetic:abc"], 2),
        # ---- features, bench, misc ---------------------------------------------------------
        Case("features train --epochs 0", ["features", "train", "--epochs", 0, "--data", "synthetic"], 2),
        Case("bench --tflops inf", ["bench", "--tflops", "inf", "--out", "{w}/b"], 2, lost=no_folder("b")),
        Case("bench --n 1", ["bench", "--n", 1, "--out", "{w}/b"], 2, lost=no_folder("b")),
        Case("bench --seeds x", ["bench", "--seeds", "x", "--out", "{w}/b"], 2, lost=no_folder("b")),
        Case("bench --families nope", ["bench", "--families", "nope", "--out", "{w}/b"], 2, lost=no_folder("b")),
        *robust_cases(fx, T, nf, run_copy, same_run),
        Case("an unknown command", ["frobnicate"], 2),
        Case("--version (ok)", ["--version"], 0),
        Case("--help (ok)", ["--help"], 0),
    ]
    return C


def robust_cases(fx: dict, T: list, nf, run_copy, same_run) -> list[Case]:
    """Commands that meet (a run-folder lock), kills at random points, huge numbers, malformed files."""
    out_d = lambda w: f"{w}/d/"  # noqa: E731
    pngs = lambda w: sorted(p.name for p in (w / "d").iterdir())  # noqa: E731
    S = ["sample", fx["vae"]]
    big = 2 ** 64
    return [
        # ---- two commands on one run folder ---------------------------------------------
        Case("train --resume while another train writes the run (refused)", T + ["--steps", 10 ** 6 + 1, "--resume"],
             2, setup=lambda w: background_train(w, T), lost=stop_and_resume(T)),
        Case("train a new run while another train writes there (refused)", T + ["--steps", 3],
             2, setup=lambda w: background_train(w, T), lost=stop_and_resume(T)),
        Case("train: kill -9 at a random point, then --resume (ok)", T + ["--steps", "{step+2}", "--resume"], 0,
             setup=lambda w: killed_train(w, T, "run/checkpoint.safetensors"), lost=log_parses),
        Case("train: kill -9 before the first checkpoint, then train again (ok)", T + ["--steps", 2], 0,
             setup=lambda w: killed_train(w, T, "run/train.json", ckpt_every=10 ** 6)),
        Case("train: an outside family's loss fails (no folder left)",
             ["train", "toy_fail", "--data", "synthetic", "--steps", 5, "--batch-size", 8, "--quiet",
              "--out", "{w}/run", "--import", "toy_fail"], 1, setup=toy_fail_module,
             env={"PYTHONPATH": "{w}" + os.pathsep + str(TESTS)}, lost=nf),
        # ---- sample: whole sets, targets, interrupts --------------------------------------
        Case("sample into a folder that is not empty", S + ["--n", 3, "--seed", 5, "--out", "{w}/d/"], 2,
             setup=lambda w: (zoo(S + ["--n", 6, "--out", out_d(w)]), remember_digest(lambda w: w / "d")(w)),
             lost=unchanged(lambda w: w / "d")),
        Case("sample --force replaces the whole set (ok)", S + ["--n", 3, "--seed", 5, "--out", "{w}/d/", "--force"], 0,
             setup=lambda w: zoo(S + ["--n", 6, "--out", out_d(w)]),
             lost=lambda w: "" if pngs(w) == ["000000.png", "000001.png", "000002.png"] else f"mixed set {pngs(w)}"),
        Case("sample --out the run folder itself", ["sample", "{w}/run", "--n", 2, "--out", "{w}/run/"], 2,
             setup=run_copy("vae"), lost=same_run),
        Case("sample --out a file inside the run folder", ["sample", "{w}/run", "--n", 2, "--out", "{w}/run/s.npz"], 2,
             setup=run_copy("vae"), lost=same_run),
        Case("sample --out an existing .npz", S + ["--n", 2, "--out", "{w}/s.npz"], 2,
             setup=lambda w: (w / "s.npz").write_bytes(b"mine"),
             lost=lambda w: "" if (w / "s.npz").read_bytes() == b"mine" else "the file was overwritten"),
        Case("sample --out an existing .npz --force (ok)", S + ["--n", 2, "--out", "{w}/s.npz", "--force"], 0,
             setup=lambda w: (w / "s.npz").write_bytes(b"mine")),
        Case("sample --n 1000000000", S + ["--n", 10 ** 9, "--out", "{w}/x.npz"], 2, lost=no_folder("x.npz")),
        Case("sample --n 2**70", S + ["--n", 2 ** 70, "--out", "{w}/x.npz"], 2, lost=no_folder("x.npz")),
        Case("sample: SIGTERM at a random point of a folder write", S + ["--n", 20000, "--out", "{w}/d/"], 130,
             interrupt_after="d/000005.png", signal=signal.SIGTERM, env={"TQDM_DISABLE": "1"},
             lost=lambda w: "" if (w / "d" / ".incomplete").exists() else "a part set is not marked incomplete"),
        Case("eval a folder left by an interrupted sample", ["eval", "{w}/d"], 2, setup=interrupted_folder),
        Case("data folder: with a leftover temp file (ok)", ["data", "folder:{w}/imgs"], 0,
             setup=lambda w: (png_folder(w / "imgs"), (w / "imgs" / "train" / "a" / ".9.png.tmp.png").write_bytes(b"x"))),
        Case("eval a folder holding a corrupt PNG", ["eval", "{w}/imgs/train/a"], 2,
             setup=lambda w: (png_folder(w / "imgs"), (w / "imgs" / "train" / "a" / "9.png").write_bytes(b"\x89PNG"))),
        Case("sample --prompt, run config names clip", ["sample", "{w}/run", "--prompt", "a dark boot", "--n", 2,
                                                         "--out", "{w}/g.png"], 2, setup=lambda w: clip_config(copy_run(fx, "vae", w))),
        # ---- numbers and probabilities ---------------------------------------------------
        Case("train --set cond_drop=1.5", T + ["--steps", 2, "--set", "cond_drop=1.5"], 2, lost=nf),
        Case("train --set cond_drop=nan", T + ["--steps", 2, "--set", "cond_drop=nan"], 2, lost=nf),
        Case("train pixel_gpt --set dropout=1", ["train", "pixel_gpt", "--data", "synthetic", "--steps", 1,
                                                 "--set", "dropout=1", "--out", "{w}/run"], 2, lost=nf),
        Case("train vqvae --set ema_decay=inf", ["train", "vqvae", "--data", "synthetic", "--steps", 1,
                                                 "--set", "ema_decay=inf", "--out", "{w}/run"], 2, lost=nf),
        Case("train --seed 2**64", T + ["--steps", 1, "--seed", big], 2, lost=nf),
        Case("train --seed 2**64-1 (ok)", T + ["--steps", 1, "--seed", big - 1], 0),
        Case("sample --seed 2**64", S + ["--seed", big, "--out", "{w}/g.png"], 2, lost=no_folder("g.png")),
        Case("eval --seed 2**64", ["eval", fx["npz"], "--seed", big], 2),
        Case("bench --seeds 0,2**64", ["bench", "--seeds", f"0,{big}", "--out", "{w}/b"], 2, lost=no_folder("b")),
        Case("bench --seeds 0-10**12", ["bench", "--seeds", f"0-{10 ** 12}", "--out", "{w}/b"], 2, lost=no_folder("b")),
        Case("train --conditional --text-encoder clip", ["train", "diffusion", "--data", "synthetic", "--steps", 1,
                                                         "--conditional", "--text-encoder", "clip", "--out", "{w}/run"],
             2, lost=nf),
        Case("train cascade with a conditional base", ["train", "cascade", "--data", "synthetic", "--steps", 1,
                                                       "--set", "base_set=cond_dim=16", "--out", "{w}/run"], 2, lost=nf),
        Case("torchrun rank 1: a mistake exits 2 in silence", S + ["--opt", "novalue", "--out", "{w}/g.png"], 2,
             env={"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}),
    ]


def background_train(w: Path, T: list) -> None:
    """A long `zoo train` writing {w}/run, left running (until its first checkpoint) for a case to meet."""
    args = [str(a).replace("{w}", str(w)) for a in T] + ["--steps", str(10 ** 6), "--set", "train.ckpt_every=5",
                                                          "--set", "train.log_every=1"]
    p = subprocess.Popen([ZOO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    BG[w] = p
    wait_for(w / "run" / "checkpoint.safetensors", p)


def wait_for(path: Path, p: subprocess.Popen, seconds: float = 180) -> None:
    t = time.time()
    while not path.exists():
        if p.poll() is not None or time.time() - t > seconds:
            raise SystemExit(f"set-up process ended or stalled before {path} appeared")
        time.sleep(0.05)


def stop_and_resume(T: list) -> Callable[[Path], str]:
    """A 'lost' check: the background run stops on Ctrl-C with 130, resumes, and its log parses."""
    def check(w: Path) -> str:
        p = BG.pop(w)
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=120)
        if p.returncode != 130:
            return f"the first writer exited {p.returncode}"
        step = checkpoint_step(w / "run" / "checkpoint.safetensors")
        args = [str(a).replace("{w}", str(w)) for a in T] + ["--steps", str(step + 2), "--resume"]
        if zoo(args, check=False).returncode != 0:
            return "the run did not resume"
        return log_parses(w)
    return check


def log_parses(w: Path) -> str:
    steps = [json.loads(x)["step"] for x in (w / "run" / "log.jsonl").read_text().splitlines()]
    return "" if steps == sorted(set(steps)) else "log.jsonl has repeated or out-of-order steps"


def killed_train(w: Path, T: list, marker: str, ckpt_every: int = 2) -> None:
    """A `zoo train` killed with SIGKILL at a random (seeded) moment after ``marker`` appears; the
    case's '{step+2}' becomes the step of the checkpoint it left, plus 2."""
    args = [str(a).replace("{w}", str(w)) for a in T] + ["--steps", str(10 ** 6), "--set",
                                                          f"train.ckpt_every={ckpt_every}", "--set", "train.log_every=1"]
    p = subprocess.Popen([ZOO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(w / marker, p)
    time.sleep(RNG.uniform(0, 0.5))
    p.kill()
    p.wait()
    ckpt = w / "run" / "checkpoint.safetensors"
    if ckpt.exists():
        (w / ".step").write_text(str(checkpoint_step(ckpt) + 2))


def checkpoint_step(ckpt: Path) -> int:
    """The step a checkpoint was written at (from its metadata)."""
    from safetensors import safe_open
    with safe_open(str(ckpt), framework="np") as f:
        return int(json.loads(f.metadata()["zoo"])["state"]["step"])


def toy_fail_module(w: Path) -> None:
    (w / "toy_fail.py").write_text(
        "import zoo\nfrom zoo.errors import RunFailed\nfrom zoo_test_family import ToyMean\n\n\n"
        "@zoo.register_model('toy_fail')\nclass ToyFail(ToyMean):\n"
        "    def loss(self, x, labels=None, *, phase='main'):\n"
        "        raise RunFailed('toy_fail: the loss failed')\n")


def interrupted_folder(w: Path) -> None:
    png_folder(w / "imgs")
    d = w / "d"
    shutil.copytree(w / "imgs" / "train" / "a", d)
    (d / ".000003.png.tmp.png").write_bytes(b"\x89PNG half")
    (d / ".incomplete").write_text("")


def clip_config(run: Path) -> None:
    rec = json.loads((run / "config.json").read_text())
    rec["config"].update(cond_dim=64, text_encoder="clip")
    (run / "config.json").write_text(json.dumps(rec))


def truncate(p: Path) -> None:
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 3])


def newer_version(p: Path) -> None:
    rec = json.loads(p.read_text())
    rec["zoo_version"] = "99.0.0"
    p.write_text(json.dumps(rec))


def png_folder(root: Path, test_classes=("a", "b")) -> None:
    from PIL import Image
    for split, classes in (("train", ("a", "b")), ("test", test_classes)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(root / split / c / f"{i}.png")


def empty_idx(root: Path) -> None:
    import gzip
    root.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        header = bytes([0, 0, 8, 3]) + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (root / f"{stem}.gz").write_bytes(gzip.compress(header))


def mount_read_only(p: Path) -> None:
    """A read-only tmpfs at p (needs root); else a folder without write permission."""
    p.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(p)], capture_output=True)
    if r.returncode != 0:
        p.chmod(0o555)


def run_case(c: Case, work: Path) -> dict:
    w = work / c.name.replace(" ", "_").replace("/", "_").replace(":", "_")[:60]   # ':' would split PYTHONPATH
    w.mkdir(parents=True)
    if c.setup:
        c.setup(w)
    step = (w / ".step").read_text() if (w / ".step").exists() else "0"
    args = [str(a).replace("{w}", str(w)).replace("{step+2}", step) for a in c.args]
    env = {**os.environ, **{k: v.replace("{w}", str(w)) for k, v in c.env.items()}}
    if "PYTHONPATH" in c.env and os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    t = time.time()
    if c.interrupt_after:
        p = subprocess.Popen([ZOO, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        target = w / c.interrupt_after
        while not target.exists() and p.poll() is None and time.time() - t < 120:
            time.sleep(0.1)
        time.sleep(0.2 + RNG.uniform(0, 1.0))
        p.send_signal(c.signal)
        _, err = p.communicate(timeout=120)
        rc = p.returncode
    else:
        r = subprocess.run([ZOO, *args], capture_output=True, text=True, env=env, timeout=600)
        rc, err = r.returncode, r.stderr
    lines = [x for x in err.splitlines() if x.strip()]
    lost = c.lost(w) if c.lost else ""
    if (w / "ro").is_mount():
        subprocess.run(["umount", str(w / "ro")], capture_output=True)
    ok = rc == c.expect and (len(lines) <= 1 or rc == 0) and "Traceback" not in err and not lost
    return {"case": c.name, "command": "zoo " + " ".join(args).replace(str(w), "W").replace(str(work.parent), "F"),
            "expected": c.expect, "exit": rc, "stderr_lines": len(lines), "traceback": "Traceback" in err,
            "message": (lines[-1] if rc != 0 and lines else (lines[0] if lines else "")).replace(str(w), "W")[:140],
            "lost": lost or "nothing", "ok": ok, "seconds": round(time.time() - t, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="Also write the table as Markdown (and .json beside it) here.")
    ap.add_argument("--only", default=None, help="Run only cases whose name contains this text.")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-edge-") as tmp:
        root = Path(tmp)
        fx = make_fixtures(root / "F")
        rows = [run_case(c, root / "cases") for c in cases(fx) if not a.only or a.only in c.name]
    head = "| # | case | command | expected | exit | stderr lines | traceback | message | lost | ok |"
    md = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        md.append(f"| {i} | {r['case']} | `{r['command']}` | {r['expected']} | {r['exit']} | {r['stderr_lines']} | "
                  f"{'yes' if r['traceback'] else 'no'} | {r['message'].replace('|', '/')} | {r['lost']} | "
                  f"{'ok' if r['ok'] else 'FAIL'} |")
    bad = [r for r in rows if not r["ok"]]
    summary = f"{len(rows) - len(bad)} of {len(rows)} cases as expected"
    print("\n".join(md))
    print(summary)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(f"# Edge cases of the `zoo` command\n\nProduced by `python benchmarks/edge_cases.py "
                               f"--out {a.out}`. W is each case's own work folder, F the shared fixtures (tiny runs "
                               f"trained on `synthetic`). {summary}.\n\n" + "\n".join(md) + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
