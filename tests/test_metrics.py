"""Metric correctness (FID, KID, precision/recall, density/coverage, memorization), the reference
cache, evaluate() and `zoo eval`. Features come from a randomly initialised fmnist-cnn on synthetic data."""
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner

from zoo.cli import cli
from zoo.errors import ZooError
from zoo.metrics.evaluate import evaluate, noise_ceiling, real_vs_real, reference_features
from zoo.metrics.features import Extractor
from zoo.metrics.fid import fid_from_features, frechet_distance, gaussian_stats
from zoo.metrics.kid import kid
from zoo.metrics.prdc import memorization_score, prdc
from zoo.metrics.reference import dataset_reference, images_reference, load_stats, save_stats

import torchmetrics.image.fid as tm_fid  # a declared test dependency: a missing one must fail, not skip
import torchmetrics.image.kid as tm_kid

from helpers import data, random_cnn


class _Wrap(torch.nn.Module):
    """An extractor as torchmetrics' custom feature module (uint8 in, (N, num_features) out)."""

    def __init__(self, ext):
        super().__init__()
        self.ext, self.num_features = ext, ext.dim

    def forward(self, u):
        return self.ext(u)


def _gaussians(d=6, seed=0):
    g = np.random.default_rng(seed)
    a, b = g.normal(size=(d, d)), g.normal(size=(d, d))
    return np.zeros(d), a @ a.T / d + 0.1 * np.eye(d), 0.5 * g.normal(size=d), b @ b.T / d + 0.1 * np.eye(d)


# ---- FID -------------------------------------------------------------------------------------------
def test_frechet_distance_closed_form():
    mu1, s1, mu2, s2 = _gaussians()
    # independent route: scipy's general (Schur) sqrtm of the non-symmetric product
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    # commuting (diagonal) covariances: sum (sqrt a - sqrt b)^2 + |mu1 - mu2|^2
    a, b = np.array([1.0, 2.0, 0.5]), np.array([4.0, 0.5, 0.5])
    m = np.array([1.0, -1.0, 0.0])
    want = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + (m ** 2).sum()
    assert frechet_distance(m, np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_fid_of_gaussian_samples_matches_closed_form():
    mu1, s1, mu2, s2 = _gaussians()
    true = frechet_distance(mu1, s1, mu2, s2)      # 4.81
    g = np.random.default_rng(1)
    x = g.multivariate_normal(mu1, s1, size=20_000)
    y = g.multivariate_normal(mu2, s2, size=20_000)
    # the estimate's spread over seeds is ~0.05 at this n (measured over 30 seeds): allow 4 sigma
    assert fid_from_features(x, y) == pytest.approx(true, abs=0.2)
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10)


def test_fid_of_identical_sets_is_zero_and_defined_when_n_below_dim():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 64, generator=g, dtype=torch.float64) * 3 + 1
    assert abs(fid_from_features(x, x)) < 1e-8
    few = torch.randn(50, 128, generator=g, dtype=torch.float64)      # n < dim: singular covariances
    other = torch.randn(50, 128, generator=g, dtype=torch.float64) + 0.3
    assert abs(fid_from_features(few, few)) < 1e-8
    v = fid_from_features(few, other)
    assert isinstance(v, float) and np.isfinite(v) and v > 0


def test_fid_equals_torchmetrics_with_same_feature_extractor(ext):
    d = data()
    real = d.images[:256]
    for fake in (d.images[256:512].flip(-1), 255 - d.images[256:512]):
        m = tm_fid.FrechetInceptionDistance(feature=_Wrap(ext), normalize=False)
        m.update(real, real=True)
        m.update(fake, real=False)
        ours = fid_from_features(ext(real), ext(fake))
        assert ours == pytest.approx(float(m.compute()), rel=1e-4)


# ---- KID ---------------------------------------------------------------------------------------------
def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3000, 16, generator=g, dtype=torch.float64)
    mean, std = kid(x, y, subsets=50, subset_size=1000)
    shifted, _ = kid(x, y + 0.5, subsets=50, subset_size=1000)
    assert abs(mean) < 3e-3 and std > 0
    assert shifted > 0.05 and shifted > 30 * abs(mean)


def test_kid_equals_torchmetrics_on_the_whole_set(ext):
    d = data()
    real, fake = d.images[:200], 255 - d.images[200:400]
    m = tm_kid.KernelInceptionDistance(feature=_Wrap(ext), subsets=1, subset_size=200)
    m.update(real, real=True)
    m.update(fake, real=False)
    want = float(m.compute()[0])
    ours, std = kid(ext(real), ext(fake), subsets=3, subset_size=1000)   # subset = whole set, any order
    assert ours == pytest.approx(want, rel=1e-6) and std < 1e-12 * abs(ours) + 1e-15


# ---- precision / recall / density / coverage ----------------------------------------------------------
def test_prdc_identical_sets_and_disjoint_sets():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g, dtype=torch.float64)
    r = prdc(x, x)
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["coverage"] == 1.0
    assert 0.8 < r["density"] < 1.3
    far = prdc(x, x + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_against_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.randn(50, 3, generator=g, dtype=torch.float64) * 1.3 + 0.2
    dxx, dyy, dyx = (torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist") for a, b in ((x, x), (y, y), (y, x)))
    rx3 = dxx.sort(1).values[:, 3]              # column 0 is the point itself
    rx5 = dxx.sort(1).values[:, 5]
    ry3 = dyy.sort(1).values[:, 3]
    want = {"precision": (dyx <= rx3[None]).any(1).double().mean().item(),
            "recall": (dyx <= ry3[:, None]).any(0).double().mean().item(),
            "density": (dyx <= rx5[None]).double().sum().item() / (5 * 50),
            "coverage": (dyx.min(0).values <= rx5).double().mean().item()}
    got = prdc(x, y, chunk=7)                   # chunking must not matter
    assert got == pytest.approx(want)
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1


def test_memorization_score():
    d_test = torch.linspace(1, 2, 101, dtype=torch.float64)
    m = memorization_score(d_test.clone(), d_test)
    assert m["memorization"] == pytest.approx(1.0) and m["memorization_copy_frac"] == pytest.approx(0.05, abs=0.01)
    copies = memorization_score(torch.zeros(10, dtype=torch.float64), d_test)
    assert copies["memorization"] == 0 and copies["memorization_copy_frac"] == 1.0


@pytest.mark.parametrize("bad, word", [
    (torch.full((10, 4), float("nan")), "NaN"),
    (torch.full((10, 4), float("inf")), "infinite"),
    (torch.zeros(1, 4), "at least 2"),
    (torch.zeros(10), "2-D"),
])
def test_bad_features_raise_valueerror(bad, word):
    ok = torch.randn(10, 4)
    for fn in (fid_from_features, kid, prdc):
        with pytest.raises(ValueError, match=word):
            fn(ok, bad)


def test_prdc_with_n_not_above_k_is_a_one_line_zooerror(ext, tmp_cache):
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ZooError, match="at least k\\+1 = 6"):
        prdc(x, torch.randn(20, 4, dtype=torch.float64))          # k_dc = 5 needs 6 real rows
    few = data().images[:5]
    with pytest.raises(ZooError, match=r"density/coverage \(k=5\) need at least 6 images on each side"):
        evaluate(few, data="synthetic", features=ext, metrics="fid,dc")
    with pytest.raises(ZooError, match=r"precision/recall \(k=3\) need at least 4"):
        evaluate(few[:3], data="synthetic", features=ext, metrics="pr")
    assert np.isfinite(evaluate(few[:3], data="synthetic", features=ext, metrics="fid,kid")["fid"])


# ---- reference cache and evaluate() --------------------------------------------------------------
class Counting(Extractor):
    """Wraps an extractor and counts the images it embeds (to see cache hits)."""

    def __init__(self, inner, sha=None):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.weights_sha256 = sha or inner.weights_sha256
        self.count = 0

    def _embed(self, u):
        self.count += u.shape[0]
        return self.inner._embed(u)


def test_reference_cache_reused_and_invalidated(ext, tmp_cache, tmp_path):
    c = Counting(ext)
    a = reference_features("synthetic", "test", c, 64)
    assert c.count == 64 and a["features"].shape == (64, 128) and a["sigma"].shape == (128, 128)
    b = reference_features("synthetic", "test", c, 64)
    assert c.count == 64                                     # reused from disk
    assert torch.equal(a["features"], b["features"])
    reference_features("synthetic", "test", c, 65)
    assert c.count == 64 + 65                                # n changed
    c2 = Counting(ext, sha="0" * 64)
    reference_features("synthetic", "test", c2, 64)
    assert c2.count == 64                                    # weights hash changed
    c3 = Counting(random_cnn(tmp_path / "other.safetensors", seed=1))
    reference_features("synthetic", "test", c3, 64)
    assert c3.count == 64                                    # another extractor
    c3.name = "other-net"
    reference_features("synthetic", "test", c3, 64)
    assert c3.count == 128                                   # extractor name changed
    files = list((tmp_cache / "reference").glob("*.safetensors"))
    assert len(files) == 5
    for f in files:
        f.write_bytes(b"corrupt")                             # a damaged cache file is recomputed
    reference_features("synthetic", "test", c, 64)
    assert c.count == 64 + 65 + 64


def test_evaluate_fields_floor_and_ceiling(ext, tmp_cache):
    train = data().images
    res = evaluate(train[:100], data="synthetic", features=ext, n=100)
    for k in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "classifier_score",
              "memorization", "memorization_copy_frac"):
        assert np.isfinite(res[k]), k
    p = res["provenance"]
    assert p["extractor"] == "fmnist-cnn" and p["weights_sha256"] == ext.weights_sha256 and p["n"] == 100
    assert p["reference_split"] == "test" and p["data"] == "synthetic" and "zoo_version" in p and "git_commit" in p
    assert p["cpu"] and p["threads"] == torch.get_num_threads() and p["torch"] == torch.__version__   # the machine
    assert res["memorization"] == 0.0                        # samples are training images
    floor = real_vs_real("synthetic", 100, features=ext, metrics=("fid", "pr"))
    ceiling = noise_ceiling("synthetic", 100, features=ext, metrics=("fid", "pr"))
    assert floor["fid"] < ceiling["fid"] and floor["precision"] > ceiling["precision"]
    assert set(floor) >= {"fid", "precision", "recall", "provenance"} and "kid_mean" not in floor


@pytest.mark.parametrize("kwargs, word", [
    ({"fake": torch.zeros(5, 1, 28, 28)}, "uint8"),
    ({"fake": torch.zeros(1, 1, 28, 28, dtype=torch.uint8)}, "at least 2"),
    ({"fake": torch.zeros(5, 3, 28, 28, dtype=torch.uint8)}, "shape"),
    ({"fake": torch.zeros(5, 1, 28, 28, dtype=torch.uint8), "n": 10_000}, "more than"),
    ({"fake": torch.zeros(5, 1, 28, 28, dtype=torch.uint8), "metrics": "fid,is"}, "unknown metric"),
    ({"fake": torch.zeros(5, 1, 28, 28, dtype=torch.uint8), "metrics": ("bpd",)}, "needs a model"),
    ({"fake": torch.zeros(5, 1, 28, 28, dtype=torch.uint8), "split": "train"}, "held-out"),
])
def test_evaluate_bad_input(ext, tmp_cache, kwargs, word):
    fake = kwargs.pop("fake")
    with pytest.raises(ValueError, match=word):
        evaluate(fake, data="synthetic", features=ext, **kwargs)


# ---- zoo eval -----------------------------------------------------------------------------------
def test_eval_cli_on_samples_file(ext, tmp_cache, tmp_path):
    npz = tmp_path / "s.npz"
    np.savez(npz, images=data().images[:40, 0].numpy())          # (N, H, W) is accepted too
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["eval", str(npz), "--data", "synthetic", "--weights", str(ext.path),
                                 "--metrics", "fid,kid,pr,dc,cs", "--json", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text())
    assert rec["provenance"]["n"] == 40 and rec["provenance"]["weights_sha256"] == ext.weights_sha256
    assert "FID" in r.output and "classifier score" in r.output
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 1, 28, 28), np.float32))
    r = CliRunner().invoke(cli, ["eval", str(bad), "--data", "synthetic", "--weights", str(ext.path)])
    assert r.exit_code == 2 and "uint8" in r.output and "Traceback" not in r.output


def test_eval_cli_on_run_directory_samples_with_fixed_seeds(ext, tmp_cache, tmp_path):
    from helpers import train_tiny
    train_tiny("vae", tmp_path / "run", steps=2)
    args = ["eval", str(tmp_path / "run"), "--data", "synthetic", "--weights", str(ext.path), "--n", "24",
            "--metrics", "fid,pr,bpd", "--quiet"]
    recs = []
    for i in range(2):
        r = CliRunner().invoke(cli, args + ["--json", str(tmp_path / f"{i}.json")])
        assert r.exit_code == 0, r.output
        recs.append(json.loads((tmp_path / f"{i}.json").read_text()))
    assert recs[0]["family"] == "vae" and recs[0]["provenance"]["n"] == 24 and recs[0]["bpd_kind"] == "bound"
    assert recs[0]["fid"] == recs[1]["fid"] and recs[0]["precision"] == recs[1]["precision"]   # same seed, same samples
    r = CliRunner().invoke(cli, ["eval", "--real-vs-real", str(tmp_path / "run")])
    assert r.exit_code == 2 and "takes no SOURCE" in r.output


def test_eval_bpd_alone_does_not_sample(ext, tmp_cache, tmp_path, monkeypatch):
    """bits/dim needs only the model and the test images: no n samples are drawn (minutes for the GPT)."""
    from helpers import train_tiny
    from zoo.api import Generator
    train_tiny("vae", tmp_path / "run", steps=2)

    def no_sampling(*a, **k):
        raise AssertionError("sampled although only bpd was asked for")
    monkeypatch.setattr(Generator, "sample", no_sampling)
    out = tmp_path / "bpd.json"
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), "--data", "synthetic", "--weights", str(ext.path),
                                 "--n", "16", "--metrics", "bpd", "--quiet", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text())
    assert rec["bpd"] > 0 and rec["bpd_n"] == 16 and rec["provenance"]["n_fake"] == 0


# ---- references: any images, saved statistics ------------------------------------------------------
def test_saved_stats_reproduce_the_direct_numbers_exactly(ext, tmp_cache, tmp_path):
    fake = data().images[:64].flip(-1)
    mets = "fid,kid,pr,dc,cs"
    direct = evaluate(fake, data="synthetic", features=ext, metrics=mets)        # first 64 test images
    meta = save_stats(tmp_path / "ref.npz", dataset_reference("synthetic", "test", 64), ext)
    assert meta["n"] == 64 and meta["data"] == "synthetic" and meta["weights_sha256"] == ext.weights_sha256
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as z:                # plain arrays, no pickle
        assert set(z.files) == {"features", "mu", "sigma", "meta"}
    stats = load_stats(tmp_path / "ref.npz")
    cached = reference_features("synthetic", "test", ext, 64)
    for k in ("features", "mu", "sigma"):
        assert torch.equal(stats.stats[k], cached[k]), k
    test = data("synthetic", "test").images[:64]
    for ref in (stats, images_reference(test, "64 test images")):
        res = evaluate(fake, data="synthetic", features=ext, metrics=mets, ref=ref)
        for k in ("fid", "kid_mean", "precision", "recall", "density", "coverage", "classifier_score"):
            assert res[k] == direct[k], (ref.kind, k)
    assert res["provenance"]["reference"] == "64 test images"
    with pytest.raises(ZooError, match="holds only statistics"):
        evaluate(fake, data="synthetic", features=ext, metrics="fid,mem", ref=stats)
    with pytest.raises(ZooError, match="statistics made with fmnist-cnn"):
        evaluate(fake, data="synthetic", features=random_cnn(tmp_path / "o.safetensors", seed=1), metrics="fid",
                 ref=stats)


@pytest.mark.parametrize("content, word", [(b"", "cannot read statistics"), (b"PK\x03\x04junk", "cannot read"),
                                           (None, "not a zoo statistics file")])
def test_load_stats_refuses_bad_files_in_one_line(tmp_path, content, word):
    path = tmp_path / "ref.npz"
    if content is None:
        np.savez(path, images=np.zeros((2, 1, 4, 4), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(ZooError, match=word):
        load_stats(path)


def test_eval_cli_refuses_bad_inputs_in_one_line(ext, tmp_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("a.npy", np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "a.npy").rename("renamed.npz")
    np.savez("big.npz", images=np.zeros((8, 32, 32, 1), np.uint8))             # NHWC, 32x32
    np.savez("s.npz", images=data().images[:8].numpy())
    (tmp_path / "empty").mkdir()
    other = random_cnn(tmp_path / "other.safetensors", seed=1)
    w = ["--data", "synthetic", "--weights", str(ext.path), "--quiet"]
    assert CliRunner().invoke(cli, ["eval", "--save-stats", "ref.npz", "--n", "8", *w]).exit_code == 0
    cases = [(["renamed.npz"], "plain .npy"), (["big.npz"], "32x32 but the reference's are 28x28"),
             (["empty"], "no PNG/JPEG"), (["s.npz", "--n", "0"], "--n must be >= 2"), (["nothing"], "no such file"),
             (["s.npz", "--metrics", "fid", "--ref", "ref.npz", "--weights", str(other.path)], "statistics made with"),
             (["s.npz", "--metrics", "bpd"], "needs a model"), (["ref.npz"], "give it as --ref"),
             (["s.npz", "--ref", "synthetic", "--data", "fashion-mnist"], "two datasets")]
    for args, word in cases:
        r = CliRunner().invoke(cli, ["eval", *w, *args])                   # the case's options come last and win
        assert r.exit_code == 2 and word in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)
