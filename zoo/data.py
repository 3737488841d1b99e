"""Datasets held whole in memory as uint8 tensors (N, C, H, W), with explicit splits.

Specs:
  fashion-mnist            Debian's dataset-fashion-mnist IDX files (or $ZOO_FASHION_MNIST)
  idx:PATH                 a folder of IDX files (MNIST / KMNIST / Fashion-MNIST naming)
  folder:PATH[,size=N][,mode=gray|rgb]   PNG/JPEG images; PATH/train and PATH/test if present
  synthetic[:SIZE[:CHANNELS]]            a small generated dataset of shapes, for tests
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from .errors import ZooError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
DOWNLOAD_ROOT = Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")) / "downloads"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {  # split -> (images, labels) stems
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclasses.dataclass
class Dataset:
    """One split: images uint8 (N, C, H, W), labels int64 (N,)."""
    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]


# ---- IDX -----------------------------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip'd), validating magic and size; raises ZooError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ZooError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise ZooError(f"{path}: not an IDX file (bad magic {raw[:4].hex() if raw else 'empty'})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ZooError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise ZooError(f"{path}: size mismatch: header says {dims} ({expected} bytes), file has {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_folder(folder: str | os.PathLike, split: str, name: str) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise ZooError(f"{name}: folder {folder} does not exist")
    img_stem, lab_stem = _IDX_NAMES[split]
    img_path, lab_path = _find(folder, img_stem), _find(folder, lab_stem)
    if img_path is None:
        raise ZooError(f"{name}: no {img_stem}[.gz] in {folder}")
    images = read_idx(img_path)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)
    else:
        raise ZooError(f"{img_path}: expected 3 or 4 dimensions, got {images.ndim}")
    if images.dtype != np.uint8:
        raise ZooError(f"{img_path}: expected uint8 pixels, got {images.dtype}")
    if lab_path is not None:
        labels = read_idx(lab_path).astype(np.int64)
        if labels.shape != (images.shape[0],):
            raise ZooError(f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    else:
        labels = np.zeros(images.shape[0], dtype=np.int64)
    if images.shape[0] == 0:
        raise ZooError(f"{img_path}: holds no images")
    return Dataset(name, split, torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), str(img_path))


def _fashion_mnist_dir(download: bool) -> Path:
    candidates = [os.environ.get("ZOO_FASHION_MNIST")] + list(FASHION_MNIST_DIRS) + [str(DOWNLOAD_ROOT / "FashionMNIST" / "raw")]
    for c in candidates:
        if c and _find(Path(c), _IDX_NAMES["train"][0]) is not None:
            return Path(c)
    if download:
        try:
            from torchvision.datasets import FashionMNIST
            FashionMNIST(str(DOWNLOAD_ROOT), train=True, download=True)
            FashionMNIST(str(DOWNLOAD_ROOT), train=False, download=True)
        except Exception as e:
            raise ZooError(f"fashion-mnist: download failed ({str(e).splitlines()[0][:200]})") from None
        return DOWNLOAD_ROOT / "FashionMNIST" / "raw"
    raise ZooError("fashion-mnist not found: run `apt-get install dataset-fashion-mnist` (Debian), "
                   "set ZOO_FASHION_MNIST=DIR, or pass --download")


# ---- image folders ------------------------------------------------------------------------
def _folder_options(parts: list[str]) -> tuple[int, str]:
    """(size, mode) from folder:PATH options ``size=N`` and ``mode=gray|rgb``, or a one-line ZooError."""
    opts = {}
    for p in parts:
        if "=" not in p:
            raise ZooError(f"bad folder option {p!r}: expected key=value (size=N, mode=gray|rgb)")
        k, v = p.split("=", 1)
        opts[k] = v
    size_text = opts.pop("size", "28")
    mode = opts.pop("mode", "gray")
    if opts:
        raise ZooError(f"unknown folder option(s): {', '.join(opts)} (known: size, mode)")
    if not size_text.isdigit() or not 1 <= int(size_text) <= 4096:
        raise ZooError(f"bad size={size_text!r}: a whole number of pixels from 1 to 4096")
    if mode not in ("gray", "rgb"):
        raise ZooError(f"bad mode {mode!r}: choose gray or rgb")
    return int(size_text), mode


def _load_folder(spec: str, split: str) -> Dataset:
    """PNG/JPEG files, labelled by their parent folder's name. Class numbers come from the class
    names of both splits together, so a class missing from one split does not shift the others."""
    from .images import decode_image, image_files
    parts = spec.split(",")
    root = Path(parts[0])
    size, mode = _folder_options(parts[1:])
    if not root.is_dir():
        raise ZooError(f"folder:{root}: no such directory")
    if (root / "train").is_dir() and (root / "test").is_dir():
        both = {sp: image_files(root / sp) for sp in ("train", "test")}
        files, every = both[split], both["train"] + both["test"]
    else:  # deterministic 90/10 split by a hash of the relative path
        every = image_files(root)

        def is_test(p: Path) -> bool:
            return hashlib.sha1(str(p.relative_to(root)).encode()).digest()[0] < 26  # ~10%
        files = [p for p in every if is_test(p) == (split == "test")]
    if not files:
        raise ZooError(f"folder:{root}: no PNG/JPEG images for split {split!r}")
    cls_idx = {c: i for i, c in enumerate(sorted({p.parent.name for p in every}))}
    # decoded once, at load time, never in the training loop
    arrs = [decode_image(p, mode=mode, size=size) for p in files]
    labels = [cls_idx[p.parent.name] for p in files]
    return Dataset(f"folder:{root}", split, torch.from_numpy(np.stack(arrs)), torch.tensor(labels), str(root))


# ---- synthetic --------------------------------------------------------------------------
def synthetic(split: str, size: int = 28, channels: int = 1, n: int | None = None) -> Dataset:
    """Deterministic shapes on a dark background: 4 classes (square, disc, bar, cross)."""
    n = n or (512 if split == "train" else 128)
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    imgs = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    for i in range(n):
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=g).tolist()
        r = int(torch.randint(size // 8, size // 4 + 1, (1,), generator=g))
        val = int(torch.randint(128, 256, (1,), generator=g))
        k = int(labels[i])
        if k == 0:
            m = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
        elif k == 1:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif k == 2:
            m = ((yy - cy).abs() <= max(1, r // 3)) & ((xx - cx).abs() <= r)
        else:
            m = (((yy - cy).abs() <= max(1, r // 3)) & ((xx - cx).abs() <= r)) | \
                (((xx - cx).abs() <= max(1, r // 3)) & ((yy - cy).abs() <= r))
        for c in range(channels):
            imgs[i, c][m] = max(0, val - 40 * c)
    return Dataset(f"synthetic:{size}:{channels}", split, imgs, labels, "generated")


# ---- entry point --------------------------------------------------------------------------
DATASET_NAMES = ("fashion-mnist", "synthetic")          # specs that are a bare name
DATASET_PREFIXES = ("idx:", "folder:", "synthetic:")    # specs that name a path or options after a prefix


def is_dataset_spec(text: str) -> bool:
    """Whether ``text`` has the form of a dataset spec (fashion-mnist, idx:PATH, folder:PATH,
    synthetic[:SIZE[:CHANNELS]]), the forms :func:`load_dataset` reads; a folder with such a name
    is reached as ./NAME."""
    return text in DATASET_NAMES or text.startswith(DATASET_PREFIXES)


def load_dataset(spec: str = "fashion-mnist", split: str = "train", *, download: bool = False) -> Dataset:
    """Load one split of a dataset spec (see module docstring). Errors are one-line ZooErrors."""
    if split not in ("train", "test"):
        raise ZooError(f"unknown split {split!r}: choose train or test")
    if not is_dataset_spec(spec):
        raise ZooError(f"unknown dataset {spec!r}: use fashion-mnist, idx:PATH, folder:PATH or synthetic")
    if spec == "fashion-mnist":
        return load_idx_folder(_fashion_mnist_dir(download), split, "fashion-mnist")
    if spec.startswith("idx:"):
        return load_idx_folder(spec[4:], split, spec)
    if spec.startswith("folder:"):
        return _load_folder(spec[7:], split)
    parts = spec.split(":")[1:]   # synthetic[:SIZE[:CHANNELS]]
    try:
        size = int(parts[0]) if parts else 28
        ch = int(parts[1]) if len(parts) > 1 else 1
    except ValueError:
        raise ZooError(f"bad synthetic spec {spec!r}: use synthetic[:SIZE[:CHANNELS]]") from None
    return synthetic(split, size, ch)
