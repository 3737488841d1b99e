"""Captions from pixels and labels (zoo.text): reproducible, parseable back, cut at the training tertiles."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.text import ATTRIBUTES, FASHION_MNIST_NAMES, Captioner, measure

ZOO = str(Path(sys.executable).parent / "zoo")
N = 3000  # a slice of the training split, for speed


@pytest.fixture(scope="module")
def fmnist():
    try:
        d = load_dataset("fashion-mnist", "train")
    except ZooError:
        pytest.skip("fashion-mnist not installed")
    return d.images[:N], d.labels[:N]


@pytest.fixture(scope="module")
def fitted(fmnist):
    return Captioner.fit(fmnist[0], FASHION_MNIST_NAMES)


def test_same_seed_same_captions_at_any_batch(fmnist, fitted):
    images, labels = fmnist[0][:400], fmnist[1][:400]
    a = fitted.captions(images, labels, seed=0)
    assert a == fitted.captions(images, labels, seed=0)
    assert fitted.captions(images[100:200], labels[100:200], seed=0, start=100) == a[100:200]
    b = fitted.captions(images, labels, seed=1)
    assert sum(x != y for x, y in zip(a, b)) > 50


def test_captions_parse_back_to_label_and_measured_levels(fmnist, fitted):
    images, labels = fmnist[0][:1000], fmnist[1][:1000]
    levels = fitted.attributes(images)
    for i, text in enumerate(fitted.captions(images, labels, seed=3)):
        label, asserted = fitted.parse(text)
        assert label == int(labels[i]), text
        for attr in ATTRIBUTES:
            lv = int(levels[attr][i])
            assert asserted[attr] == (None if lv == 1 else lv), (text, attr, lv)
            assert any(w in text.split() for w in ATTRIBUTES[attr]) == (lv != 1)


def test_cut_points_split_training_images_into_thirds(fmnist, fitted):
    levels = fitted.attributes(fmnist[0])
    for attr, lv in levels.items():
        frac = torch.bincount(lv, minlength=3).float() / len(lv)
        assert ((frac >= 0.30) & (frac <= 0.37)).all(), (attr, frac.tolist())
    raw = measure(fmnist[0])
    for attr, (lo, hi) in fitted.cuts.items():  # the rule as documented: < lo low, > hi high
        assert torch.equal(levels[attr], (raw[attr] >= lo).long() + (raw[attr] > hi).long())


def test_synonyms_are_used(fmnist, fitted):
    images, labels = fmnist[0][:1000], fmnist[1][:1000]
    caps = fitted.captions(images, labels)
    for k in (0, 2, 9):
        nouns = {n for c, lab in zip(caps, labels.tolist()) if lab == k for n in FASHION_MNIST_NAMES[k] if
                 c.endswith(" " + n) or c == n}
        assert len(nouns) > 1, (k, nouns)


def test_parse_words_and_mistakes(fitted):
    assert fitted.parse("a shirt")[0] == 6 and fitted.parse("T-shirt")[0] == 0
    assert fitted.parse("a photo of an ankle boot") == (9, {"brightness": None, "width": None, "texture": None})
    assert fitted.parse("Dark, wide boot.") == (9, {"brightness": 0, "width": 2, "texture": None})
    for bad in ("a dark ankle", "a purple dress", "a sock"):
        with pytest.raises(ZooError, match="vocabulary is .*ankle boot.*t-shirt") as e:
            fitted.parse(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ZooError, match="two classes"):
        fitted.parse("a shirt, a dress")
    with pytest.raises(ZooError, match="no class"):
        fitted.parse("a photo of a dark")
    with pytest.raises(ZooError, match="dark and light"):
        fitted.parse("dark light coat")
    assert len(set(fitted.vocabulary())) == len(fitted.vocabulary())


def test_own_class_names(synthetic):
    names = {0: "box", 1: "ring", 2: "rod", 3: "star"}
    cap = Captioner.fit(synthetic.images, names)
    caps = cap.captions(synthetic.images, synthetic.labels)
    for text, k in zip(caps, synthetic.labels.tolist()):
        assert text.split()[-1] == names[k] and cap.parse(text)[0] == k
    rgb = load_dataset("synthetic:16:3", "train")  # RGB: the channel mean is measured
    assert len(Captioner.fit(rgb.images, names).captions(rgb.images[:8], rgb.labels[:8])) == 8
    for bad in ([["bag"], ["bag", "sack"]], [["light"]], {0: "x", 2: "y"}):
        with pytest.raises(ZooError):
            Captioner.fit(synthetic.images, bad)
    with pytest.raises(ZooError, match="labels must lie in 0..1"):
        Captioner.fit(synthetic.images, ["box", "ring"]).captions(synthetic.images, synthetic.labels)


def test_dict_round_trip(fmnist, fitted):
    again = Captioner.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again == fitted
    images, labels = fmnist[0][:300], fmnist[1][:300]
    assert again.captions(images, labels, seed=7) == fitted.captions(images, labels, seed=7)
    with pytest.raises(ZooError):
        Captioner.from_dict({"class_names": [["a"]]})


def test_cli_prints_cuts_and_captions(fmnist):
    r = subprocess.run([ZOO, "data", "fashion-mnist", "--captions", "4"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum(line.startswith("cut ") for line in lines) == 3 and "ankle boot" in r.stdout
    caps = [line for line in lines if line.startswith("caption ")]
    assert len(caps) == 4 and "label 9 (ankle boot)" in caps[0]
    r = subprocess.run([ZOO, "data", "synthetic", "--captions", "-1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--captions" in r.stderr
