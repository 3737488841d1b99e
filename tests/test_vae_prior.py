"""The learned mixture prior of the VAE and the VAE-GAN (``prior=mixture``, zoo.nn.mixture): it fits a
known mixture, samples per image seed, leaves the autoencoder's training alone, and is what both
sampling and the bound use."""
import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import rng
from zoo.distributions import standard_normal_logp
from zoo.images import to_float
from zoo.nn.mixture import GaussianMixture

from helpers import data, tiny

ZOO = str(Path(sys.executable).parent / "zoo")


def true_mixture():
    """Two well-separated 2-D Gaussians, weights 0.7 / 0.3, one of them correlated."""
    means = torch.tensor([[-2.0, 0.0], [3.0, 1.0]])
    tril = torch.tensor([[[0.5, 0.0], [0.3, 0.4]], [[1.0, 0.0], [0.0, 0.3]]])
    return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(torch.tensor([0.7, 0.3])),
                                                 torch.distributions.MultivariateNormal(means, scale_tril=tril))


def test_fits_a_known_mixture_by_gradient_descent():
    torch.manual_seed(0)
    truth = true_mixture()
    z = truth.sample((4000,))
    gm = GaussianMixture(2, 2)
    opt = torch.optim.Adam(gm.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        (-gm.log_prob(z).mean()).backward()
        opt.step()
    with torch.no_grad():
        fitted, best = gm.log_prob(z).mean().item(), truth.log_prob(z).mean().item()
        weights = gm.logits.softmax(0).sort().values
    # maximum likelihood on the sample: at least the true parameters' fit, give or take the optimizer
    assert fitted > best - 0.02, (fitted, best)
    assert torch.allclose(weights, torch.tensor([0.3, 0.7]), atol=0.03), weights


def test_samples_are_per_image_and_follow_the_density():
    torch.manual_seed(0)
    gm = GaussianMixture(3, 4)
    with torch.no_grad():
        gm.lower.normal_()
        gm.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    batch = gm.sample(rng.generators(7, 0, 6))
    one_by_one = torch.cat([gm.sample(rng.generators(7, i, 1)) for i in range(6)])
    assert torch.equal(batch, one_by_one)                                   # a sample depends on its own seed only
    z = torch.cat([gm.sample(rng.generators(1, i, 1000)) for i in range(0, 20000, 1000)])
    d = gm.distribution()
    assert torch.allclose(z.mean(0), d.mean.detach(), atol=0.08), (z.mean(0), d.mean)
    assert torch.allclose(z.var(0), d.variance.detach(), rtol=0.06), (z.var(0), d.variance)


def test_one_standard_component_is_the_normal_prior():
    torch.manual_seed(0)
    z = torch.randn(5, 7, 3)
    gm = GaussianMixture(3, 1)
    with torch.no_grad():
        gm.means.zero_()
    assert torch.allclose(gm.log_prob(z), standard_normal_logp(z).sum(-1), atol=1e-5)
    # ... so the VAE's bound with it equals the bound under N(0, I), for the same posterior draws
    torch.manual_seed(0)
    m = tiny("vae", prior="mixture", prior_components=1).eval()
    with torch.no_grad():
        m.mixture.means.zero_()
    x = to_float(data().images[:4])
    torch.manual_seed(1)
    with_mixture = m.log_prob(x, k=3)
    m.mixture = None
    torch.manual_seed(1)
    assert torch.allclose(with_mixture, m.log_prob(x, k=3), atol=1e-4)


@pytest.mark.parametrize("family", ["vae", "vae_gan"])
def test_samples_and_bounds_with_its_mixture(family):
    torch.manual_seed(0)
    m = tiny(family, prior="mixture", prior_components=3).eval()
    gens = rng.generators(0, 0, 4)
    z = m.mixture.sample(rng.generators(0, 0, 4))
    assert torch.equal(m.generate(gens), m.decode(z)[0].clamp(-1, 1))
    x = to_float(data().images[:4])
    torch.manual_seed(1)
    before = m.log_prob(x, k=3)
    with torch.no_grad():
        m.mixture.means.add_(3.0)                                           # a prior far from q(z): a worse bound
    torch.manual_seed(1)
    assert (m.log_prob(x, k=3) < before).all()


@pytest.mark.parametrize("family, phase", [("vae", "main"), ("vae_gan", "vae")])
def test_the_mixture_does_not_train_the_autoencoder(family, phase):
    torch.manual_seed(0)
    m = tiny(family, prior="mixture", prior_components=3)
    x = to_float(data().images[:8])
    start = copy.deepcopy(m.state_dict())     # D's spectral norm moves its power-iteration vectors each forward
    torch.manual_seed(1)
    out = m.loss(x, phase=phase)
    out["loss"].backward()
    assert out["prior_nll"] > 0 and all(p.grad.abs().sum() > 0 for p in m.mixture.parameters())
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None and not n.startswith("mixture.")}
    assert grads
    m.zero_grad()
    m.load_state_dict(start)
    mixture, m.mixture = m.mixture, None
    torch.manual_seed(1)
    m.loss(x, phase=phase)["loss"].backward()                              # without the prior's term, same draws
    assert {n for n, p in m.named_parameters() if p.grad is not None} == set(grads)
    assert all(torch.allclose(p.grad, grads[n]) for n, p in m.named_parameters() if p.grad is not None)
    m.mixture = mixture
    groups = m.configure_optimizer(phase, m.param_groups()[phase]).param_groups
    assert [g["lr"] for g in groups] == [m.config.lr, m.config.prior_lr]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in mixture.parameters()}
    assert all(id(p) not in {id(q) for q in groups[0]["params"]} for p in mixture.parameters())


def test_trains_saves_and_samples_through_the_command(tmp_path):
    out = tmp_path / "run"
    args = ["train", "vae", "--data", "synthetic", "--quiet", "--steps", 3, "--batch-size", 8,
            "--set", "widths=8,16,16", "--set", "latent_dim=4", "--set", "prior=mixture",
            "--set", "prior_components=2", "--out", out]
    r = subprocess.run([ZOO, *map(str, args)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([ZOO, "sample", str(out), "--n", "2", "--out", str(tmp_path / "g.png")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and (tmp_path / "g.png").exists(), r.stderr
    m = zoo.load(out)
    assert m.mixture is not None and m.mixture.means.shape == (2, 4)
    assert math.isfinite(float(m.mixture.log_prob(torch.zeros(4)).detach()))


@pytest.mark.parametrize("setting, message", [("prior=flat", "unknown VAE prior 'flat'"),
                                              ("prior_components=0", "prior_components must be >= 1")])
def test_bad_prior_exits_2_in_one_line(tmp_path, setting, message):
    out = tmp_path / "run"
    r = subprocess.run([ZOO, "train", "vae", "--data", "synthetic", "--quiet", "--steps", "2", "--set", "prior=mixture",
                        "--set", setting, "--out", str(out)], capture_output=True, text=True, timeout=180)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and message in r.stderr, r.stderr
    assert not out.exists()


def test_a_conditional_mixture_learns_weights_per_condition_and_the_null_one_is_caption_free():
    torch.manual_seed(0)
    cond = torch.eye(2)[torch.randint(0, 2, (2000,))]                      # one-hot "captions"
    z = torch.where(cond[:, :1] > 0, -3.0, 3.0) + 0.5 * torch.randn(2000, 1)  # caption 0 -> z near -3, 1 -> +3
    gm = GaussianMixture(1, 2, cond_dim=2)
    assert torch.equal(gm.weight_logits(torch.zeros(3, 2)), gm.logits.expand(3, -1))  # W = 0 at the start
    opt = torch.optim.Adam(gm.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        (-gm.log_prob(z, cond).mean()).backward()
        opt.step()
    with torch.no_grad():
        for c, sign in ((0, -1.0), (1, 1.0)):
            draws = torch.cat([gm.sample(rng.generators(c, i, 1), torch.eye(2)[c:c + 1]) for i in range(200)])
            assert (draws * sign > 0).float().mean() > 0.95                 # a caption's draws sit at its cluster
        both = gm.sample(rng.generators(5, 0, 400))                          # the null condition: both clusters
        assert 0.3 < (both > 0).float().mean() < 0.7
        zk = torch.randn(4, 3, 1)                                            # (B, k, D) against (B, cond_dim)
        c4 = torch.eye(2)[[0, 1, 1, 0]]
        per_row = torch.stack([gm.log_prob(zk[i], c4[i:i + 1].expand(3, -1)) for i in range(4)])
        assert torch.allclose(gm.log_prob(zk, c4), per_row, atol=1e-5)
        assert torch.allclose(gm.log_prob(zk, torch.zeros(4, 2)), gm.log_prob(zk), atol=1e-5)


def test_a_conditional_prior_saved_without_caption_weights_loads_as_before():
    torch.manual_seed(0)
    old = GaussianMixture(3, 4)                                              # its state dict has no cond_logits
    new = GaussianMixture(3, 4, cond_dim=5)
    new.load_state_dict(old.state_dict())
    z, c = torch.randn(6, 3), torch.randn(6, 5)
    assert torch.equal(new.cond_logits, torch.zeros(4, 5))
    assert torch.allclose(new.log_prob(z, c), old.log_prob(z), atol=1e-6)


@pytest.mark.parametrize("family", ["vae", "vae_gan"])
def test_conditional_models_sample_and_bound_at_the_prompt(family):
    torch.manual_seed(0)
    m = tiny(family, prior="mixture", prior_components=2, cond_dim=3).eval()
    prompt = torch.tensor([[1.0, 0.0, 0.0]]).expand(4, -1)
    with torch.no_grad():
        m.mixture.means.copy_(torch.stack([torch.full((m.config.latent_dim,), -4.0),
                                           torch.full((m.config.latent_dim,), 4.0)]))
        m.mixture.cond_logits[:, 0] = torch.tensor([-20.0, 20.0])            # the prompt picks component 1
    z = m.prior_sample(rng.generators(0, 0, 4), prompt)
    assert (z > 0).all()                                                     # all from component 1
    assert not torch.equal(m.generate(rng.generators(0, 0, 4), prompt), m.generate(rng.generators(0, 0, 4)))
    log_pz = m.prior_logp(torch.full((4, 2, m.config.latent_dim), -4.0), prompt)  # at component 0's mean
    assert (log_pz < m.prior_logp(torch.full((4, 2, m.config.latent_dim), -4.0)) - 10).all()
    x = to_float(data().images[:4])
    torch.manual_seed(1)
    at_prompt = m.log_prob(x, prompt, k=2)
    with torch.no_grad():
        m.mixture.cond_logits.zero_()                                        # same decoder, caption-free prior
    torch.manual_seed(1)
    caption_free = m.log_prob(x, prompt, k=2)
    assert not torch.allclose(at_prompt, caption_free)                       # the bound uses p(z|c)


def test_vae_gan_can_train_its_adversarial_terms_on_mixture_draws():
    torch.manual_seed(0)
    m = tiny("vae_gan", prior="mixture", prior_components=2)
    with torch.no_grad():
        m.mixture.means.copy_(torch.stack([torch.full((m.config.latent_dim,), 50.0)] * 2))  # far from N(0, I)
    seen = []
    m.decode = (lambda f: lambda z, c=None: (seen.append(z.detach().clone()), f(z, c))[1])(m.decode)
    x = to_float(data().images[:8])
    for adv in ("normal", "prior"):
        m.config.adv_latents = adv
        seen.clear()
        m.loss(x, phase="disc")
        m.loss(x, phase="vae")
        prior_half = torch.cat([seen[0][4:], seen[1][8:]])                  # D's fakes, the generator's
        assert prior_half.shape == (8, m.config.latent_dim)
        assert (prior_half.mean() > 40) == (adv == "prior"), adv
    torch.manual_seed(3)                                                     # draws use the global RNG,
    a = m.mixture.draw(4)                                                    # which the trainer seeds
    torch.manual_seed(3)
    assert torch.equal(a, m.mixture.draw(4)) and a.shape == (4, m.config.latent_dim)
    gm = GaussianMixture(1, 2, cond_dim=2)                                   # at captions: one per row
    with torch.no_grad():
        gm.means.copy_(torch.tensor([[-5.0], [5.0]]))
        gm.cond_logits.copy_(torch.tensor([[30.0, -30.0], [-30.0, 30.0]]))
    signs = gm.draw(6, torch.eye(2)[[0, 1, 1, 0, 0, 1]]).sign().flatten()
    assert signs.tolist() == [-1, 1, 1, -1, -1, 1]
    with pytest.raises(zoo.ZooError, match="adv_latents"):
        tiny("vae_gan", adv_latents="posterior")
