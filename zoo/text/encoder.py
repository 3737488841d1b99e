"""The frozen text encoder the generators are conditioned on.

A small bidirectional transformer over a word vocabulary, trained as a masked language model on the
captions of the training split (``zoo.text.captions``), as Imagen conditioned on a frozen, text-only
T5. Text-only was chosen so that the only model that ever sees images beside text is the evaluator
(``zoo.text.clip``): a generator cannot learn the evaluator's image-text geometry from its encoder,
so the CLIP score measures the generator, not a shared training signal.

A text becomes ``[cls] w1 w2 ... [pad]...`` (one token per word, the words as ``Captioner.parse``
splits them); the embedding is the mean of the final (layer-normed) states over the non-pad tokens,
(B, dim). The sizes differ in width, depth and heads (``SIZES``); the committed weights live in
``zoo/text/weights/<name>.safetensors`` beside ``<name>.json`` (config, vocabulary, the captioner
whose captions it read, the weights' sha256, the training command and its held-out MLM accuracy).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ZooError
from ..files import atomic_write_text, load_weights
from .captions import Captioner, _words

WEIGHTS_DIR = Path(__file__).parent / "weights"
SPECIAL = ("[pad]", "[cls]", "[mask]")
PAD, CLS, MASK = 0, 1, 2
SIZES: dict[str, tuple[int, int, int]] = {"s": (32, 1, 2), "m": (64, 2, 4), "l": (128, 4, 4)}  # width, layers, heads


def caption_words(captioner: Captioner) -> list[str]:
    """The single words of a captioner's vocabulary (its phrases split: "ankle boot" -> ankle, boot), sorted."""
    return sorted({w for phrase in captioner.vocabulary() for w in phrase.split()})


@dataclasses.dataclass
class TextEncoderConfig:
    vocab: list[str]             # tokens: SPECIAL, then words
    dim: int = 64
    layers: int = 2
    heads: int = 4
    max_len: int = 16            # tokens, [cls] included


class TextEncoder(nn.Module):
    """Token + position embeddings, ``layers`` pre-norm ``nn.TransformerEncoderLayer`` blocks (full
    attention over the non-pad tokens), a final LayerNorm, and an MLM head used only in training."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        c = config
        if list(c.vocab[:len(SPECIAL)]) != list(SPECIAL):
            raise ZooError(f"a text encoder's vocabulary starts with {', '.join(SPECIAL)}")
        self.index = {w: i for i, w in enumerate(c.vocab)}
        self.tok = nn.Embedding(len(c.vocab), c.dim)
        self.pos = nn.Embedding(c.max_len, c.dim)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, 4 * c.dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.mlm_head = nn.Linear(c.dim, len(c.vocab))

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def words(self) -> list[str]:
        return list(self.config.vocab[len(SPECIAL):])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(B, max_len) long token ids; an unknown word or a too-long text is a one-line ZooError."""
        out = torch.full((len(texts), self.config.max_len), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            words = _words(text)
            if not words:
                raise ZooError(f"empty prompt {text!r}: use words of the vocabulary ({', '.join(self.words)})")
            if len(words) + 1 > self.config.max_len:
                raise ZooError(f"prompt {text!r} has {len(words)} words; at most {self.config.max_len - 1}")
            bad = [w for w in words if w not in self.index or w in SPECIAL]
            if bad:
                raise ZooError(f"unknown word {bad[0]!r} in {text!r}: the vocabulary is {', '.join(self.words)}")
            out[i, 0] = CLS
            out[i, 1:len(words) + 1] = torch.tensor([self.index[w] for w in words])
        return out

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Final states (B, L, dim) of token ids (B, L)."""
        pad = ids == PAD                                                   # (B, L)
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        return self.norm(self.blocks(h, src_key_padding_mask=pad))        # (B, L, dim)

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding (B, dim): the mean of the final states over the non-pad tokens."""
        keep = (ids != PAD).unsqueeze(-1).float()                         # (B, L, 1)
        return (self(ids) * keep).sum(1) / keep.sum(1)

    @torch.no_grad()
    def embed(self, texts: list[str], *, chunk: int = 2048) -> torch.Tensor:
        """(len(texts), dim) float embeddings on the CPU; each distinct text is encoded once."""
        uniq = sorted(set(texts))
        ids = self.tokenize(uniq)
        was = self.training
        self.eval()
        try:
            dev = next(self.parameters()).device
            vecs = torch.cat([self.pooled(ids[s:s + chunk].to(dev)).float().cpu()
                              for s in range(0, len(uniq), chunk)]) if uniq else torch.zeros(0, self.dim)
        finally:
            self.train(was)
        row = {t: i for i, t in enumerate(uniq)}
        return vecs[torch.tensor([row[t] for t in texts], dtype=torch.long)] if texts else vecs


# ---- committed encoders -------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def available(folder: Path = WEIGHTS_DIR, prefix: str = "mlm-") -> list[str]:
    """Names of the committed text encoders (``<name>.json`` beside ``<name>.safetensors``)."""
    return sorted(p.stem for p in folder.glob(f"{prefix}*.json") if p.with_suffix(".safetensors").is_file())


def read_record(name: str, folder: Path = WEIGHTS_DIR, *, hint: str = "zoo text encoder") -> dict:
    """The JSON record of a committed model, or a one-line ZooError naming the ones there are (and
    ``hint``, the command that trains one)."""
    path = folder / f"{name}.json"
    if not name or "/" in name or not path.is_file() or not path.with_suffix(".safetensors").is_file():
        have = available(folder, prefix="")
        raise ZooError(f"no committed text model {name!r} (there are: {', '.join(have) or 'none'}; "
                       f"train one with `{hint}`)")
    return json.loads(path.read_text())


def load_checked(module: nn.Module, name: str, record: dict, folder: Path = WEIGHTS_DIR) -> nn.Module:
    """Load ``<name>.safetensors`` into module after checking its sha256 against the record."""
    path = folder / f"{name}.safetensors"
    got = sha256_file(path)
    if got != record.get("sha256"):
        raise ZooError(f"{path}: sha256 {got[:12]}... does not match its record {str(record.get('sha256'))[:12]}...")
    load_weights(module, path)
    return module.eval().requires_grad_(False)


def encoder_record(name: str) -> dict:
    """The record of the committed text encoder ``name``, or a one-line ZooError naming the text
    encoders there are (the CLIP evaluator is not one: it scores generators, it never conditions them)."""
    if name not in available():
        raise ZooError(f"no committed text model {name!r} to condition on (text encoders: "
                       f"{', '.join(available()) or 'none'}; train one with `zoo text encoder`)")
    return read_record(name)


@functools.lru_cache(maxsize=8)
def load_encoder(name: str) -> TextEncoder:
    """The committed, frozen text encoder ``name`` (e.g. "mlm-m"), in eval mode, on the CPU."""
    rec = encoder_record(name)
    enc = TextEncoder(TextEncoderConfig(**rec["config"]))
    return load_checked(enc, name, rec)


def load_captioner(name: str) -> Captioner:
    """The captioner whose captions the committed model ``name`` was trained on."""
    return Captioner.from_dict(read_record(name)["captioner"])


def check_out_folder(folder: str | os.PathLike, names: list[str]) -> Path:
    """``folder`` as a Path, or a one-line ZooError when writing ``<name>.safetensors``/``<name>.json``
    there would overwrite a committed, hash-checked file of the package (``WEIGHTS_DIR``)."""
    folder = Path(folder)
    if folder.resolve() == WEIGHTS_DIR.resolve():
        for name in names:
            for path in (folder / f"{name}.safetensors", folder / f"{name}.json"):
                if path.exists():
                    raise ZooError(f"--out {folder}: would overwrite the committed {path.name}; "
                                   f"write to a folder of your own")
    return folder


def save_record(module: nn.Module, name: str, record: dict, folder: Path = WEIGHTS_DIR) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (the record plus the weights' sha256)."""
    from safetensors.torch import save_model
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_model(module, str(path))
    atomic_write_text(folder / f"{name}.json", json.dumps({**record, "sha256": sha256_file(path)}, indent=2) + "\n")
    return path


# ---- training ------------------------------------------------------------------------------------
def caption_table(captioner: Captioner, images: torch.Tensor, labels: torch.Tensor, draws: int) -> list[list[str]]:
    """``draws`` caption sets of the images (seeds 0..draws-1: other templates and synonyms, the same
    attribute words), each a list with one caption per image."""
    return [captioner.captions(images, labels, seed=k) for k in range(draws)]


def mask_tokens(ids: torch.Tensor, p: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for the MLM: each word token is replaced by [mask] with probability p, and at
    least one per text; targets are -100 (ignored) except at masked positions."""
    word = ids > MASK                                                    # (B, L)
    r = torch.rand(ids.shape, generator=g)
    r = torch.where(word, r, 2.0)
    chosen = (r < p) | (r == r.min(1, keepdim=True).values)              # the lowest word always
    chosen &= word
    return ids.masked_fill(chosen, MASK), ids.masked_fill(~chosen, -100)


def cosine_lr(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor: linear warm-up, then a cosine to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_encoder(size: str, captioner: Captioner, train: tuple[torch.Tensor, torch.Tensor],
                  test: tuple[torch.Tensor, torch.Tensor], *, steps: int = 1500, batch_size: int = 256,
                  lr: float = 1e-3, seed: int = 0, mask_p: float = 0.15, draws: int = 4,
                  progress: Callable | None = None) -> tuple[TextEncoder, dict]:
    """Train an MLM text encoder of ``size`` on captions of the (images, labels) of ``train``; returns
    the encoder and its held-out masked-word accuracy on one caption set of ``test``."""
    if size not in SIZES:
        raise ZooError(f"unknown size {size!r}: choose {', '.join(SIZES)}")
    torch.manual_seed(seed)
    dim, layers, heads = SIZES[size]
    enc = TextEncoder(TextEncoderConfig(list(SPECIAL) + caption_words(captioner), dim, layers, heads))
    ids = enc.tokenize([c for caps in caption_table(captioner, *train, draws) for c in caps])   # (draws*N, L)
    test_ids = enc.tokenize(captioner.captions(*test, seed=1000))
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, max(1, steps // 20)))
    g = torch.Generator().manual_seed(seed)
    enc.train()
    for step in range(steps):
        idx = torch.randint(0, ids.shape[0], (batch_size,), generator=g)
        inp, tgt = mask_tokens(ids[idx], mask_p, g)
        logits = enc.mlm_head(enc(inp))                                  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step, loss.item())
    enc.eval()
    with torch.no_grad():
        inp, tgt = mask_tokens(test_ids, mask_p, torch.Generator().manual_seed((seed + 1) % 2**64))   # the held-out masks' own stream
        pred = enc.mlm_head(enc(inp)).argmax(-1)
        hit = (pred == tgt)[tgt != -100].float()
    params = sum(p.numel() for n, p in enc.named_parameters() if not n.startswith("mlm_head"))
    return enc.requires_grad_(False), {"test_masked_word_accuracy": round(float(hit.mean()), 4),
                                       "final_train_loss": round(float(loss), 4), "params": params}


# ---- conditioning a generator ------------------------------------------------------------------
DEFAULT_ENCODER = "mlm-m"


def check_data(name: str, data: str) -> None:
    """A one-line ZooError unless the committed model ``name`` was trained on captions of ``data``."""
    rec = encoder_record(name)
    if rec.get("data") != data:
        raise ZooError(f"text model {name!r} reads captions of {rec.get('data')!r}, not of {data!r}: "
                       f"train one for it with `zoo text encoder --data {data}`")


def caption_embeddings(name: str, images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """The captions of uint8 images (seed ``seed``, by the captioner encoder ``name`` was trained
    with) and their (N, dim) embeddings by that frozen encoder: what a conditional model trains on."""
    captions = load_captioner(name).captions(images, labels, seed=seed)
    return captions, load_encoder(name).embed(captions)


def embed_prompts(model_or_config: Any, prompts: list[str] | str, n: int | None = None) -> torch.Tensor:
    """(len(prompts), cond_dim) float embeddings of ``prompts`` by the frozen text encoder that a
    conditional model (a ``Generator``, or its config) was trained with: the ``cond`` that
    ``Generator.sample`` takes. One string with ``n`` given: that prompt for all n images. A one-line
    ZooError for an unconditional model, a prompt count other than ``n``, or an unknown word (the
    message lists the vocabulary)."""
    config = getattr(model_or_config, "config", model_or_config)
    cond_dim = int(getattr(config, "cond_dim", 0))
    if cond_dim <= 0:
        name = getattr(model_or_config, "name", "")
        raise ZooError(f"this {name + ' ' if name else ''}model is unconditional: it takes no prompt "
                       f"(train it with --conditional)")
    if isinstance(prompts, str):
        prompts = [prompts] * (1 if n is None else n)
    prompts = list(prompts)
    if n is not None and len(prompts) != n:
        raise ZooError(f"{len(prompts)} prompts for {n} images: give one, or one per image")
    enc = load_encoder(config.text_encoder)
    if enc.dim != cond_dim:
        raise ZooError(f"text encoder {config.text_encoder!r} gives {enc.dim}-wide embeddings, "
                       f"the model takes {cond_dim}")
    return enc.embed(prompts)
