"""The domain feature network (``fmnist-cnn``): a small deterministic CNN classifier and its training.

Network (1x28x28 input; ~17 MFLOP per image, counted with FlopCounterMode in the tests):
  conv3x3(C->32) BN ReLU maxpool2 | conv3x3(32->64) BN ReLU maxpool2 | conv3x3(64->128) BN ReLU
  | flatten | linear(128*7*7 -> 128) ReLU  <- the 128-d features (penultimate layer)
  | dropout | linear(128 -> classes)

Training is deterministic for a given seed and thread count: one ``torch.Generator`` drives
the initialisation, the batch order, the augmentation (random 2-pixel shifts and horizontal
flips) and dropout, and ``torch.use_deterministic_algorithms`` is on while training.
Weights are stored as safetensors with the network's shape config in the file's metadata.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ZooError


@dataclasses.dataclass
class CNNConfig:
    """Shape of the feature network; stored in the safetensors metadata under ``"config"``."""
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    widths: tuple[int, int, int] = (32, 64, 128)
    stem: tuple[int, ...] = ()          # extra full-resolution convs before the first stage
    feat_dim: int = 128
    dropout: float = 0.1


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class FeatureCNN(nn.Module):
    """Classifier whose penultimate activations are the ``fmnist-cnn`` features."""

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        if cfg.image_size % 4:
            raise ZooError(f"fmnist-cnn needs an image size divisible by 4, got {cfg.image_size}")
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        chans = (cfg.in_channels, *cfg.stem)
        stem = [_conv_bn(a, b) for a, b in zip(chans[:-1], chans[1:])]
        self.body = nn.Sequential(*stem, _conv_bn(chans[-1], w1), nn.MaxPool2d(2),
                                  _conv_bn(w1, w2), nn.MaxPool2d(2),
                                  _conv_bn(w2, w3))
        side = cfg.image_size // 4
        self.fc = nn.Linear(w3 * side * side, cfg.feat_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feat_dim, cfg.num_classes)

    @staticmethod
    def prep(u: torch.Tensor) -> torch.Tensor:
        """uint8 (B,C,H,W) -> float32 in [-1, 1] (the project's image convention)."""
        return u.to(torch.float32) / 127.5 - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float in [-1, 1] -> (B, feat_dim) penultimate activations."""
        h = self.body(x)                       # (B, w3, H/4, W/4)
        return F.relu(self.fc(h.flatten(1)))   # (B, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float in [-1, 1] -> (B, num_classes) logits."""
        return self.head(self.drop(self.features(x)))


# ---- save / load ---------------------------------------------------------------------------
def file_sha256(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes (sha256 unless ``algo`` names another hashlib algorithm)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_cnn(net: FeatureCNN, path: str | Path, meta: dict | None = None) -> str:
    """Write ``net`` as safetensors (config + ``meta`` in the header); returns the file's sha256."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    md = {"config": json.dumps(dataclasses.asdict(net.cfg)), "format": "zoo.fmnist-cnn.v1"}
    md.update({k: str(v) for k, v in (meta or {}).items()})
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=md)
    tmp.replace(path)
    return file_sha256(path)


def load_cnn(path: str | Path) -> tuple[FeatureCNN, dict]:
    """Rebuild a FeatureCNN from a safetensors file written by :func:`save_cnn`: (net in eval mode, metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"feature network weights not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            md = f.metadata() or {}
        state = load_file(str(path))
        raw = json.loads(md["config"])
    except Exception as e:  # corrupt header, missing config, bad JSON
        raise ZooError(f"cannot read feature network {path}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
    raw["widths"] = tuple(raw["widths"])
    raw["stem"] = tuple(raw.get("stem", ()))
    net = FeatureCNN(CNNConfig(**raw))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ZooError(f"{path}: weights do not match the fmnist-cnn network ({str(e).splitlines()[0][:200]})") from None
    net.eval()
    return net, md


# ---- training --------------------------------------------------------------------------------
def augment(u: torch.Tensor, gen: torch.Generator, *, shift: int = 2, flip: bool = True) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (zero padding) and horizontal flips; uint8 in and out."""
    b, c, h, w = u.shape
    if shift > 0:
        padded = F.pad(u, (shift, shift, shift, shift))                       # (B, C, H+2s, W+2s)
        oy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]              # (B, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]              # (B, 1, 1, W)
        bi = torch.arange(b)[:, None, None, None]
        ci = torch.arange(c)[None, :, None, None]
        u = padded[bi, ci, rows, cols]                                        # (B, C, H, W)
    if flip:
        m = torch.rand(b, generator=gen) < 0.5
        u = torch.where(m[:, None, None, None], u.flip(-1), u)
    return u


@torch.no_grad()
def accuracy(net: FeatureCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on uint8 images."""
    was = net.training
    net.eval()
    correct = 0
    for s in range(0, len(images), batch_size):
        pred = net(net.prep(images[s:s + batch_size])).argmax(1)
        correct += int((pred == labels[s:s + batch_size]).sum())
    net.train(was)
    return correct / max(1, len(images))


def train_cnn(train_images: torch.Tensor, train_labels: torch.Tensor, *, test_images: torch.Tensor | None = None,
              test_labels: torch.Tensor | None = None, epochs: int = 24, batch_size: int = 128, lr: float = 0.05,
              weight_decay: float = 5e-4, seed: int = 0, shift: int = 2, flip: bool = True, dropout: float = 0.1,
              widths: tuple[int, int, int] = (32, 64, 128), stem: tuple[int, ...] = (),
              progress: bool = False, log=print) -> tuple[FeatureCNN, dict]:
    """Train the feature CNN with SGD (Nesterov momentum) and a cosine schedule; returns (net, info).

    Deterministic given ``seed`` and the thread count (recorded in ``info``).
    """
    if train_images.dtype != torch.uint8 or train_images.dim() != 4:
        raise ZooError(f"expected uint8 (N,C,H,W) training images, got {train_images.dtype} {tuple(train_images.shape)}")
    n, c, h, w = train_images.shape
    if h != w:
        raise ZooError(f"fmnist-cnn needs square images, got {h}x{w}")
    num_classes = int(train_labels.max()) + 1
    if num_classes < 2:
        raise ZooError("the feature network needs labelled data with at least 2 classes")
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    # init and dropout draw from the global RNG: seed it, and restore the caller's state after
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            cfg = CNNConfig(in_channels=c, image_size=h, num_classes=num_classes, widths=tuple(widths),
                            stem=tuple(stem), dropout=dropout)
            net, info = _fit(cfg, train_images, train_labels, test_images, test_labels, epochs,
                             batch_size, lr, weight_decay, seed, shift, flip, progress, log)
        finally:
            torch.use_deterministic_algorithms(prev_det)
    return net, info


def _fit(cfg, train_images, train_labels, test_images, test_labels, epochs, batch_size, lr,
         weight_decay, seed, shift, flip, progress, log) -> tuple[FeatureCNN, dict]:
    """The training loop of :func:`train_cnn` (called with the global RNG seeded and forked)."""
    n = train_images.shape[0]
    gen = torch.Generator().manual_seed(seed)
    net = FeatureCNN(cfg)
    net = net.to(memory_format=torch.channels_last)  # ~3x faster convs and pooling on the CPU
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    warm = min(steps_per_epoch, max(1, total // 20))

    def lr_at(step: int) -> float:
        if step < warm:
            return lr * (step + 1) / warm
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc="train fmnist-cnn", unit="step", disable=not progress)
    t0, step, history = time.perf_counter(), 0, []
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss = 0.0
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            x = net.prep(augment(train_images[idx], gen, shift=shift, flip=flip))
            x = x.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(net(x), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(idx)
            step += 1
            bar.update(1)
        rec = {"epoch": ep + 1, "train_loss": tot_loss / n, "wall_s": time.perf_counter() - t0}
        if test_images is not None:
            rec["test_accuracy"] = accuracy(net, test_images, test_labels)
        history.append(rec)
        if log is not None:
            log(json.dumps(rec))
    bar.close()
    net.eval()
    info = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
            "augment": {"shift": shift, "flip": flip}, "dropout": cfg.dropout, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "wall_s": round(time.perf_counter() - t0, 1), "history": history}
    if test_images is not None:
        info["test_accuracy"] = accuracy(net, test_images, test_labels)
    return net, info


def class_shares(probs: torch.Tensor) -> dict:
    """The predicted-class histogram of samples (argmax of ``probs`` (N, K)) and its smallest and
    largest shares: a family that drops a class shows a smallest share far below 1/K."""
    if probs.dim() != 2 or probs.shape[0] < 1:
        raise ZooError(f"class probabilities must be (N, K), got {tuple(probs.shape)}")
    hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1])   # (K,)
    n = probs.shape[0]
    return {"class_hist": hist.tolist(), "min_class_share": float(hist.min()) / n,
            "max_class_share": float(hist.max()) / n}


def classifier_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x) over the samples: the Inception
    Score's formula, taken with the domain classifier on one split. Between 1 and the class count."""
    p = probs.to(torch.float64)                                   # (N, K)
    if p.dim() != 2 or p.shape[0] < 1:
        raise ZooError(f"class probabilities must be (N, K), got {tuple(p.shape)}")
    py = p.mean(dim=0, keepdim=True)                              # (1, K)
    kl = (torch.special.xlogy(p, p) - torch.special.xlogy(p, py)).sum(dim=1)   # (N,)
    return float(torch.exp(kl.mean()))
