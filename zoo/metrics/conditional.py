"""Metrics of conditional (text-to-image) samples: does each image show what its prompt asked for?

  prompt_accuracy  the prompt's class by the domain classifier (``fmnist-cnn``), and every attribute
                   the prompt asserts by the captioner's own measurement of the image's pixels
  fid_per_class    FID between the samples of each class and the reference images of that class
  clip_score       the mean CLIP score of the committed evaluator (``zoo.text.clip``) and its standard error

Per-class FID is computed on far fewer images than the usual FID (a tenth of them for ten
classes) and FID is biased upward at small n, so compare per-class figures only at equal counts.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..errors import ZooError
from .fid import fid_from_features


def classifier(data: str = "fashion-mnist", *, device: str = "cpu",
               batch_size: int = 500) -> Callable[[torch.Tensor], torch.Tensor]:
    """The domain classifier as a function: uint8 images (N, C, H, W) -> (N,) int64 predicted labels,
    the argmax of the ``fmnist-cnn`` network's class probabilities for dataset ``data``."""
    from .features import get_extractor
    ext = get_extractor("fmnist-cnn", data=data, device=device)

    def classify(images: torch.Tensor) -> torch.Tensor:
        return ext.class_probs(images, batch_size=batch_size).argmax(1)
    return classify


def prompt_accuracy(images: torch.Tensor, prompts: Sequence[str], captioner,
                    classify: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """How often image i shows what prompt i says (prompts are parsed by ``captioner.parse``).

    Returns ``prompt_acc``: the fraction of images whose predicted class (``classify(images)``) is the
    prompt's and whose measured level (``captioner.attributes``) of every attribute the prompt
    asserts is the asserted one; ``class_acc``: the class alone; ``attr_acc``: the fraction of all
    asserted (image, attribute) pairs that hold (None when no prompt asserts one), also per attribute
    in ``attr_acc_by``; and the counts ``n`` and ``n_asserted``.
    """
    prompts = list(prompts)
    if len(prompts) != images.shape[0]:
        raise ZooError(f"{images.shape[0]} images but {len(prompts)} prompts")
    if not prompts:
        raise ZooError("prompt accuracy needs at least one image")
    parsed = [captioner.parse(p) for p in prompts]
    want = torch.tensor([label for label, _ in parsed])                         # (N,)
    pred = torch.as_tensor(classify(images)).long().reshape(-1).cpu()           # (N,)
    if pred.numel() != want.numel():
        raise ZooError(f"the classifier gave {pred.numel()} labels for {want.numel()} images")
    measured = captioner.attributes(images)                                     # name -> (N,)
    class_ok = pred == want
    all_ok = class_ok.clone()
    hits, asserted, by = 0, 0, {}
    for a, levels in measured.items():
        asked = torch.tensor([-1 if lv[a] is None else lv[a] for _, lv in parsed])   # (N,), -1: not asserted
        mask = asked >= 0
        ok = levels == asked
        all_ok &= ok | ~mask
        n_a = int(mask.sum())
        if n_a:
            by[a] = float(ok[mask].double().mean())
        hits, asserted = hits + int(ok[mask].sum()), asserted + n_a
    return {"prompt_acc": float(all_ok.double().mean()), "class_acc": float(class_ok.double().mean()),
            "attr_acc": hits / asserted if asserted else None, "attr_acc_by": by,
            "n": len(prompts), "n_asserted": asserted}


def fid_per_class(sample_feats: torch.Tensor, sample_labels: torch.Tensor, ref_feats: torch.Tensor,
                  ref_labels: torch.Tensor) -> dict:
    """FID (``zoo.metrics.fid.fid_from_features``) between the sample features of each class and the
    reference features of the same class: ``{"per_class": {label: fid}, "mean": mean over classes}``.
    The classes are those of the samples; each needs at least 2 samples and 2 reference images."""
    sample_labels = torch.as_tensor(sample_labels).long().reshape(-1)
    ref_labels = torch.as_tensor(ref_labels).long().reshape(-1)
    if sample_labels.numel() != sample_feats.shape[0] or ref_labels.numel() != ref_feats.shape[0]:
        raise ZooError(f"features and labels differ in number: samples {sample_feats.shape[0]} vs "
                       f"{sample_labels.numel()}, reference {ref_feats.shape[0]} vs {ref_labels.numel()}")
    per = {}
    for k in torch.unique(sample_labels).tolist():
        s, r = sample_feats[sample_labels == k], ref_feats[ref_labels == k]
        if s.shape[0] < 2 or r.shape[0] < 2:
            raise ZooError(f"class {k}: FID needs at least 2 samples and 2 reference images, "
                           f"got {s.shape[0]} and {r.shape[0]}")
        per[k] = fid_from_features(r, s)
    if not per:
        raise ZooError("per-class FID needs at least one sample")
    return {"per_class": per, "mean": sum(per.values()) / len(per)}


def clip_score(images: torch.Tensor, texts: Sequence[str], *, clip=None, name: str = "clip") -> dict:
    """The mean CLIP score (100 * max(cos, 0)) of image i with text i and its standard error
    (std / sqrt(n)), by ``clip`` or else the committed evaluator ``name``."""
    if clip is None:
        from ..text.clip import load_clip
        clip = load_clip(name)
    s = clip.clip_score(images, texts).double()                                # (N,)
    if s.numel() == 0:
        raise ZooError("the CLIP score needs at least one image")
    se = float(s.std() / math.sqrt(s.numel())) if s.numel() > 1 else float("nan")
    return {"clip_score": float(s.mean()), "clip_score_se": se, "n": int(s.numel())}


def conditional_metrics(images: torch.Tensor, prompts: Sequence[str], prompt_labels: torch.Tensor, *,
                        data: str = "fashion-mnist", features: str = "fmnist-cnn", encoder: str) -> dict:
    """The conditional columns of a bench cell whose ``images`` were prompted by ``prompts`` (the test
    captions of test images with ``prompt_labels``): CLIP score with its standard error, prompt
    accuracy (class, attributes, both), and FID per prompted class against that class's test images
    (every test image of the class), with the mean and worst class."""
    from ..data import load_dataset
    from ..text.encoder import load_captioner
    from .features import get_extractor
    from .reference import reference_features
    acc = prompt_accuracy(images, prompts, load_captioner(encoder), classifier(data))
    cs = clip_score(images, prompts)
    ext = get_extractor(features, data=data)
    ref = reference_features(data, "test", ext)["features"]                      # (N_test, D)
    fid = fid_per_class(ext(images), prompt_labels, ref, load_dataset(data, "test").labels[:ref.shape[0]])
    return {"clip_score": cs["clip_score"], "clip_score_se": cs["clip_score_se"],
            "prompt_acc": acc["prompt_acc"], "class_acc": acc["class_acc"], "attr_acc": acc["attr_acc"],
            "attr_acc_by": acc["attr_acc_by"], "fid_class_mean": fid["mean"],
            "fid_class_max": max(fid["per_class"].values()),
            "fid_per_class": {str(k): v for k, v in fid["per_class"].items()}}
