"""Flow layers: inverses, log-determinants against brute-force Jacobians, LU invertibility, ActNorm init,
the conditional priors."""
import pytest
import torch
from torch.autograd.functional import jacobian

from zoo.nn.coupling import (ActNorm, AffineCoupling, FlowStep, GaussianPrior, GaussianSplit, InvConv1x1LU, Squeeze,
                             zero_linear)


def _perturb(layer: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Move every parameter away from its (often identity-like, zero-initialized) start."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn_like(p))
    return layer


def _make(name: str):
    """(layer, input shape, cond shape or None), seeded and perturbed away from the identity."""
    torch.manual_seed(1)
    if name == "squeeze":
        return Squeeze(2), (2, 4, 4), None
    if name == "actnorm":
        act = ActNorm(2)
        act.initialize(torch.randn(8, 2, 4, 4) * 3 + 1)
        return _perturb(act), (2, 4, 4), None
    if name == "invconv":
        return _perturb(InvConv1x1LU(3)), (3, 2, 2), None
    if name == "coupling":
        return _perturb(AffineCoupling(4, 8)), (4, 2, 2), None
    if name == "coupling_odd":
        return _perturb(AffineCoupling(3, 8)), (3, 2, 2), None
    if name == "coupling_cond":
        return _perturb(AffineCoupling(4, 8, cond_channels=3)), (4, 2, 2), (3, 2, 2)
    if name == "split":
        return _perturb(GaussianSplit(4)), (4, 2, 2), None
    if name == "split_cond":
        return _perturb(GaussianSplit(4, cond_dim=3)), (4, 2, 2), (3,)
    if name == "prior":
        return _perturb(GaussianPrior((2, 2, 2), 3)), (2, 2, 2), (3,)
    if name == "step":
        return _perturb(FlowStep(4, 8)), (4, 2, 2), None
    raise KeyError(name)


NAMES = ["squeeze", "actnorm", "invconv", "coupling", "coupling_odd", "coupling_cond", "split", "split_cond", "prior",
         "step"]


@pytest.mark.parametrize("name", NAMES)
def test_inverse_of_forward(name):
    layer, shape, cond_shape = _make(name)
    layer.eval()
    x = torch.randn(5, *shape)
    kw = {"cond": torch.randn(5, *cond_shape)} if cond_shape else {}
    y, logdet = layer(x, **kw)
    assert logdet.shape == (5,)
    if name != "squeeze":
        assert not torch.allclose(y.reshape(x.shape), x, atol=1e-3), "layer is still the identity: test is vacuous"
    assert torch.allclose(layer.inverse(y, **kw), x, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_logdet_matches_brute_force_jacobian(name):
    layer, shape, cond_shape = _make(name)
    layer = layer.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64)
    kw = {"cond": torch.randn(1, *cond_shape, dtype=torch.float64)} if cond_shape else {}
    _, logdet = layer(x, **kw)
    jac = jacobian(lambda t: layer(t.view(1, *shape), **kw)[0].flatten(), x.flatten())  # (D, D)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    assert torch.allclose(logdet[0], logabs, atol=1e-8), (float(logdet[0]), float(logabs))


def test_logdet_per_sample_in_a_batch():
    """Couplings give each sample its own logdet (not a batch total)."""
    layer = _perturb(AffineCoupling(4, 8)).eval()
    x = torch.randn(3, 4, 2, 2)
    _, batch_ld = layer(x)
    single = torch.cat([layer(x[i:i + 1])[1] for i in range(3)])
    assert torch.allclose(batch_ld, single, atol=1e-5)
    assert batch_ld.std() > 0


def test_lu_conv_stays_invertible_after_training():
    torch.manual_seed(0)
    conv = InvConv1x1LU(6)
    opt = torch.optim.Adam(conv.parameters(), lr=0.2)
    x = torch.randn(16, 6, 3, 3)
    target = torch.randn(16, 6, 3, 3) * 5
    for _ in range(50):  # large steps toward an arbitrary target, pulling log_s both ways
        y, ld = conv(x)
        loss = (y - target).pow(2).mean() + 0.01 * ld.mean().abs()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w, w_inv = conv.weight().double(), conv.inverse_weight().double()
        assert not torch.allclose(w, torch.linalg.qr(w)[0], atol=1e-2)  # it moved off the initial rotation
        assert torch.allclose(w @ w_inv, torch.eye(6, dtype=torch.float64), atol=1e-4)
        sign, logabs = torch.linalg.slogdet(w)
        assert sign != 0 and torch.isfinite(logabs)
        assert torch.allclose(logabs, conv.log_s.double().sum(), atol=1e-4)
        # extreme parameters still give an invertible W (that is the point of the LU form);
        # in float64, since such a W is badly conditioned
        conv.double()
        for p in conv.parameters():
            p.copy_(torch.randn_like(p) * 3)
        w, w_inv = conv.weight(), conv.inverse_weight()
        assert torch.linalg.matrix_rank(w) == 6
        assert torch.allclose(w @ w_inv, torch.eye(6, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(torch.linalg.slogdet(w)[1], conv.log_s.sum(), atol=1e-6)


def test_lu_conv_starts_orthogonal():
    w = InvConv1x1LU(5).weight()
    assert torch.allclose(w @ w.T, torch.eye(5), atol=1e-5)


def test_actnorm_data_dependent_init_and_flag_persists():
    torch.manual_seed(0)
    an = ActNorm(3)
    x = torch.randn(16, 3, 5, 5) * torch.tensor([0.5, 2.0, 7.0]).view(1, 3, 1, 1) + torch.tensor([1.0, -3.0, 0.2]).view(1, 3, 1, 1)
    an.eval()
    y, _ = an(x)
    assert torch.equal(y, x) and not bool(an.initialized), "eval mode must not initialize"
    an.train()
    y, _ = an(x)
    assert bool(an.initialized)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    # a second batch does not re-initialize
    before = an.log_scale.detach().clone()
    an(x * 10)
    assert torch.equal(before, an.log_scale.detach())
    # the flag is state: a fresh layer loading the state dict is initialized and keeps the values
    fresh = ActNorm(3)
    assert "initialized" in an.state_dict()
    fresh.load_state_dict(an.state_dict())
    fresh.train()
    assert bool(fresh.initialized)
    assert torch.allclose(fresh(x * 10)[0], an(x * 10)[0])


def test_squeeze_is_space_to_depth():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y, ld = Squeeze(2)(x)
    assert y.shape == (1, 4, 2, 2) and float(ld) == 0
    assert y[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left 2x2 patch
    with pytest.raises(ValueError):
        Squeeze(2)(torch.zeros(1, 1, 3, 4))


def test_conditional_prior_layers_are_gaussians_given_cond():
    """log N(y; 0, I) + logdet of each conditional prior layer is log N(z; mean, std^2) of the factored-out
    (or whole) input, as torch.distributions.Normal computes it from the layer's mean and std given cond."""
    torch.manual_seed(0)
    normal = torch.distributions.Normal
    std_logp = lambda y: normal(0.0, 1.0).log_prob(y).flatten(1).sum(1)
    prior = _perturb(GaussianPrior((2, 3, 3), 4))
    z, c = torch.randn(5, 2, 3, 3), torch.randn(5, 4)
    y, ld = prior(z, c)
    mean, log_std = prior._stats(c)
    assert torch.allclose(std_logp(y) + ld, normal(mean, log_std.exp()).log_prob(z).flatten(1).sum(1), atol=1e-4)
    split = _perturb(GaussianSplit(5, cond_dim=4))
    x = torch.randn(5, 5, 3, 3)
    y, ld = split(x, c)
    mean, log_std = split._stats(x[:, :3], c)
    assert torch.equal(y[:, :3], x[:, :3])
    assert torch.allclose(std_logp(y[:, 3:]) + ld, normal(mean, log_std.exp()).log_prob(x[:, 3:]).flatten(1).sum(1),
                          atol=1e-4)
    # the condition moves the density, and the split's offset is per channel
    assert not torch.allclose(split(x, c)[1], split(x, c.flip(0))[1])
    delta = split._stats(x[:, :3], c)[0] - split._stats(x[:, :3], torch.zeros_like(c))[0]   # (B, 2, 3, 3)
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-6)


def test_conditional_priors_start_as_the_unconditional_ones():
    torch.manual_seed(0)
    plain = _perturb(GaussianSplit(4))
    torch.manual_seed(0)
    cond = _perturb(GaussianSplit(4, cond_dim=3))   # the same conv (its cond layer comes after it)
    assert set(plain.state_dict()) == {"conv.weight", "conv.bias"}
    with torch.no_grad():
        cond.cond_proj.weight.zero_(), cond.cond_proj.bias.zero_()   # as built
    x, c = torch.randn(2, 4, 2, 2), torch.randn(2, 3)
    assert torch.equal(cond(x, c)[0], plain(x)[0]) and torch.equal(cond.inverse(x, c), plain.inverse(x))
    with pytest.raises(ValueError, match="cond"):
        cond(x)
    prior = GaussianPrior((2, 2, 2), 3)
    assert torch.equal(prior(x[:, :2], c)[0], x[:, :2])                  # init_scale 0: N(0, I) for every c
    y, ld = GaussianPrior((2, 2, 2), 3, init_scale=0.3)(x[:, :2], torch.zeros(2, 3))
    assert torch.equal(y, x[:, :2]) and torch.equal(ld, torch.zeros(2))   # the null condition: N(0, I)


def test_zero_linear_draws_nothing():
    torch.manual_seed(0)
    layer = zero_linear(5, 7)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))
    assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0
