"""The one conversion between stored uint8 images and the float range models see.

Models receive images in [-1, 1]: ``x = u / 127.5 - 1`` for 8-bit values u in {0..255},
so ``u = round((x + 1) * 127.5)`` recovers them exactly. Families with a discrete likelihood
use ``to_levels`` to get the integer pixel values back.

Image files: ``read_images`` takes a ``.npz`` of uint8 arrays or a folder of PNG/JPEG files;
``write_images`` writes a PNG grid, a ``.npz`` or a folder of one PNG per image.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .errors import ZooError
from .files import INCOMPLETE_FILE

BINS = 256


def to_float(u: torch.Tensor) -> torch.Tensor:
    """uint8 (N,C,H,W) in {0..255} -> float32 in [-1, 1]."""
    if u.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {u.dtype}")
    return u.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in {0..255} on the CPU (values outside are clamped)."""
    return ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> int64 pixel levels in {0..255} (same rounding as to_uint8)."""
    return ((x.detach() + 1.0) * 127.5).round().clamp(0, 255).long()


# ---- files ---------------------------------------------------------------------------------
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def decode_image(path: str | os.PathLike, *, mode: str | None = None, size: int | None = None) -> np.ndarray:
    """One PNG/JPEG file as uint8 (C, H, W). ``mode``: "gray" or "rgb" to convert (None: keep gray
    as gray and turn anything else into RGB); ``size``: bilinear resize to size x size."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            if mode is None:
                mode = "gray" if im.mode in ("L", "LA", "I;16", "1") else "rgb"
            im = im.convert("L" if mode == "gray" else "RGB")
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ZooError(f"{path}: cannot decode image ({str(e).splitlines()[0][:160]})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def check_complete(folder: str | os.PathLike) -> None:
    """A one-line ZooError when ``folder`` carries the mark of a `zoo sample` that did not finish."""
    if (Path(folder) / INCOMPLETE_FILE).exists():
        raise ZooError(f"{folder}: incomplete (an interrupted `zoo sample`); sample it again with --force")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """PNG/JPEG files below ``folder`` (recursively), sorted by path; names starting with '.' (temporary
    files, hidden folders) are skipped. A folder marked incomplete is a one-line ZooError."""
    root = Path(folder)
    check_complete(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_image_folder(folder: str | os.PathLike) -> torch.Tensor:
    """Every PNG/JPEG below ``folder``, sorted by path, as uint8 (N, C, H, W); all must share one size.
    Gray files stay one channel; if any file is colour, every image is read as RGB."""
    files = image_files(folder)
    if not files:
        raise ZooError(f"{folder}: no PNG/JPEG images in this folder")
    arrs = [decode_image(p) for p in files]
    if any(a.shape[0] == 3 for a in arrs):
        arrs = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrs]
    shapes = {a.shape for a in arrs}
    if len(shapes) > 1:
        raise ZooError(f"{folder}: images differ in size ({', '.join(sorted(str(s[1:]) for s in shapes)[:3])}...);"
                       f" resize them to one size first")
    return torch.from_numpy(np.stack(arrs))


def read_npz(path: str | os.PathLike) -> torch.Tensor:
    """uint8 (N, C, H, W) from a .npz: the array 'images' (or its only array), laid out NCHW, NHWC
    or NHW, gray (C=1) or RGB (C=3). Never unpickles."""
    import zipfile
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ZooError(f"{path}: not a .npz archive (a plain .npy array?); save with numpy.savez")
        with z:
            keys = list(z.keys())
            key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ZooError(f"{path}: no 'images' array (found {', '.join(keys) or 'nothing'})")
            a = z[key]
    except ZooError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        msg = str(e).splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ZooError(f"{path}: cannot read images ({msg}): empty, truncated or not a .npz") from None
    if a.dtype != np.uint8:
        raise ZooError(f"{path}: images must be uint8 in 0..255, got {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ZooError(f"{path}: expected images (N,H,W), (N,C,H,W) or (N,H,W,C) with C 1 or 3, got {a.shape}")
    if a.shape[0] == 0:
        raise ZooError(f"{path}: holds no images")
    return torch.from_numpy(np.ascontiguousarray(a))


def read_images(path: str | os.PathLike) -> torch.Tensor:
    """uint8 (N, C, H, W) images from a .npz file or a folder of PNG/JPEG files."""
    p = Path(path)
    if p.is_dir():
        return read_image_folder(p)
    if not p.exists():
        raise ZooError(f"{path}: no such file or folder")
    if p.suffix.lower() != ".npz":
        raise ZooError(f"{path}: expected a .npz of uint8 images or a folder of PNG/JPEG files")
    return read_npz(p)


def match_channels(images: torch.Tensor, channels: int, *, what: str = "images") -> torch.Tensor:
    """Images with ``channels`` channels: gray -> RGB by repetition; RGB -> gray only when the three
    channels are equal everywhere (a gray image saved as RGB). Anything else is a ZooError."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1 and torch.equal(images[:, :1].expand(-1, 3, -1, -1), images):
        return images[:, :1].contiguous()
    raise ZooError(f"{what} have {c} channels but the reference has {channels}")


def is_folder_target(out: str) -> bool:
    """Whether an --out names a folder (ends with a slash, or is an existing folder)."""
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def check_image_target(out: str) -> None:
    """A one-line ZooError unless ``out`` names something write_images can write."""
    if not is_folder_target(out) and Path(out).suffix not in (".npz", ".png"):
        raise ZooError(f"--out must end in .png (a grid), .npz, or / (a folder of PNGs), got {Path(out).name!r}")


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """What :func:`write_images` may have written at the top of ``folder``: images, their temporary
    files and the incomplete mark (what a replacing write removes)."""
    return [p for p in Path(folder).iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_EXTS
                                                                   or p.name == INCOMPLETE_FILE)]


def write_images(images: torch.Tensor, out: str | os.PathLike, *, nrow: int | None = None) -> Path:
    """Save uint8 (N, C, H, W): a ``.png`` grid (torchvision's make_grid), a ``.npz`` ('images',
    NCHW), or, for a folder (``out`` ending in '/'), one PNG per image named 000000.png, 000001.png, ...
    Files appear atomically (written to a temporary name, then renamed). A folder is marked
    incomplete (``zoo.files.INCOMPLETE_FILE``) from before its first image until after its last,
    and the images it held before are removed first, so it always holds one whole set or the mark."""
    from torchvision.utils import make_grid, save_image
    out = str(out)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"write_images needs uint8 (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
    if is_folder_target(out):
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        mark = folder / INCOMPLETE_FILE
        mark.write_text("being written by zoo; an interrupted write leaves this file\n")
        for p in folder_images(folder):
            if p != mark:
                p.unlink()
        digits = max(6, len(str(max(0, images.shape[0] - 1))))
        for i, im in enumerate(images):
            path = folder / f"{i:0{digits}d}.png"
            tmp = folder / f".{path.name}.tmp.png"
            save_image(im.float() / 255.0, str(tmp))
            os.replace(tmp, path)
        mark.unlink()
        return folder
    check_image_target(out)
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{p.suffix}")
    if p.suffix == ".npz":
        np.savez_compressed(tmp, images=images.numpy())
    else:
        nrow = nrow or max(1, int(round(images.shape[0] ** 0.5)))
        save_image(make_grid(images.float() / 255.0, nrow=nrow, padding=2, pad_value=1.0), str(tmp))
    os.replace(tmp, p)
    return p
