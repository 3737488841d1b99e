"""The flow family: whole-flow inverse and Jacobian, the bits/dim units, dequantizers, sampler options."""
import math

import pytest
import torch
from torch.autograd.functional import jacobian

import zoo
from zoo import ZooError
from zoo.distributions import standard_normal_logp
from zoo.images import to_float
from zoo.metrics.bpd import bits_per_dim
from zoo.models.flow import Flow, FlowConfig, VariationalDequantizer

from helpers import assert_same_images, data


def _perturb(module: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _small_flow(**fields) -> Flow:
    """A 1x4x4 two-level flow with every parameter moved off its initial value."""
    torch.manual_seed(0)
    cfg = FlowConfig(image_size=4, steps=2, hidden=8, **fields)
    model = Flow(cfg)
    model.train()
    model.loss(to_float(torch.randint(0, 256, (16, 1, 4, 4), dtype=torch.uint8)))  # ActNorm init
    return _perturb(model).eval()


def test_whole_flow_inverse():
    model = _small_flow()
    v = torch.rand(6, 1, 4, 4) - 0.5
    e, _ = model.to_noise(v)
    assert e.shape == (6, 16)
    assert torch.allclose(model.from_noise(e), v, atol=1e-4)


@pytest.mark.parametrize("split_prior, cond_dim", [("learned", 0), ("normal", 0), ("learned", 3)])
def test_whole_flow_density_matches_brute_force_jacobian(split_prior, cond_dim):
    """log p(v) = log N(e(v)) + log|det de/dv| with the Jacobian of the whole map by autograd; for a
    conditional model, log p(v | c) with the map e(.; c) given a condition c (the priors' layers take it)."""
    model = _small_flow(split_prior=split_prior, cond_dim=cond_dim).double()
    v = torch.rand(1, 1, 4, 4, dtype=torch.float64) - 0.5
    c = torch.randn(1, cond_dim, dtype=torch.float64) if cond_dim else None
    jac = jacobian(lambda t: model.to_noise(t.view(1, 1, 4, 4), c)[0].flatten(), v.flatten())  # (16, 16)
    e, _ = model.to_noise(v, c)
    expected = standard_normal_logp(e).sum() + torch.linalg.slogdet(jac)[1]
    assert torch.allclose(model.log_density(v, c)[0], expected, atol=1e-8)


def test_identity_flow_bits_per_dim_is_analytic():
    """With K = 0 steps (and zero-initialized split priors) the flow is a permutation onto N(0, I).

    For uniform pixels k ~ U{0..255} and u ~ U[0,1), v = (k+u)/256 - 0.5 ~ U[-0.5, 0.5), so per dim
    E[-log p_w(k+u)] = 0.5 log(2 pi) + E[v^2]/2 + log 256 = 0.5 log(2 pi) + 1/24 + log 256 nats, i.e.
    8 + (0.5 log(2 pi) + 1/24) / ln 2 = 9.38586 bits/dim. Its standard error here is ~1e-4.
    """
    model = Flow(FlowConfig(steps=0))
    assert sum(1 for n, _ in model.named_buffers() if n.endswith("initialized")) == 0
    torch.manual_seed(0)
    images = torch.randint(0, 256, (400, 1, 28, 28), dtype=torch.uint8)
    r = bits_per_dim(model, images, batch_size=200)
    expected = 8 + (0.5 * math.log(2 * math.pi) + 1 / 24) / math.log(2)
    assert abs(expected - 9.38586) < 1e-5
    assert abs(r["bpd"] - expected) < 1e-3, (r["bpd"], expected)
    assert r["kind"] == "bound"


def test_identity_flow_log_density_is_standard_normal():
    model = Flow(FlowConfig(steps=0))
    v = torch.rand(3, 1, 28, 28) - 0.5
    assert torch.allclose(model.log_density(v), standard_normal_logp(v).flatten(1).sum(1), atol=1e-3)


def test_decode_inverts_encoding_of_bin_centres():
    """Images encoded at their bin centres decode to exactly the same pixel levels."""
    model = _small_flow()
    k = torch.randint(0, 256, (5, 1, 4, 4))
    e, _ = model.to_noise((k + 0.5) / 256 - 0.5)
    assert torch.equal(zoo.images.to_levels(model.decode(e)), k)


def test_decode_gives_valid_images_even_from_overflowing_noise():
    model = _small_flow()
    e = torch.randn(4, 16)
    e[1] *= 1e30   # huge values: clamped to the end levels
    e[2, 0] = float("nan")  # NaN inside the inverse (as from inf - inf)
    x = model.decode(e)
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[0], model.decode(e[:1])[0])


def test_variational_dequantizer_log_q_matches_jacobian():
    torch.manual_seed(0)
    deq = _perturb(VariationalDequantizer(1, 8, 2)).double()
    x = to_float(torch.randint(0, 256, (1, 1, 4, 4), dtype=torch.uint8)).double()
    eps = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    u, log_q = deq(x, eps)
    assert ((u > 0) & (u < 1)).all()
    jac = jacobian(lambda t: deq(x, t.view(1, 4, 2, 2))[0].flatten(), eps.flatten())  # du/deps (16, 16)
    expected = standard_normal_logp(eps).sum() - torch.linalg.slogdet(jac)[1]
    assert torch.allclose(log_q[0], expected, atol=1e-8)


def test_variational_dequant_trains_and_bounds():
    torch.manual_seed(0)
    cls = zoo.get_model_class("flow")
    model = cls(cls.tiny_config(dequant="variational", image_size=16))
    x = to_float(data("synthetic:16").images[:16])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        out = model.loss(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["loss"].detach())
    assert float(out["loss"].detach()) < first
    assert model.dequantizer.couplings[0].net[-1].weight.abs().sum() > 0, "the dequantizer did not train"
    model.eval()
    lp = model.log_prob(x[:4])
    assert lp.shape == (4,) and torch.isfinite(lp).all() and (lp < 0).all()


def test_importance_weighted_bound_is_tighter_on_average():
    model = _small_flow(dequant="variational")
    x = to_float(torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8))
    torch.manual_seed(0)
    one = model.log_prob(x, k=1).mean()
    many = model.log_prob(x, k=16).mean()
    assert many > one


def test_temperature_option():
    cls = zoo.get_model_class("flow")
    model = cls(cls.tiny_config())
    assert model.nfe() == 1 and model.nfe(temperature=0.5) == 1
    zero_a = model.sample(3, seed=0, temperature=0.0)
    zero_b = model.sample(3, seed=9, temperature=0.0)
    assert torch.equal(zero_a, zero_b), "temperature 0 must ignore the noise"
    assert not torch.equal(model.sample(3, seed=0, temperature=1.0), zero_a)
    with pytest.raises(ZooError, match="unknown flow sampler option"):
        model.sample(2, steps=5)
    with pytest.raises(ZooError, match="temperature"):
        model.sample(2, temperature=-1.0)


def test_bad_configs_are_zoo_errors():
    for fields in ({"image_size": 30}, {"dequant": "gaussian"}, {"split_prior": "flat"}, {"levels": 0}):
        with pytest.raises(ZooError):
            Flow(FlowConfig(**fields))


def test_begin_stage_initializes_actnorm_once():
    cls = zoo.get_model_class("flow")
    model = cls(cls.tiny_config())
    assert model._uninitialized()
    model.begin_stage("main", data().images)
    assert not model._uninitialized()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.begin_stage("main", data().images[:100])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_interpolate_endpoints():
    model = _small_flow()
    a, b = (torch.randint(0, 256, (1, 4, 4), dtype=torch.uint8) for _ in range(2))
    strip = model.interpolate(a, b, steps=5)
    assert strip.shape == (5, 1, 4, 4) and strip.dtype == torch.uint8
    assert torch.equal(strip[0], a) and torch.equal(strip[-1], b)


# ---- the conditional prior (cond_dim > 0) ------------------------------------------------------
def test_unconditional_flow_has_no_cond_layers_and_refuses_cond():
    model = _small_flow()
    assert model.top_prior is None and not model.is_conditional
    assert not any("cond" in k or "top_prior" in k for k in model.state_dict())
    x = to_float(torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8))
    for call in (lambda: model.log_prob(x, torch.zeros(2, 3)), lambda: model.sample(2, cond=torch.zeros(2, 3)),
                 lambda: model.loss(x, torch.zeros(2, 3))):
        with pytest.raises(ZooError, match="unconditional"):
            call()


def test_conditional_model_starts_as_the_unconditional_one():
    """Same seed: the same bijection (the cond layers come after it and the splits' draw no RNG); with the
    prior's weights at zero the same samples from the same per-sample noise, for every cond."""
    torch.manual_seed(0)
    plain = Flow(FlowConfig(image_size=8, steps=2, hidden=8))
    torch.manual_seed(0)
    cond = Flow(FlowConfig(image_size=8, steps=2, hidden=8, cond_dim=3))
    shared = plain.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in cond.state_dict().items() if k in shared)
    assert set(cond.state_dict()) - set(shared) == {"blocks.0.2.cond_proj.weight", "blocks.0.2.cond_proj.bias",
                                                    "top_prior.proj.weight", "top_prior.proj.bias"}
    assert cond.top_prior.proj.weight.abs().sum() > 0            # so that cond matters from the first step
    assert torch.equal(cond.sample(3, seed=1), plain.sample(3, seed=1))   # the null condition: zero bias
    with torch.no_grad():
        cond.top_prior.proj.weight.zero_()
    assert torch.equal(cond.sample(3, seed=1, cond=torch.randn(3, 3)), plain.sample(3, seed=1))


def test_conditional_flow_inverse_and_decode():
    """inverse(forward(v)) = v given cond, and cond moves the noise (the test is not vacuous)."""
    model = _small_flow(cond_dim=3)
    v = torch.rand(6, 1, 4, 4) - 0.5
    c = torch.randn(6, 3)
    e, _ = model.to_noise(v, c)
    assert not torch.allclose(e, model.to_noise(v, c.flip(0))[0], atol=1e-3)
    assert not torch.allclose(e, model.to_noise(v)[0], atol=1e-3)       # vs the null condition
    assert torch.allclose(model.from_noise(e, c), v, atol=1e-4)
    k = torch.randint(0, 256, (6, 1, 4, 4))
    e, _ = model.to_noise((k + 0.5) / 256 - 0.5, c)
    assert torch.equal(zoo.images.to_levels(model.decode(e, c)), k)


def test_conditional_identity_flow_is_the_normal_of_its_prior():
    """With K = 0 steps and one level the flow is a squeeze onto the top prior: log p(v | c) is the
    log density of torch.distributions.Normal(mean(c), std(c)) at the squeezed v."""
    torch.manual_seed(0)
    model = _perturb(Flow(FlowConfig(image_size=4, levels=1, steps=0, cond_dim=3)))
    v, c = torch.rand(5, 1, 4, 4) - 0.5, torch.randn(5, 3)
    mean, log_std = model.top_prior._stats(c)                     # (5, 4, 2, 2) each
    z, _ = model.squeeze(v)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(model.log_density(v, c), expected, atol=1e-4)


def test_conditional_density_is_normalised():
    """A 1x2x2 flow (one step, moved off its start) integrates to 1 given each of two conditions: importance
    sampling from N(0, 0.75^2 I) (100k draws, standard error ~0.012)."""
    torch.manual_seed(0)
    model = Flow(FlowConfig(image_size=2, levels=1, steps=1, hidden=4, cond_dim=3))
    model.train()
    model.loss(to_float(torch.randint(0, 256, (16, 1, 2, 2), dtype=torch.uint8)))  # ActNorm init
    model = _perturb(model).eval().double()
    q = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.75, dtype=torch.float64))
    c = torch.randn(2, 3, dtype=torch.float64)
    v = q.sample((2, 50000, 1, 2, 2))
    with torch.no_grad():
        lp = torch.stack([model.log_density(v[i], c[i].expand(50000, 3)) for i in range(2)])   # (2, N)
    assert (lp[0] - model.log_density(v[0], c[1].expand(50000, 3))).abs().mean() > 0.1, "cond must matter"
    total = (lp - q.log_prob(v).flatten(2).sum(2)).exp().mean(1)                               # (2,)
    assert torch.allclose(total, torch.ones(2, dtype=torch.float64), atol=0.05), total


def test_conditional_sampling_uses_the_unconditional_noise():
    """Image i's noise comes from gens[i] alone whatever the condition: generate is decode(T e, cond)."""
    model = _small_flow(cond_dim=3)
    c = torch.randn(4, 3)
    gens = [torch.Generator().manual_seed(10 + i) for i in range(4)]
    e = zoo.rng.randn([torch.Generator().manual_seed(10 + i) for i in range(4)], 16)
    assert torch.equal(model.generate(gens, cond=c, temperature=0.8), model.decode(0.8 * e, c))
    whole = model.sample(4, seed=5, cond=c)
    assert_same_images(model.sample(4, seed=5, cond=c, batch_size=1), whole)
    assert_same_images(model.sample(2, seed=5, cond=c[:2]), whole[:2])


def test_conditional_loss_trains_the_prior_layers():
    model = _small_flow(cond_dim=3).train()
    x = to_float(torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8))
    with torch.no_grad():
        for p in (model.blocks[0][-1].cond_proj.weight, model.top_prior.proj.weight):
            p.zero_()
    model.loss(x, torch.randn(8, 3))["loss"].backward()
    assert model.blocks[0][-1].cond_proj.weight.grad.abs().sum() > 0
    assert model.top_prior.proj.weight.grad.abs().sum() > 0
