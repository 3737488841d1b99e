"""Datasets: IDX parsing and its failure modes, synthetic data, folders, the one-line errors."""
import gzip
import struct

import numpy as np
import pytest
import torch

from zoo.data import load_dataset, read_idx
from zoo.errors import ZooError


def write_idx(path, arr: np.ndarray, gz=True):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    data = header + body
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture()
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 7)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 6, 6), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)).astype(np.uint8))
    return tmp_path


def test_idx_roundtrip(idx_dir):
    train = load_dataset(f"idx:{idx_dir}", "train")
    test = load_dataset(f"idx:{idx_dir}", "test")
    assert train.images.shape == (20, 1, 6, 6) and train.images.dtype == torch.uint8
    assert test.images.shape == (7, 1, 6, 6)
    assert train.labels.dtype == torch.int64 and train.labels.shape == (20,)
    raw = read_idx(idx_dir / "train-images-idx3-ubyte.gz")
    assert np.array_equal(train.images[:, 0].numpy(), raw)


def test_idx_uncompressed(tmp_path):
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    write_idx(tmp_path / "x.idx", arr, gz=False)
    assert np.array_equal(read_idx(tmp_path / "x.idx"), arr)


def test_bad_magic(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x12\x34\x08\x03" + b"\0" * 40)
    with pytest.raises(ZooError, match="bad magic"):
        read_idx(p)


def test_size_mismatch(tmp_path):
    p = tmp_path / "short.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 10, 28, 28) + b"\0" * 100)
    with pytest.raises(ZooError, match="size mismatch"):
        read_idx(p)


def test_truncated_gzip(idx_dir):
    p = idx_dir / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(ZooError, match="cannot read IDX"):
        load_dataset(f"idx:{idx_dir}", "train")


def test_label_count_mismatch(idx_dir):
    write_idx(idx_dir / "train-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ZooError, match="labels for"):
        load_dataset(f"idx:{idx_dir}", "train")


def test_missing_dataset_messages(tmp_path, monkeypatch):
    with pytest.raises(ZooError, match="does not exist"):
        load_dataset(f"idx:{tmp_path / 'nope'}")
    import zoo.data as data
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(tmp_path),))
    monkeypatch.setattr(data, "DOWNLOAD_ROOT", tmp_path / "dl")
    monkeypatch.delenv("ZOO_FASHION_MNIST", raising=False)
    with pytest.raises(ZooError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    with pytest.raises(ZooError, match="unknown dataset"):
        load_dataset("cifar-100")
    with pytest.raises(ZooError, match="unknown split"):
        load_dataset("synthetic", "valid")


def test_synthetic_deterministic_and_split():
    a, b = load_dataset("synthetic", "train"), load_dataset("synthetic", "train")
    t = load_dataset("synthetic", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images[: len(t)], t.images)
    assert load_dataset("synthetic:16:3").images.shape[1:] == (3, 16, 16)


def test_folder_dataset(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cats", "dogs"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    ds = load_dataset(f"folder:{tmp_path},size=16,mode=rgb", "train")
    assert ds.images.shape == (6, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert load_dataset(f"folder:{tmp_path}", "test").images.shape == (6, 1, 28, 28)
    with pytest.raises(ZooError, match="unknown folder option"):
        load_dataset(f"folder:{tmp_path},colour=red")


def test_fashion_mnist_if_installed():
    try:
        d = load_dataset("fashion-mnist", "test")
    except ZooError:
        pytest.skip("fashion-mnist not installed")
    assert d.images.shape == (10000, 1, 28, 28) and d.images.dtype == torch.uint8
    assert set(d.labels.unique().tolist()) == set(range(10))
