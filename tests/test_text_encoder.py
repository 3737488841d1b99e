"""The frozen text encoders: committed weights with their hashes, tokenization, embeddings, and the
conditional command line as a user meets it (`zoo train --conditional`, `zoo sample --prompt`)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo import ZooError
from zoo.text import embed_prompts, encoder as te

ZOO = [sys.executable, "-m", "zoo"]


def zoo(*args, cwd=None):
    return subprocess.run([*ZOO, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("size", list(te.SIZES))
def test_committed_encoders_load_and_embed(size):
    enc = te.load_encoder(f"mlm-{size}")
    dim, layers, _ = te.SIZES[size]
    assert enc.dim == dim and len(enc.blocks.layers) == layers
    assert not any(p.requires_grad for p in enc.parameters())
    e = enc.embed(["a dark coat", "a light coat", "a dark sneaker", "a dark coat"])
    assert e.shape == (4, dim) and torch.isfinite(e).all()
    assert torch.equal(e[0], e[3])                      # one text, one embedding
    assert not torch.allclose(e[0], e[1]) and not torch.allclose(e[0], e[2])
    rec = te.read_record(f"mlm-{size}")
    assert rec["sha256"] == te.sha256_file(te.WEIGHTS_DIR / f"mlm-{size}.safetensors")
    assert rec["data"] == "fashion-mnist" and "command" in rec


def test_unknown_word_lists_the_vocabulary():
    enc = te.load_encoder("mlm-s")
    with pytest.raises(ZooError, match=r"unknown word 'flurb'.*vocabulary is .*coat"):
        enc.tokenize(["a dark flurb"])
    with pytest.raises(ZooError, match="empty prompt"):
        enc.tokenize(["  "])


def test_tampered_weights_are_refused(tmp_path):
    for suffix in (".json", ".safetensors"):
        shutil.copy(te.WEIGHTS_DIR / f"mlm-s{suffix}", tmp_path / f"mlm-s{suffix}")
    raw = bytearray((tmp_path / "mlm-s.safetensors").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "mlm-s.safetensors").write_bytes(bytes(raw))
    rec = te.read_record("mlm-s", tmp_path)
    enc = te.TextEncoder(te.TextEncoderConfig(**rec["config"]))
    with pytest.raises(ZooError, match="does not match"):
        te.load_checked(enc, "mlm-s", rec, tmp_path)
    with pytest.raises(ZooError, match="no committed text model 'mlm-x'"):
        te.read_record("mlm-x")


def test_embed_prompts_gives_the_cond_of_the_models_encoder():
    import zoo
    cfg = zoo.get_model_class("vae").Config(cond_dim=te.SIZES["s"][0], text_encoder="mlm-s")
    want = te.load_encoder("mlm-s").embed(["a dark coat"] * 3)
    assert torch.equal(embed_prompts(cfg, "a dark coat", 3), want)
    assert torch.equal(embed_prompts(cfg, ["a dark coat"] * 3), want)
    m = zoo.get_model("vae", cfg)
    assert torch.equal(embed_prompts(m, ["a dark coat", "a light sneaker"], 2)[0], want[0])
    for args, msg in [(("a dark coat", 2), None), ((["a coat"] * 3, 2), "3 prompts for 2 images"),
                      (("a dark flurb", 1), "unknown word 'flurb'")]:
        if msg is None:
            assert embed_prompts(m, *args).shape == (2, cfg.cond_dim)
            continue
        with pytest.raises(ZooError, match=msg):
            embed_prompts(m, *args)
    with pytest.raises(ZooError, match="this vae model is unconditional"):
        embed_prompts(zoo.get_model("vae"), "a coat")
    with pytest.raises(ZooError, match="text encoder 'mlm-s' gives 32-wide"):
        embed_prompts(zoo.get_model("vae").Config(cond_dim=7, text_encoder="mlm-s"), "a coat")


def test_mask_tokens_masks_at_least_one_word():
    ids = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 9, 0, 0, 0, 0]])
    inp, tgt = te.mask_tokens(ids, 0.0, torch.Generator().manual_seed(0))
    assert ((inp == te.MASK).sum(1) == 1).all()        # p = 0 still masks one word per text
    assert ((tgt != -100) == (inp == te.MASK)).all() and (tgt[tgt != -100] > te.MASK).all()
    assert (inp[:, 0] == te.CLS).all() and (inp[ids == 0] == 0).all()


@pytest.mark.slow   # heavy (30-50 s): opt in with --runslow
def test_conditional_cli_round_trip(tmp_path):
    run = tmp_path / "vae-cond"
    r = zoo("train", "vae", "--conditional", "--text-encoder", "mlm-s", "--steps", "3", "--batch-size", "16",
            "--out", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["cond_dim"] == te.SIZES["s"][0] and cfg["text_encoder"] == "mlm-s"
    r = zoo("sample", str(run), "--prompt", "a dark ankle boot", "--n", "4", "--out", str(tmp_path / "boot.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "boot.png").is_file()
    for args, msg in [(["--prompt", "a dark flurb"], "unknown word 'flurb'"),
                      (["--prompt", "a coat", "--guidance", "3"], "no classifier-free guidance"),
                      (["--guidance", "3"], "--guidance needs --prompt")]:
        r = zoo("sample", str(run), *args, "--n", "2", "--out", str(tmp_path / "x.png"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr


def test_conditional_cli_mistakes(tmp_path):
    for args, msg in [(["train", "vae", "--conditional", "--data", "synthetic", "--steps", "2"], "not of 'synthetic'"),
                      (["train", "vae", "--conditional", "--text-encoder", "mlm-x", "--steps", "2"], "no committed text model"),
                      (["train", "vae", "--text-encoder", "mlm-s", "--steps", "2"], "needs --conditional"),
                      (["bench", "--guidance", "2"], "need --conditional")]:
        r = zoo(*args, "--out", str(tmp_path / "r"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr, (args, r.stderr)
        assert not (tmp_path / "r").exists()


INSTALLED_ZOO = str(Path(sys.executable).parent / "zoo")


@pytest.mark.parametrize("cmd", ["encoder", "clip"])
def test_text_training_needs_out_and_never_overwrites_committed_weights(cmd, tmp_path):
    """Through the installed command: no --out is one line and exit 2; an --out into the package's
    weights over a committed file is refused (exit 2, one line) and leaves the file as it was."""
    r = subprocess.run([INSTALLED_ZOO, "text", cmd, "--steps", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Missing option '--out'" in r.stderr, r.stderr
    name = "mlm-s" if cmd == "encoder" else "clip"
    committed = te.WEIGHTS_DIR / f"{name}.safetensors"
    before = te.sha256_file(committed)
    args = ["--size", "s"] if cmd == "encoder" else []
    r = subprocess.run([INSTALLED_ZOO, "text", cmd, *args, "--steps", "1", "--out", str(te.WEIGHTS_DIR)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"overwrite the committed {name}" in r.stderr, r.stderr
    assert te.sha256_file(committed) == before


def test_text_encoder_writes_into_a_folder_of_ones_own(tmp_path):
    out = tmp_path / "w"
    r = subprocess.run([INSTALLED_ZOO, "text", "encoder", "--size", "s", "--data", "synthetic", "--steps", "2",
                        "--batch-size", "8", "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rec = te.read_record("mlm-s", out)
    assert rec["data"] == "synthetic" and rec["sha256"] == te.sha256_file(out / "mlm-s.safetensors")
    enc = te.load_checked(te.TextEncoder(te.TextEncoderConfig(**rec["config"])), "mlm-s", rec, out)
    assert enc.dim == te.SIZES["s"][0]
