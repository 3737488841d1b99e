"""The evaluator of text-to-image work: a contrastive image-text pair, the CLIP analogue.

Two encoders map into one joint space of ``embed_dim`` (64) dimensions, both L2-normalised:
  image  uint8 (N, 1, 28, 28) -> [-1, 1] (``zoo.images.to_float``) -> three conv stages, each a
         3x3 conv with stride 2, GroupNorm and SiLU (widths 32/64/128 at 14, 7 and 4 pixels) ->
         global average pool -> Linear -> (N, embed_dim). Strided from the first layer because
         the evaluator is trained on a shared 2-core CPU: ~2 M multiply-adds per image.
  text   a ``zoo.text.encoder.TextEncoder`` of its own (64 wide, 2 layers, its own seed; its MLM
         head is dropped) -> the mean of its final states over the words -> Linear -> (N, embed_dim)
and a learned temperature: logits = exp(logit_scale) * cos, logit_scale starting at log(1/0.07),
exp(logit_scale) clamped at 100, as CLIP.

Training (``train_clip``) uses the symmetric InfoNCE loss -- the mean of the image->text and the
text->image cross-entropies over a batch -- on the captioned training split, each image's caption
drawn afresh every step from ``draws`` caption sets (``Captioner.captions`` seeds 0..draws-1:
other templates and synonyms, the same attribute words).

Duplicates. A caption says exactly four things -- the class and the three attribute levels -- so
in a batch of 256 many images share a caption's content (10 classes x 27 attribute combinations):
"a tee" and "a photo of a t-shirt" are true of the same images. Calling them negatives would ask
the model to tell apart things that the text cannot, and push synonyms apart. So the targets are
multi-positive: image i and caption j are a positive pair when they have the same content key
(label, brightness, width, texture levels), the target of each row (and of each column) is uniform
over its positives, and the loss is the soft-target cross-entropy. With all keys distinct this is
CLIP's loss; it is symmetric: ``info_nce(L, k) == info_nce(L.T, k)``.

Scores. ``clip_score`` is 100 * max(cos, 0) per image-text pair, as in Hessel et al. (2021) with
w = 100. The committed model's record holds its zero-shot accuracy on the test split (the class
text embedding is the normalised mean over the class's synonyms of "a photo of a {name}"), the
CLIP score of the real test images with their own captions (the ceiling a generator can hope for)
and with the captions of other images (a fixed permutation: the floor).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import from_dict, to_dict
from ..errors import ZooError
from ..images import to_float
from .captions import ATTRIBUTES, Captioner
from .encoder import (PAD, SPECIAL, WEIGHTS_DIR, TextEncoder, TextEncoderConfig, caption_table, caption_words,
                      cosine_lr, load_checked, read_record)

KIND = "contrastive image-text pair"
ZERO_SHOT_TEMPLATE = "a photo of a {name}"
MAX_SCALE = 100.0


@dataclasses.dataclass
class ClipConfig:
    vocab: list[str]                              # the text encoder's tokens: SPECIAL, then words
    embed_dim: int = 64                           # the joint space
    widths: tuple[int, int, int] = (32, 64, 128)  # image conv stages, each halving the side: 14, 7, 4 pixels
    groups: int = 8                               # GroupNorm groups
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_len: int = 16
    in_channels: int = 1
    image_size: int = 28


def _conv(cin: int, cout: int, groups: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.SiLU()]


class ImageEncoder(nn.Module):
    """(B, C, H, W) float in [-1, 1] -> (B, out_dim), not normalised."""

    def __init__(self, c: ClipConfig):
        super().__init__()
        layers, cin = [], c.in_channels
        for w in c.widths:
            layers += _conv(cin, w, c.groups, stride=2)
            cin = w
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, c.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x).mean((2, 3)))                      # (B, w3, 4, 4) -> (B, embed_dim)


class ClipPair(nn.Module):
    """An image encoder and a text encoder into one normalised joint space, and a temperature."""

    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = c = config
        self.image = ImageEncoder(c)
        self.text = TextEncoder(TextEncoderConfig(list(c.vocab), c.text_dim, c.text_layers, c.text_heads, c.max_len))
        self.text.mlm_head = nn.Identity()   # the contrastive text tower has no MLM head
        self.text_proj = nn.Linear(c.text_dim, c.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100."""
        return self.logit_scale.exp().clamp(max=MAX_SCALE)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float in [-1, 1] -> (B, embed_dim), unit norm."""
        return F.normalize(self.image(x), dim=-1)

    def encode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, embed_dim), unit norm."""
        ids = ids[:, :max(1, int((ids != PAD).sum(1).max()))] if ids.numel() else ids   # trailing pads change nothing
        return F.normalize(self.text_proj(self.text.pooled(ids)), dim=-1)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B_img, B_txt): scale * cosine of every image with every text."""
        return self.scale() * self.encode_images(x) @ self.encode_tokens(ids).T

    def check_images(self, images: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
                or tuple(images.shape[1:]) != want:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ZooError(f"the CLIP evaluator takes uint8 images (N, {', '.join(map(str, want))}), got {got}")

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor, *, chunk: int = 1000) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float (N, embed_dim) unit vectors on the CPU."""
        self.check_images(images)
        was = self.training
        self.eval()
        try:
            out = [self.encode_images(to_float(images[s:s + chunk]).to(self.device)).float().cpu()
                   for s in range(0, images.shape[0], chunk)]
        finally:
            self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.config.embed_dim)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], *, chunk: int = 2048) -> torch.Tensor:
        """(len(texts), embed_dim) unit vectors on the CPU; each distinct text is encoded once. An
        unknown word is a one-line ZooError."""
        texts = list(texts)
        uniq = sorted(set(texts))
        ids = self.text.tokenize(uniq)                                  # (U, L)
        was = self.training
        self.eval()
        try:
            vecs = [self.encode_tokens(ids[s:s + chunk].to(self.device)).float().cpu()
                    for s in range(0, len(uniq), chunk)]
        finally:
            self.train(was)
        vecs = torch.cat(vecs) if vecs else torch.zeros(0, self.config.embed_dim)
        row = {t: i for i, t in enumerate(uniq)}
        return vecs[torch.tensor([row[t] for t in texts], dtype=torch.long)]

    def clip_score(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(N,) per-pair CLIP score, 100 * max(cos(image_i, text_i), 0), in [0, 100]."""
        if len(texts) != images.shape[0]:
            raise ZooError(f"{images.shape[0]} images but {len(texts)} texts: the CLIP score needs one text per image")
        cos = (self.embed_images(images) * self.embed_texts(texts)).sum(-1)   # (N,)
        return 100 * cos.clamp(min=0)

    def class_embeddings(self, class_names: Sequence[Sequence[str] | str]) -> torch.Tensor:
        """(K, embed_dim): per class, the normalised mean over its synonyms of "a photo of a {name}"."""
        rows = []
        for names in class_names:
            names = [names] if isinstance(names, str) else list(names)
            e = self.embed_texts([ZERO_SHOT_TEMPLATE.format(name=n) for n in names])   # (S, D)
            rows.append(F.normalize(e.mean(0), dim=-1))
        return torch.stack(rows)

    def zero_shot_predict(self, images: torch.Tensor, class_names: Sequence[Sequence[str] | str]) -> torch.Tensor:
        """(N,) int64: the class whose text embedding is nearest (by cosine) to each image's."""
        return (self.embed_images(images) @ self.class_embeddings(class_names).T).argmax(1)

    def zero_shot_accuracy(self, images: torch.Tensor, labels: torch.Tensor,
                           class_names: Sequence[Sequence[str] | str]) -> float:
        """The fraction of images whose zero-shot prediction is their label."""
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() != images.shape[0]:
            raise ZooError(f"{images.shape[0]} images but {labels.numel()} labels")
        return float((self.zero_shot_predict(images, class_names) == labels).float().mean())


# ---- the loss -----------------------------------------------------------------------------------
def info_nce(logits: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
    """The symmetric InfoNCE loss of square logits (B, B) (image i against text j): the mean of the
    image->text and text->image soft-target cross-entropies. Image i and text j are positives when
    keys[i] == keys[j] (each target row and column uniform over its positives); keys=None: only the
    diagonal, CLIP's loss."""
    b = logits.shape[0]
    if logits.dim() != 2 or logits.shape[1] != b:
        raise ValueError(f"info_nce needs square logits, got {tuple(logits.shape)}")
    keys = torch.arange(b, device=logits.device) if keys is None else keys.to(logits.device)
    pos = (keys[:, None] == keys[None, :]).to(logits.dtype)                  # (B, B), symmetric
    target = pos / pos.sum(1, keepdim=True)                                  # rows sum to 1
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def content_keys(captioner: Captioner, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) int64: what a caption of each image says, as one number: label and attribute levels."""
    key = torch.as_tensor(labels).long().reshape(-1).clone()
    for v in captioner.attributes(images).values():     # in ATTRIBUTES order
        key = key * 3 + v
    return key


# ---- training -----------------------------------------------------------------------------------
def train_clip(captioner: Captioner, train: tuple[torch.Tensor, torch.Tensor], *, steps: int = 1000,
               batch_size: int = 256, lr: float = 2e-3, weight_decay: float = 0.05, seed: int = 0,
               draws: int = 4, config: dict | None = None,
               progress: Callable[[int, float], None] | None = None) -> tuple[ClipPair, dict]:
    """Train a ClipPair on captions of the (uint8 images, labels) of ``train``; AdamW (weight decay on
    the matrices only) with a 5 % linear warm-up and a cosine to zero; one ``torch.Generator`` seeded
    with ``seed`` drives the batch order and caption draws, and the global RNG (forked, restored
    afterwards) the initialisation. Returns the frozen model and its training figures."""
    images, labels = train
    n = images.shape[0]
    if batch_size < 2 or batch_size > n:
        raise ZooError(f"--batch-size must lie in 2..{n} (a contrastive batch needs negatives), got {batch_size}")
    t0 = time.perf_counter()
    table = caption_table(captioner, images, labels, draws)                  # draws lists of N captions
    uniq = sorted({c for caps in table for c in caps})
    row = {c: i for i, c in enumerate(uniq)}
    which = torch.tensor([[row[c] for c in caps] for caps in table])         # (draws, N) caption ids
    keys = content_keys(captioner, images, labels)                           # (N,)
    cfg = from_dict(ClipConfig, {"vocab": list(SPECIAL) + caption_words(captioner), **(config or {})})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ClipPair(cfg)
    tokens = model.text.tokenize(uniq)                                       # (U, L)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, max(1, steps // 20)))
    g = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    model.train()
    losses = []
    for step in range(steps):
        if order.numel() < batch_size:                                       # a fresh epoch, no repeats within one
            order = torch.cat([order, torch.randperm(n, generator=g)])
        idx, order = order[:batch_size], order[batch_size:]
        draw = torch.randint(0, draws, (batch_size,), generator=g)
        x = to_float(images[idx])                                            # (B, C, H, W)
        ids = tokens[which[draw, idx]]                                       # (B, L)
        loss = info_nce(model(x, ids), keys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(MAX_SCALE))
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
    model.eval().requires_grad_(False)
    tail = losses[-max(1, min(50, len(losses))):]
    return model, {"final_train_loss": round(sum(tail) / len(tail), 4), "logit_scale": round(float(model.scale()), 3),
                   "params": sum(p.numel() for p in model.parameters()), "distinct_captions": len(uniq),
                   "train_seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads()}


def evaluate_clip(model: ClipPair, captioner: Captioner, images: torch.Tensor, labels: torch.Tensor, *,
                  seed: int = 0) -> dict:
    """Held-out figures: zero-shot accuracy, and the mean CLIP score (with its standard error) of the
    images with their own captions (caption seed 0: the ceiling) and with the captions of a fixed
    permutation of the images (generator seeded with ``seed``: the floor)."""
    caps = captioner.captions(images, labels, seed=0)
    perm = torch.randperm(len(caps), generator=torch.Generator().manual_seed(seed))
    own = model.clip_score(images, caps)
    shuffled = model.clip_score(images, [caps[int(j)] for j in perm])

    def se(s):
        return float(s.std() / math.sqrt(s.numel())) if s.numel() > 1 else float("nan")
    return {"zero_shot_accuracy": round(model.zero_shot_accuracy(images, labels, captioner.class_names), 4),
            "clip_score_own_captions": round(float(own.mean()), 3), "clip_score_own_captions_se": round(se(own), 3),
            "clip_score_shuffled_captions": round(float(shuffled.mean()), 3),
            "clip_score_shuffled_captions_se": round(se(shuffled), 3), "eval_images": int(images.shape[0])}


# ---- the committed evaluator ----------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load(name: str, folder: str, stamp: tuple) -> ClipPair:
    """The evaluator, kept while its weights file keeps its ``stamp`` (mtime, size)."""
    rec = read_record(name, Path(folder), hint="zoo text clip")
    if rec.get("kind") != KIND:
        raise ZooError(f"text model {name!r} is a {rec.get('kind')!r}, not a {KIND}")
    model = ClipPair(from_dict(ClipConfig, rec["config"]))
    return load_checked(model, name, rec, Path(folder))


def load_clip(name: str = "clip", folder: str | Path | None = None) -> ClipPair:
    """The committed, frozen CLIP evaluator ``name`` (weights sha256-checked against its record),
    in eval mode, on the CPU; ``folder``: another weights folder than zoo/text/weights. Loaded once
    per process while its weights file is unchanged; share it, do not train it."""
    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    w = folder / f"{name}.safetensors"
    st = w.stat() if name and "/" not in name and w.is_file() else None
    return _load(name, str(folder.resolve()), (st.st_mtime_ns, st.st_size) if st else None)


def load_clip_captioner(name: str = "clip", folder: str | Path | None = None) -> Captioner:
    """The captioner whose captions the committed evaluator ``name`` was trained on."""
    return Captioner.from_dict(read_record(name, Path(folder) if folder is not None else WEIGHTS_DIR,
                                           hint="zoo text clip")["captioner"])


def clip_record(model: ClipPair, captioner: Captioner, data: str, train: dict, metrics: dict, command: str) -> dict:
    """The JSON record saved beside the weights (``encoder.save_record`` adds the sha256)."""
    return {"name": "clip", "kind": KIND, "data": data, "config": to_dict(model.config),
            "captioner": captioner.to_dict(), "train": train, "metrics": metrics, "command": command,
            "scores": {"clip_score": "100 * max(cos(image, text), 0)",
                       "zero_shot": f"argmax over classes of cos(image, mean over synonyms of "
                                    f"{ZERO_SHOT_TEMPLATE!r}), normalised"},
            "attributes": list(ATTRIBUTES)}
