"""Reproducible captions for a labelled image dataset, computed from each image's pixels and label.

Every word of a caption can be checked on an image, generated or real, with the same rules.

Rules (images are uint8 (N, C, H, W); an RGB image is first averaged over its channels):
  foreground   the pixels whose (channel-mean) value is > FOREGROUND = 32 (of 255).
  brightness   the mean value of the foreground pixels (0 when an image has none).
  width        the width in pixels of the foreground's bounding box: last minus first column holding
               any foreground pixel, plus one (0 when an image has none).
  texture      the mean absolute difference between horizontally and vertically neighbouring pixels,
               over the neighbour pairs where both pixels are foreground (0 when there are none);
               high means patterned.
Each attribute has two cut points (lo, hi), fitted once on the training split by ``Captioner.fit``:
the 1/3 and 2/3 quantiles (torch.quantile). A value < lo is level 0 ("dark" / "narrow" / "plain"),
> hi is level 2 ("light" / "wide" / "patterned"), anything else level 1, which adds no word. When
many training values tie at a quantile (widths are whole numbers), the cut moves to the midpoint
beside the tied value, on whichever side brings that bin nearer a third, so no value equals a cut.

A caption is a template filled with the attribute words (always in the order brightness, width,
texture) and one of the class's names. Template and name are drawn for image i from the generator
``zoo.rng.generators(seed, i, 1)``, so caption i depends only on (seed, i) and image i's pixels and
label, never on the batch. The article stays "a" even before a vowel ("a light ankle boot").

``Captioner.parse`` reads a caption, or any prompt made of the vocabulary (class names, attribute
words and the filler words a, an, photo, of), back into (label, {attribute: level or None}).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import torch

from ..errors import ZooError
from ..rng import generators, rand

FOREGROUND = 32  # a pixel is foreground when its channel-mean value is above this (0..255)
ATTRIBUTES: dict[str, tuple[str, str]] = {  # attribute -> (word for level 0, word for level 2)
    "brightness": ("dark", "light"),
    "width": ("narrow", "wide"),
    "texture": ("plain", "patterned"),
}
TEMPLATES = ("a {attrs} {noun}", "a photo of a {attrs} {noun}", "{attrs} {noun}")
FILLER = ("a", "an", "photo", "of")
_PUNCT = ".,;:!?\"()"

FASHION_MNIST_NAMES: list[list[str]] = [
    ["t-shirt", "top", "tee"], ["trousers", "pants"], ["pullover", "sweater", "jumper"], ["dress"],
    ["coat", "jacket"], ["sandal"], ["shirt"], ["sneaker", "trainer"], ["bag", "handbag"],
    ["ankle boot", "boot"],
]
SYNTHETIC_NAMES: list[list[str]] = [["square", "block"], ["disc", "circle"], ["bar", "stripe"], ["cross", "plus"]]


def class_names_for(dataset: str, num_classes: int) -> list[list[str]]:
    """Names for a dataset's classes: Fashion-MNIST's and synthetic's own, else "class-0", "class-1", ..."""
    if dataset == "fashion-mnist":
        return FASHION_MNIST_NAMES
    if dataset == "synthetic" or dataset.startswith("synthetic:"):
        return SYNTHETIC_NAMES
    return [[f"class-{k}"] for k in range(num_classes)]


def _gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, H, W), the mean over channels; a one-line ZooError otherwise."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.dtype != torch.uint8:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ZooError(f"captions need uint8 images (N, C, H, W), got {got}")
    return images.float().mean(1)


def measure(images: torch.Tensor, *, chunk: int = 8192) -> dict[str, torch.Tensor]:
    """The raw attribute values of each image (see the module docstring): name -> (N,) float32."""
    _gray(images[:0])  # validate once
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ATTRIBUTES}
    for s in range(0, images.shape[0], chunk):
        g = _gray(images[s:s + chunk])                                      # (B, H, W)
        fg = g > FOREGROUND                                                 # (B, H, W)
        count = fg.sum((1, 2))                                              # (B,)
        out["brightness"].append((g * fg).sum((1, 2)) / count.clamp(min=1))
        cols = fg.any(1)                                                    # (B, W)
        idx = torch.arange(g.shape[-1])
        first = torch.where(cols, idx, g.shape[-1]).amin(1)
        last = torch.where(cols, idx, -1).amax(1)
        out["width"].append((last - first + 1).clamp(min=0).float())
        dh, dv = (g[:, :, 1:] - g[:, :, :-1]).abs(), (g[:, 1:] - g[:, :-1]).abs()
        mh, mv = fg[:, :, 1:] & fg[:, :, :-1], fg[:, 1:] & fg[:, :-1]
        pairs = mh.sum((1, 2)) + mv.sum((1, 2))
        out["texture"].append(((dh * mh).sum((1, 2)) + (dv * mv).sum((1, 2))) / pairs.clamp(min=1))
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()}


def _cut(values: torch.Tensor, p: float) -> float:
    """The p-quantile of ``values``, moved off a tied value to the side that gives a bin nearer p."""
    q = torch.quantile(values, p)
    if not (values == q).any():
        return float(q)
    below, above = values[values < q], values[values > q]
    lt, le = (values < q).float().mean(), (values <= q).float().mean()
    if below.numel() and (abs(lt - p) <= abs(le - p) or not above.numel()):
        return float((below.max() + q) / 2)
    return float((q + above.min()) / 2) if above.numel() else float(q)


def _words(text: str) -> list[str]:
    """Lower-cased words, split on white space; hyphenated words stay one word; . , ; : ! ? quotes
    and brackets around a word are dropped."""
    return [w for w in (w.strip(_PUNCT) for w in text.lower().split()) if w]


@dataclasses.dataclass
class Captioner:
    """Class names (label -> names, the first is the main one) and each attribute's cut points (lo, hi)."""
    class_names: list[list[str]]
    cuts: dict[str, list[float]]

    def __post_init__(self):
        names = self.class_names.items() if isinstance(self.class_names, Mapping) else enumerate(self.class_names)
        table = {int(k): [v] if isinstance(v, str) else list(v) for k, v in names}
        if not table or sorted(table) != list(range(len(table))):
            raise ZooError("class names must be given for labels 0..K-1 with no gaps")
        if not all(isinstance(n, str) for v in table.values() for n in v):
            raise ZooError("each class name must be a string (or a list of strings, its synonyms)")
        self.class_names = [[" ".join(_words(n)) for n in table[k]] for k in range(len(table))]
        self._phrases: dict[tuple[str, ...], tuple[str, object]] = {(w,): ("filler", None) for w in FILLER}
        for attr, pair in ATTRIBUTES.items():
            self._phrases.update({(pair[0],): (attr, 0), (pair[1],): (attr, 2)})
        for k, names in enumerate(self.class_names):
            if not names or not all(names):
                raise ZooError(f"class {k} has an empty name")
            for n in names:
                key = tuple(n.split())
                if key in self._phrases and self._phrases[key] != ("class", k):
                    raise ZooError(f"class name {n!r} (label {k}) is already a vocabulary word "
                                   f"({self._phrases[key][0]})")
                self._phrases[key] = ("class", k)
        try:
            assert set(self.cuts) == set(ATTRIBUTES)
            self.cuts = {k: [float(x) for x in self.cuts[k]] for k in ATTRIBUTES}
            assert all(len(v) == 2 and v[0] <= v[1] for v in self.cuts.values())
        except (AssertionError, TypeError, ValueError):
            raise ZooError(f"cuts must give numbers lo <= hi for each of {', '.join(ATTRIBUTES)}") from None

    @classmethod
    def fit(cls, train_images: torch.Tensor, class_names: Sequence[Sequence[str] | str] | Mapping) -> "Captioner":
        """Cut points at the tertiles of the training images' attributes; class_names: label -> names."""
        if train_images.shape[0] < 3:
            raise ZooError(f"fitting captions needs at least 3 training images, got {train_images.shape[0]}")
        vals = measure(train_images)
        return cls(class_names, {k: [_cut(v, 1 / 3), _cut(v, 2 / 3)] for k, v in vals.items()})

    def to_dict(self) -> dict:
        """A JSON-able dict; ``from_dict`` rebuilds the same captioner."""
        return {"class_names": [list(n) for n in self.class_names], "cuts": {k: list(v) for k, v in self.cuts.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Captioner":
        """The inverse of ``to_dict``; a malformed dict is a one-line ZooError."""
        if not isinstance(d, Mapping) or set(d) != {"class_names", "cuts"}:
            raise ZooError("a captioner dict has exactly the keys class_names and cuts")
        return cls(d["class_names"], d["cuts"])

    def attributes(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each attribute's level per image: name -> (N,) int64 in {0, 1, 2} (1 adds no word)."""
        out = {}
        for k, v in measure(images).items():
            lo, hi = self.cuts[k]
            out[k] = (v >= lo).long() + (v > hi).long()  # (N,); a value never equals a fitted cut
        return out

    def captions(self, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0, start: int = 0) -> list[str]:
        """One caption per image; image j is dataset index start+j, drawn from generator (seed, start+j)."""
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() != images.shape[0]:
            raise ZooError(f"{images.shape[0]} images but {labels.numel()} labels")
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.class_names):
            raise ZooError(f"labels must lie in 0..{len(self.class_names) - 1} (one per class name), "
                           f"got {int(labels.min())}..{int(labels.max())}")
        levels = {a: v.tolist() for a, v in self.attributes(images).items()}
        u = rand(generators(seed, start, len(labels)), 2).cpu() if len(labels) else torch.zeros(0, 2)  # (N, 2)
        out = []
        for j, k in enumerate(labels.tolist()):
            names = self.class_names[k]
            words = [ATTRIBUTES[a][levels[a][j] // 2] for a in ATTRIBUTES if levels[a][j] != 1]
            template = TEMPLATES[int(u[j, 0] * len(TEMPLATES))]
            noun = names[int(u[j, 1] * len(names))]
            out.append(" ".join(template.format(attrs=" ".join(words), noun=noun).split()))
        return out

    def vocabulary(self) -> list[str]:
        """Every word or phrase ``parse`` accepts, sorted."""
        return sorted(" ".join(p) for p in self._phrases)

    def parse(self, text: str) -> tuple[int, dict[str, int | None]]:
        """(label, {attribute: 0, 2 or None when no word asserts it}) for a caption or prompt; unknown
        words, no class, two classes or two levels of one attribute are one-line ZooErrors."""
        words, longest = _words(text), max(len(p) for p in self._phrases)
        label, levels = None, {a: None for a in ATTRIBUTES}
        i = 0
        while i < len(words):
            for n in range(min(longest, len(words) - i), 0, -1):  # the longest phrase first: "ankle boot"
                hit = self._phrases.get(tuple(words[i:i + n]))
                if hit:
                    break
            else:
                raise ZooError(f"unknown word {words[i]!r}: the vocabulary is {', '.join(self.vocabulary())}")
            kind, value = hit
            if kind == "class":
                if label is not None and label != value:
                    raise ZooError(f"the prompt names two classes ({self.class_names[label][0]}, "
                                   f"{self.class_names[value][0]}): name one")
                label = value
            elif kind != "filler":
                if levels[kind] is not None and levels[kind] != value:
                    raise ZooError(f"the prompt asserts both {' and '.join(ATTRIBUTES[kind])} ({kind})")
                levels[kind] = value
            i += n
        if label is None:
            raise ZooError(f"the prompt names no class: use one of "
                           f"{', '.join(n for names in self.class_names for n in names)}")
        return label, levels
