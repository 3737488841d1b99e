"""The CLIP-analogue evaluator (zoo.text.clip) and the conditional metrics (zoo.metrics.conditional)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.errors import ZooError
from zoo.metrics.conditional import clip_score, fid_per_class, prompt_accuracy
from zoo.text.captions import FASHION_MNIST_NAMES, Captioner
from zoo.text.clip import ClipConfig, ClipPair, info_nce, load_clip, train_clip
from zoo.text.encoder import SPECIAL, WEIGHTS_DIR, caption_words, read_record, sha256_file

ZOO = str(Path(sys.executable).parent / "zoo")
CUTS = {"brightness": [100.0, 200.0], "width": [10.0, 20.0], "texture": [5.0, 10.0]}
TINY = {"widths": (8, 8, 8), "groups": 4, "embed_dim": 8, "text_dim": 16, "text_layers": 1, "text_heads": 2}


@pytest.fixture(scope="module")
def captioner():
    return Captioner(FASHION_MNIST_NAMES, CUTS)


def block(value: int, width: int) -> torch.Tensor:
    """A uint8 (1, 28, 28) image: a uniform block ``width`` columns wide, rows 4..23."""
    u = torch.zeros(1, 28, 28, dtype=torch.uint8)
    u[:, 4:24, 2:2 + width] = value
    return u


# ---- the loss ---------------------------------------------------------------------------------
def test_info_nce_symmetric_and_lower_for_matched_pairs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 12, generator=g) * 3
    keys = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8])
    assert torch.allclose(info_nce(logits, keys), info_nce(logits.T, keys))
    assert torch.allclose(info_nce(logits), info_nce(logits.T))
    # no duplicate keys: CLIP's loss
    ref = 0.5 * (F.cross_entropy(logits, torch.arange(12)) + F.cross_entropy(logits.T, torch.arange(12)))
    assert torch.allclose(info_nce(logits), ref)
    matched = 10 * torch.eye(12)
    mismatched = 10 * torch.eye(12)[torch.randperm(12, generator=g)]
    assert info_nce(matched) < 0.01 < info_nce(mismatched)
    # duplicates as positives: a caption equally near both images that share its content costs
    # less than one that singles out one of them
    keys = torch.tensor([0, 0, 1])
    shared = torch.tensor([[5., 5., 0.], [5., 5., 0.], [0., 0., 5.]])
    single = torch.tensor([[5., 0., 0.], [0., 5., 0.], [0., 0., 5.]])
    assert info_nce(shared, keys) < info_nce(single, keys)


# ---- scores on a small untrained pair ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(captioner):
    torch.manual_seed(0)
    return ClipPair(ClipConfig(list(SPECIAL) + caption_words(captioner), **TINY)).eval()


def test_clip_score_range_and_clipping(tiny):
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    texts = ["a dark bag", "a photo of a wide coat", "plain tee", "a boot", "a light sneaker", "dress"]
    s = tiny.clip_score(images, texts)
    assert s.shape == (6,) and (s >= 0).all() and (s <= 100).all()
    e = tiny.embed_texts(texts)
    assert e.shape == (6, 8) and torch.allclose(e.norm(dim=1), torch.ones(6), atol=1e-5)
    # cosines of 0.6, 0 and -0.8 score 60, 0 and 0 (clipped at 0)
    stub = ClipPair(tiny.config)
    stub.embed_images = lambda im: torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.6, 0.8]])
    stub.embed_texts = lambda t: torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert torch.allclose(stub.clip_score(images[:3], texts[:3]), torch.tensor([60.0, 0.0, 0.0]))
    res = clip_score(images[:3], texts[:3], clip=stub)
    assert res["clip_score"] == pytest.approx(20.0) and res["clip_score_se"] == pytest.approx(20.0) and res["n"] == 3
    with pytest.raises(ZooError, match="texts"):
        tiny.clip_score(images, texts[:2])
    with pytest.raises(ZooError, match="unknown word"):
        tiny.embed_texts(["a purple bag"])
    with pytest.raises(ZooError, match="uint8"):
        tiny.embed_images(images.float())


def test_train_clip_tiny_is_seeded(captioner):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (48,), generator=g)
    a, info = train_clip(captioner, (images, labels), steps=3, batch_size=16, seed=3, draws=2, config=TINY)
    b, _ = train_clip(captioner, (images, labels), steps=3, batch_size=16, seed=3, draws=2, config=TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not any(p.requires_grad for p in a.parameters()) and info["params"] > 0
    assert a.zero_shot_predict(images[:5], FASHION_MNIST_NAMES).shape == (5,)
    with pytest.raises(ZooError, match="batch-size"):
        train_clip(captioner, (images, labels), steps=1, batch_size=1, config=TINY)


# ---- prompt accuracy and per-class FID --------------------------------------------------------------
def test_prompt_accuracy_hand_made(captioner):
    light_wide, dark_narrow = block(250, 24), block(60, 5)       # uniform blocks: plain
    images = torch.stack([light_wide, light_wide, dark_narrow, dark_narrow])
    levels = captioner.attributes(images)
    assert levels["brightness"].tolist() == [2, 2, 0, 0] and levels["width"].tolist() == [2, 2, 0, 0]
    assert levels["texture"].tolist() == [0, 0, 0, 0]
    prompts = ["a light trousers",           # class right, attribute right
               "a photo of a dark pants",    # class right, attribute wrong
               "a narrow plain bag",         # class wrong, attributes right
               "a handbag"]                  # class right, nothing asserted
    predicted = torch.tensor([1, 1, 3, 8])
    res = prompt_accuracy(images, prompts, captioner, lambda im: predicted[:len(im)])
    assert res["prompt_acc"] == 0.5 and res["class_acc"] == 0.75
    assert res["attr_acc"] == pytest.approx(3 / 4) and res["n_asserted"] == 4
    assert res["attr_acc_by"] == {"brightness": 0.5, "width": 1.0, "texture": 1.0}
    none = prompt_accuracy(images[3:], ["bag"], captioner, lambda im: torch.tensor([8]))
    assert none["prompt_acc"] == 1.0 and none["attr_acc"] is None
    with pytest.raises(ZooError, match="prompts"):
        prompt_accuracy(images, prompts[:3], captioner, lambda im: predicted)
    with pytest.raises(ZooError, match="unknown word"):
        prompt_accuracy(images[:1], ["a purple bag"], captioner, lambda im: predicted[:1])


def test_fid_per_class_on_gaussians():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(600, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(600) % 3
    same = fid_per_class(ref, labels, ref, labels)
    assert set(same["per_class"]) == {0, 1, 2} and max(same["per_class"].values()) < 1e-8
    shifted = ref + 2.0 * (labels == 1).double()[:, None]          # class 1 moved by 2 in every dimension
    res = fid_per_class(shifted, labels, ref, labels)
    assert res["per_class"][1] == pytest.approx(16.0, rel=1e-6)     # |mu1 - mu2|^2 = 4 * 2^2
    assert res["per_class"][0] < 1e-8 and res["mean"] == pytest.approx(16.0 / 3, rel=1e-6)
    other = torch.randn(600, 4, generator=g, dtype=torch.float64)   # fresh draws: small but not 0
    assert 0 < fid_per_class(other, labels, ref, labels)["mean"] < 0.5
    with pytest.raises(ZooError, match="class 3"):
        fid_per_class(ref[:3], torch.tensor([0, 0, 3]), ref, labels)


# ---- the committed weights ---------------------------------------------------------------------------
def test_committed_weights_load_checked_and_tampering_refused(tmp_path):
    rec = read_record("clip")
    assert sha256_file(WEIGHTS_DIR / "clip.safetensors") == rec["sha256"]
    m = load_clip()
    assert m is load_clip("clip") and not m.training and not any(p.requires_grad for p in m.parameters())
    assert rec["metrics"]["zero_shot_accuracy"] > 0.6
    assert rec["metrics"]["clip_score_shuffled_captions"] < rec["metrics"]["clip_score_own_captions"]
    for suffix in (".json", ".safetensors"):
        shutil.copy(WEIGHTS_DIR / f"clip{suffix}", tmp_path / f"clip{suffix}")
    assert load_clip("clip", tmp_path).config == m.config
    w = tmp_path / "clip.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="sha256"):
        load_clip("clip", str(tmp_path))
    with pytest.raises(ZooError, match="zoo text clip"):
        load_clip("no-such-model")


def test_committed_weights_scores_on_real_images():
    from zoo.data import load_dataset
    from zoo.text.clip import load_clip_captioner
    try:
        test = load_dataset("fashion-mnist", "test")
    except ZooError:
        pytest.skip("fashion-mnist not installed")
    images, labels = test.images[:200], test.labels[:200]
    m, cap = load_clip(), load_clip_captioner()
    assert m.zero_shot_accuracy(images, labels, cap.class_names) > 0.5
    own = cap.captions(images, labels, seed=0)
    assert clip_score(images, own)["clip_score"] > clip_score(images, own[1:] + own[:1])["clip_score"] + 10


# ---- the command ------------------------------------------------------------------------------------
def one_line(stderr: str) -> bool:
    return len([line for line in stderr.splitlines() if line.strip()]) == 1 and "Traceback" not in stderr


def test_cli_steps_0_exits_2_with_one_line(tmp_path):
    """Through the installed command, as a user meets it (one subprocess: starting torch is slow)."""
    out = tmp_path / "w"
    r = subprocess.run([ZOO, "text", "clip", "--steps", "0", "--out", str(out)], capture_output=True, text=True,
                       env={**os.environ}, timeout=180)
    assert r.returncode == 2 and one_line(r.stderr) and "--steps must be >= 1" in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("args,msg", [(["--bogus-option"], "No such option"),
                                      (["--batch-size", "1"], "--batch-size must be >= 2"),
                                      (["--lr", "nan"], "--lr must be a positive number"),
                                      (["--threads", "0"], "--threads must be >= 1")])
def test_cli_mistakes_exit_2_in_process(tmp_path, capsys, args, msg):
    from zoo.cli import run
    out = tmp_path / "w"
    assert run(["text", "clip", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and msg in err, err
    assert not out.exists()
