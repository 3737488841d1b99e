"""The vqvae family: stages and parameter groups, the likelihood bound, sampler options."""
import itertools

import pytest
import torch

import zoo
from zoo import ZooError
from zoo.images import to_float, to_uint8

from helpers import data, tiny


def _micro(**fields):
    """A 4x4 image model with a 2x2 code grid over 3 codes: 81 code grids, enumerable."""
    cls = zoo.get_model_class("vqvae")
    cfg = cls.tiny_config(channels=1, image_size=4, widths=(4, 8), num_codes=3, code_dim=2, **fields)
    return cls(cfg)


def test_stages_and_disjoint_param_groups():
    m = tiny("vqvae", ae_fraction=0.3)
    assert m.stage_plan() == {"ae": ("ae",), "prior": ("prior",)}
    assert m.stage_fractions() == pytest.approx({"ae": 0.3, "prior": 0.7})
    g = m.param_groups()
    ae, prior = {id(p) for p in g["ae"]}, {id(p) for p in g["prior"]}
    assert not ae & prior
    assert ae | prior == {id(p) for p in m.parameters()}
    assert prior == {id(p) for p in m.prior.parameters()}
    with pytest.raises(ZooError):
        tiny("vqvae", ae_fraction=1.0)


def test_prior_phase_leaves_the_autoencoder_alone():
    torch.manual_seed(0)
    m = tiny("vqvae")
    x = to_float(data().images[:8])
    state = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("prior.")}
    m.train()
    out = m.loss(x, phase="prior")
    out["loss"].backward()
    for k, v in m.state_dict().items():
        if not k.startswith("prior."):
            assert torch.equal(v, state[k]), f"prior phase changed {k}"
    assert all(p.grad is None for p in m.param_groups()["ae"])
    assert all(p.grad is not None for p in m.prior.parameters())
    # and the ae phase does not reach the prior, but does update the EMA codebook in training mode
    m.zero_grad(set_to_none=True)
    m.loss(x, phase="ae")["loss"].backward()
    assert all(p.grad is None for p in m.prior.parameters())
    assert not torch.equal(m.quantizer.codebook, state["quantizer.codebook"])
    with pytest.raises(ZooError):
        m.loss(x, phase="main")


def test_begin_stage_seeds_codebook_from_encoder_outputs():
    torch.manual_seed(0)
    m = tiny("vqvae")
    imgs = data().images[:64]
    m.begin_stage("ae", imgs)
    with torch.no_grad():
        z = m.encoder(to_float(imgs)).permute(0, 2, 3, 1).reshape(-1, m.config.code_dim)
    d = (m.quantizer.codebook[:, None] - z[None]).norm(dim=-1)   # (K, N)
    assert torch.all(d.min(1).values < 1e-5)


def test_log_prob_is_a_lower_bound_on_the_enumerated_likelihood():
    """p(x) = sum_z p_prior(z) p(x|z) over all 3^4 code grids >= p_prior(z(x)) p(x|z(x))."""
    torch.manual_seed(0)
    m = _micro().eval()
    with torch.no_grad():  # make the pieces non-trivial: random prior logits and codebook
        for p in m.prior.parameters():
            p.normal_(0, 0.5)
        m.quantizer.codebook.normal_()
    x = to_float(torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8))
    grids = torch.tensor(list(itertools.product(range(3), repeat=4)))       # (81, 4)
    with torch.no_grad():
        lp_z = torch.log_softmax(m.prior(grids), -1).gather(-1, grids.unsqueeze(-1)).squeeze(-1).sum(1)  # (81,)
        assert torch.logsumexp(lp_z, 0).abs() < 1e-5, "the prior is not normalized over code grids"
        mean, log_scale = m.decode(m.quantizer.lookup(grids.view(81, 2, 2)))
        from zoo.distributions import discretized_logistic_logp
        lp_x_given_z = torch.stack([discretized_logistic_logp(xi.expand(81, 1, 4, 4), mean, log_scale).flatten(1).sum(1)
                                    for xi in x])                                  # (5, 81)
    exact = torch.logsumexp(lp_z + lp_x_given_z, dim=1)                             # (5,)
    bound = m.log_prob(x)
    assert bound.shape == (5,)
    assert torch.all(bound <= exact + 1e-4), (bound, exact)
    # and the bound is exactly the term of the encoder's own code grid
    z_idx = m.codes(x).flatten(1)                                                   # (5, 4)
    row = (z_idx * torch.tensor([27, 9, 3, 1])).sum(1)                              # index into grids
    assert torch.allclose(bound, (lp_z[row] + lp_x_given_z[torch.arange(5), row]), atol=1e-4)


def test_prior_log_prob_matches_the_cached_sampler_path():
    """The teacher-forced log-probs used by log_prob equal the KV-cache step logits."""
    torch.manual_seed(0)
    m = tiny("vqvae").eval()
    x = to_float(data().images[:3])
    tokens = m.codes(x).flatten(1)                                      # (3, T)
    with torch.no_grad():
        full = torch.log_softmax(m.prior(tokens), -1)                   # (3, T, K)
        cache = m.prior.init_cache(3)
        prev = None
        for t in range(tokens.shape[1]):
            step = torch.log_softmax(m.prior.step(cache, prev), -1)    # (3, K)
            assert torch.allclose(step, full[:, t], atol=1e-5)
            prev = tokens[:, t]


def test_sampler_options_and_nfe():
    torch.manual_seed(0)
    m = tiny("vqvae").eval()
    assert zoo.get_model("vqvae").nfe() == 7 * 7 + 1
    assert m.nfe(top_k=3) == m.h * m.h + 1
    greedy = m.sample(4, seed=0, top_k=1)
    assert torch.equal(greedy, m.sample(4, seed=1, top_k=1)), "top_k=1 must be deterministic"
    a = m.sample(8, seed=2, temperature=0.7)
    b = m.sample(8, seed=2, temperature=0.7, use_cache=False)
    assert (a != b).float().mean() < 0.02   # same tokens up to float near-ties
    for bad in ({"temperature": 0.0}, {"top_k": -1}, {"top_k": 10 ** 6}):
        with pytest.raises(ZooError):
            m.sample(2, **bad)
    with pytest.raises(TypeError):
        m.sample(2, steps=5)


def test_samples_are_decoded_prior_codes():
    torch.manual_seed(0)
    m = tiny("vqvae").eval()
    gens = zoo.rng.generators(0, 0, 3)
    x = m.generate(gens)
    tokens = m.prior.sample(zoo.rng.generators(0, 0, 3))                # the same draws
    expect = m.decode(m.quantizer.lookup(tokens.view(3, m.h, m.h)))[0].clamp(-1, 1)
    assert torch.allclose(x, expect, atol=1e-6)


def test_reconstruction_usage_and_interpolation():
    torch.manual_seed(0)
    m = tiny("vqvae").eval()
    imgs = data().images[:20]
    rec = m.reconstruct(to_float(imgs))
    assert rec.shape == imgs.shape and rec.min() >= -1 and rec.max() <= 1
    u = m.codebook_usage(imgs, batch_size=7)
    idx = m.codes(to_float(imgs))
    assert u["live_codes"] == len(torch.unique(idx))
    assert 1.0 <= u["perplexity"] <= u["live_codes"] + 1e-6
    strip = m.interpolate(imgs[0], imgs[1], steps=5)
    assert strip.shape == (5, *imgs.shape[1:]) and strip.dtype == torch.uint8
    assert torch.equal(strip[0], to_uint8(rec[0])) and torch.equal(strip[-1], to_uint8(rec[1]))


def test_codebook_loss_option_trains():
    torch.manual_seed(0)
    m = tiny("vqvae", ema=False)
    assert any(p is m.quantizer.codebook for p in m.param_groups()["ae"])
    x = to_float(data().images[:8])
    out = m.loss(x, phase="ae")
    assert out["loss"].requires_grad
    out["loss"].backward()
    assert m.quantizer.codebook.grad is not None and m.quantizer.codebook.grad.abs().sum() > 0


def test_conditional_prior_only():
    """cond_dim > 0 conditions the prior alone: the autoencoder's parameters, its loss and its
    random draws do not change, and the prior's bound is log p(z(x) | cond) + log p(x | z(x))."""
    torch.manual_seed(0)
    plain = tiny("vqvae")
    torch.manual_seed(0)
    m = tiny("vqvae", cond_dim=5)
    assert m.guidance and m.prior.cond_proj is not None and plain.prior.cond_proj is None
    sd = plain.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items() if "cond_proj" not in k)
    g = m.param_groups()
    assert {id(p) for p in m.prior.cond_proj.parameters()} <= {id(p) for p in g["prior"]}
    x, c = to_float(data().images[:8]), torch.randn(8, 5)
    m.train()
    torch.manual_seed(1)
    a = m.loss(x, c, phase="ae")["loss"]
    after_a = torch.rand(1)
    torch.manual_seed(1)
    b = plain.train().loss(x, phase="ae")["loss"]
    assert torch.equal(a, b) and torch.equal(after_a, torch.rand(1))
    m.eval()
    lp_prior, lp_x = m.log_prob_parts(x, c)
    torch.testing.assert_close(m.log_prob(x, c), lp_prior + lp_x)
    assert not torch.allclose(lp_prior, m.log_prob_parts(x, torch.randn(8, 5))[0])
    torch.testing.assert_close(m.log_prob(x), m.log_prob(x, torch.zeros(8, 5)))   # None: the null condition
    tokens = m.codes(x).flatten(1)
    nll = torch.nn.functional.cross_entropy(m.prior(tokens, cond=c).flatten(0, 1), tokens.flatten())
    torch.testing.assert_close(m.loss(x, c, phase="prior")["loss"], nll)          # eval: nothing dropped
    torch.testing.assert_close(-lp_prior.mean() / tokens.shape[1], nll)


def test_guided_samples_are_decoded_prior_codes():
    torch.manual_seed(0)
    m = tiny("vqvae", cond_dim=5).eval()
    with torch.no_grad():
        for p in m.prior.parameters():
            p.normal_(0, 0.3)
    c = torch.randn(3, 5)
    assert m.nfe() == m.nfe(guidance=0.0) == m.h * m.h + 1 and m.nfe(guidance=2.0) == 2 * m.h * m.h + 1
    x = m.generate(zoo.rng.generators(0, 0, 3), cond=c, guidance=2.0)
    tokens = m.prior.sample(zoo.rng.generators(0, 0, 3), cond=c, guidance=2.0)
    expect = m.decode(m.quantizer.lookup(tokens.view(3, m.h, m.h)))[0].clamp(-1, 1)
    assert torch.allclose(x, expect, atol=1e-6)
    assert not torch.equal(tokens, m.prior.sample(zoo.rng.generators(0, 0, 3), cond=c))
    assert torch.equal(m.sample(3, seed=1, cond=c, guidance=0.0), m.sample(3, seed=1))
    with pytest.raises(ZooError, match="guidance"):
        m.sample(1, cond=c[:1], guidance=-0.5)
