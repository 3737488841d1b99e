"""What samples are scored against: a dataset split, any set of images, or statistics saved once.

  dataset_reference(data, split, n)   the first n images of a dataset split
  images_reference(images, source)    any uint8 images: a .npz, a folder of PNGs, another model's samples
  load_stats(path)                    statistics written by :func:`save_stats`
  reference_stats(ref, extractor)     features (n, D), mean (D,) and covariance (D, D) of any of them

Dataset references are cached on disk under $ZOO_CACHE/reference/, keyed by the dataset spec, the
split, the extractor and its weights' sha256, n and the sha256 of the reference images' bytes (and
the device type, when not the CPU), so a change in any of them computes fresh statistics.

A statistics file is a plain .npz (read with allow_pickle=False): ``features`` (n, D), ``mu`` (D,)
and ``sigma`` (D, D) in float64, and ``meta``, a JSON string naming the extractor and its weights'
sha256, n, the image shape, what was summarised, the dataset and the zoo version. Its mean and
covariance come from the same :func:`~zoo.metrics.fid.gaussian_stats` as a direct computation's, so
FID against a saved file equals FID against the images it summarises.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import ZooError
from .features import Extractor, cache_root, check_images, data_key

CACHE_VERSION = 1     # bump when the way features are computed changes
STATS_FORMAT = "zoo-reference-stats"
STATS_VERSION = 1
STATS_ARRAYS = ("features", "mu", "sigma")


def images_sha256(u: torch.Tensor) -> str:
    """sha256 of the raw bytes of a uint8 image tensor (with its shape)."""
    h = hashlib.sha256(str(tuple(u.shape)).encode())
    h.update(u.contiguous().numpy().tobytes())
    return h.hexdigest()


def _cached(kind: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Tensors stored under a key in $ZOO_CACHE/reference; computed and written when absent or stale."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    blob = json.dumps({**key, "kind": kind, "cache_version": CACHE_VERSION}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
    folder = cache_root() / "reference"
    path = folder / f"{kind}-{data_key(str(key.get('data', '')))}-{key.get('split', '')}-{digest}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), "pt") as f:
                stored = (f.metadata() or {}).get("key")
            if stored == blob:
                return load_file(str(path))
        except Exception:  # a corrupt or truncated cache file is recomputed
            pass
    tensors = {k: v.contiguous() for k, v in compute().items()}
    folder.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"key": blob})
    return tensors


@contextlib.contextmanager
def replacing(path: Path, prefix: str = "") -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` when the block ends normally,
    removed when it raises anything (KeyboardInterrupt and SystemExit included)."""
    tmp = path.with_name(f"{prefix}{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _extractor_key(extractor: Extractor) -> dict:
    """The part of a cache key that names the extractor (and the device, when it is not the CPU)."""
    key = {"extractor": extractor.name, "weights_sha256": extractor.weights_sha256}
    if extractor.device.type != "cpu":   # float32 kernels differ between devices in the last bits
        key["device"] = extractor.device.type
    return key


def load_split(data: str, split: str, n: int | None):
    """(dataset split, n): n defaults to the whole split; one-line ZooError when n < 2 or too large."""
    from ..data import load_dataset
    ds = load_dataset(data, split)
    if n is None:
        n = len(ds)
    if n < 2:
        raise ZooError(f"n must be >= 2, got {n}")
    if n > len(ds):
        raise ZooError(f"n={n} is more than the {len(ds)} images of the {data} {split} split")
    return ds, n


def summarize(images: torch.Tensor, extractor: Extractor, *, batch_size: int = 500,
              progress: bool = False) -> dict[str, torch.Tensor]:
    """Features (n, D), mean (D,) and covariance (D, D), all float64, of uint8 images (n, C, H, W)."""
    from .fid import gaussian_stats
    f = extractor(images, batch_size=batch_size, progress=progress)   # (n, D) float64
    mu, sigma = gaussian_stats(f)
    return {"features": f, "mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}


def reference_features(data: str, split: str, extractor: Extractor, n: int | None = None, *,
                       batch_size: int = 500, progress: bool = False) -> dict[str, torch.Tensor]:
    """Features (n, D), mean (D,) and covariance (D, D) of the first n images of a split (cached)."""
    ds, n = load_split(data, split, n)
    images = ds.images[:n]
    key = {"data": data, "split": split, "n": n, **_extractor_key(extractor),
           "images_sha256": images_sha256(images)}
    return _cached("features", key, lambda: summarize(images, extractor, batch_size=batch_size, progress=progress))


def nearest_train_distances(data: str, split: str, images: torch.Tensor, domain: Extractor,
                            ref: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """(n,) nearest-training-image distances of the reference images ``images`` (cached)."""
    from .prdc import nearest_distance
    key = {"data": data, "split": split, "n": len(images), **_extractor_key(domain),
           "images_sha256": images_sha256(images), "train_features": len(train)}
    return _cached("nn-train", key, lambda: {"d": nearest_distance(ref, train)})["d"]



# ---- references ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Reference:
    """What samples are scored against.

    A dataset split sets ``data`` and ``split`` (memorization needs its train split); a set of
    images sets only ``images``; a statistics file sets ``stats``, ``meta`` and ``path`` and holds
    no images (so no bits/dim and no memorization against it).
    """
    source: str                                   # e.g. "first 2000 images of the fashion-mnist test split"
    n: int
    shape: tuple[int, int, int]                   # (C, H, W) of the images
    images: torch.Tensor | None = None            # uint8 (n, C, H, W)
    data: str | None = None
    split: str | None = None
    stats: dict[str, torch.Tensor] | None = None  # features, mu, sigma
    meta: dict | None = None
    path: str | None = None

    @property
    def kind(self) -> str:
        """'dataset', 'images' or 'stats'."""
        return "stats" if self.stats is not None else "dataset" if self.data is not None else "images"

    def check_extractor(self, extractor: Extractor) -> None:
        """One-line ZooError when saved statistics were made with another extractor or other weights."""
        if self.meta is None:
            return
        name, sha = self.meta.get("extractor"), str(self.meta.get("weights_sha256"))
        if (name, sha) == (extractor.name, extractor.weights_sha256):
            return
        made = f"{name} (weights sha256 {sha[:12]}"
        made += f", for {self.meta['data']})" if self.meta.get("data") else ")"
        raise ZooError(f"{self.path}: statistics made with {made} but this evaluation uses {extractor.name} "
                       f"(weights sha256 {extractor.weights_sha256[:12]}): choose the same --features/--data/"
                       f"--weights, or save the statistics again")

    def describe(self) -> dict:
        """Provenance fields of this reference."""
        d: dict = {"reference": self.source}
        if self.split is not None:
            d = {"reference_split": self.split, **d}
        if self.meta is not None:
            d["reference_stats"] = {"file": self.path, **{k: self.meta.get(k) for k in (
                "source", "n", "extractor", "weights_sha256", "data", "zoo_version", "git_commit", "date")}}
        return d


def dataset_reference(data: str, split: str = "test", n: int | None = None) -> Reference:
    """The first n images (default: all) of a dataset split."""
    ds, n = load_split(data, split, n)
    return Reference(source=f"first {n} images of the {data} {split} split", n=n, shape=tuple(ds.shape),
                     images=ds.images[:n], data=data, split=split)


def images_reference(images, source: str) -> Reference:
    """Any uint8 images (n, C, H, W), n >= 2; ``source`` says where they came from."""
    u = check_images(images, min_n=2, what="reference images")
    return Reference(source=source, n=u.shape[0], shape=tuple(u.shape[1:]), images=u)


def reference_stats(ref: Reference, extractor: Extractor, *, batch_size: int = 500,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """Features (n, D), mu (D,) and sigma (D, D) of a reference under ``extractor``: stored for a
    statistics file, cached for a dataset split, computed for a set of images."""
    ref.check_extractor(extractor)
    if ref.stats is not None:
        return ref.stats
    if ref.data is not None:
        return reference_features(ref.data, ref.split, extractor, ref.n, batch_size=batch_size, progress=progress)
    return summarize(ref.images, extractor, batch_size=batch_size, progress=progress)


# ---- statistics files ----------------------------------------------------------------------------
def save_stats(path: str | os.PathLike, ref: Reference, extractor: Extractor, *, data: str | None = None,
               batch_size: int = 500, progress: bool = False) -> dict:
    """Summarise ``ref`` with ``extractor`` and write a statistics .npz (atomically); returns its metadata.

    ``data``: the dataset the extractor's weights (and the domain classifier) belong to, recorded
    so that a later ``zoo eval --ref FILE`` picks the same weights; default ``ref.data``.
    """
    from ..version import __version__
    from ..provenance import git_commit
    path = Path(path)
    if path.suffix != ".npz":
        raise ZooError(f"a statistics file must end in .npz, got {path.name!r}")
    if ref.kind == "stats":
        raise ZooError(f"{ref.path} already holds statistics")
    stats = reference_stats(ref, extractor, batch_size=batch_size, progress=progress)
    meta = {"format": STATS_FORMAT, "format_version": STATS_VERSION, **extractor.describe(),
            "device": str(extractor.device), "n": ref.n, "image_shape": list(ref.shape), "source": ref.source,
            "data": data or ref.data, "split": ref.split, "images_sha256": images_sha256(ref.images),
            "zoo_version": __version__, "git_commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, prefix=".") as tmp, open(tmp, "wb") as fh:   # a file object: numpy would append .npz
        np.savez(fh, **{k: stats[k].numpy() for k in STATS_ARRAYS}, meta=np.array(json.dumps(meta)))
    return meta


def is_stats_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a .npz holding the arrays of a statistics file (not images)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return {f"{k}.npy" for k in (*STATS_ARRAYS, "meta")} <= names


def load_stats(path: str | os.PathLike) -> Reference:
    """A statistics file written by :func:`save_stats`, checked; one-line ZooErrors for anything else."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ZooError(f"{path}: not a .npz archive")
            missing = [k for k in (*STATS_ARRAYS, "meta") if k not in z.files]
            if missing:
                raise ZooError(f"{path}: not a zoo statistics file (no {', '.join(missing)})")
            arrays = {k: z[k] for k in STATS_ARRAYS}
            meta = json.loads(str(z["meta"].item()))
    except ZooError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:   # JSONDecodeError is a ValueError
        msg = str(e).splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ZooError(f"{path}: cannot read statistics ({msg}): empty, truncated or not a statistics file") from None
    if not isinstance(meta, dict) or meta.get("format") != STATS_FORMAT:
        raise ZooError(f"{path}: not a zoo statistics file (meta has no format {STATS_FORMAT!r})")
    if int(meta.get("format_version", 0)) > STATS_VERSION:
        raise ZooError(f"{path}: statistics format {meta.get('format_version')} is newer than this zoo reads; upgrade zoo")
    f, mu, sigma = (arrays[k] for k in STATS_ARRAYS)
    n = f.shape[0] if f.ndim == 2 else -1
    if (f.ndim != 2 or mu.shape != (f.shape[1],) or sigma.shape != (f.shape[1],) * 2 or n != meta.get("n")
            or any(a.dtype != np.float64 for a in (f, mu, sigma)) or len(meta.get("image_shape") or ()) != 3):
        raise ZooError(f"{path}: inconsistent statistics (features {f.shape}, mu {mu.shape}, sigma {sigma.shape}, "
                       f"n {meta.get('n')})")
    if not all(np.isfinite(a).all() for a in (f, mu, sigma)):
        raise ZooError(f"{path}: statistics contain NaN or infinite values")
    return Reference(source=str(meta.get("source", path)), n=n, shape=tuple(int(s) for s in meta["image_shape"]),
                     stats={k: torch.from_numpy(a) for k, a in arrays.items()}, meta=meta, path=str(path))
