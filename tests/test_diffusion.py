"""The diffusion families: UNet shapes, NFE accounting, trajectories, the bound, latent scale."""
import math

import pytest
import torch

import zoo
from zoo import ZooError
from zoo.images import to_float
from zoo.nn.unet import UNet

from helpers import data, tiny


def _randomize_zero_layers(module, std=0.05):
    """Give the zero-initialised layers (block outputs, attention projection, output conv) weights."""
    for p in module.parameters():
        if (p == 0).all():
            torch.nn.init.normal_(p, std=std)


@pytest.mark.parametrize("shape,widths", [((1, 28, 28), (8, 16, 32)), ((4, 7, 7), (16, 32)), ((4, 7, 7), (16,)),
                                          ((3, 9, 9), (8, 8, 16))])
def test_unet_shapes_and_conditioning(shape, widths):
    net = UNet(shape[0], widths=widths, attn_heads=2, mid_blocks=1)
    x = torch.randn(3, *shape)
    t = torch.tensor([0, 10, 999])
    assert torch.equal(net(x, t), torch.zeros(3, *shape))  # zero-initialised output layer
    _randomize_zero_layers(net)
    y = net(x, t)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # the time embedding reaches the output, and the samples are processed independently
    assert not torch.allclose(net(x, torch.tensor([5, 5, 5])), net(x, torch.tensor([900, 900, 900])))
    assert torch.allclose(net(x[:1], t[:1]), y[:1], atol=1e-5)


def _count_calls(model):
    calls = []
    inner = model.unet.forward

    def counted(x, t, *args, **kw):
        calls.append(x.shape[0])
        return inner(x, t, *args, **kw)
    model.unet.forward = counted
    return calls


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
@pytest.mark.parametrize("opts", [{}, {"sampler": "ddpm"}, {"sampler": "ddim", "steps": 7},
                                  {"sampler": "ddim", "steps": 4, "eta": 1.0}, {"sampler": "dpm++2m", "steps": 3},
                                  {"sampler": "ddpm", "steps": 10, "variance": "large"}])
def test_model_nfe_equals_network_calls(name, opts):
    model = tiny(name).eval()
    calls = _count_calls(model)
    model.sample(5, seed=0, batch_size=5, **opts)
    assert len(calls) == model.nfe(**opts)
    assert model.nfe(**opts) == (opts.get("steps") or (50 if opts.get("sampler") == "ddpm" else 5))


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
def test_unknown_sampler_option_is_a_clear_error(name):
    model = tiny(name)
    for bad in ({"temperature": 0.5}, {"sampler": "euler"}, {"steps": 0}, {"steps": 51},
                {"guidance": -1.0}, {"guidance": float("nan")}, {"guidance": float("inf")}, {"guidance": "big"}):
        with pytest.raises(ZooError):
            model.sample(2, **bad)


# ---- text conditioning and classifier-free guidance --------------------------------------------
D = 6


def test_unet_text_conditioning():
    torch.manual_seed(0)
    plain = UNet(1, widths=(8, 16), attn_heads=2)
    torch.manual_seed(0)
    cond = UNet(1, widths=(8, 16), attn_heads=2, cond_dim=D)
    assert plain.cond_mlp is None and isinstance(cond.cond_mlp, torch.nn.Sequential)
    # built last: every other parameter draws the same initial values as without it
    ps = dict(plain.named_parameters())
    assert set(ps) == {k for k, _ in cond.named_parameters() if not k.startswith("cond_mlp.")}
    assert all(torch.equal(p, ps[k]) for k, p in cond.named_parameters() if k in ps)
    _randomize_zero_layers(cond)
    x, t = torch.randn(2, 1, 12, 12), torch.tensor([3, 3])
    a, b = cond(x, t, cond=torch.randn(2, D)), cond(x, t, cond=torch.randn(2, D))
    assert a.shape == x.shape and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="cond"):
        cond(x, t)
    with pytest.raises(ValueError, match="cond"):
        plain(x, t, cond=torch.randn(2, D))


def test_unet_zero_init_flag_draws_the_same():
    torch.manual_seed(0)
    zero = UNet(1, widths=(8, 16), attn_heads=2)
    after_zero = torch.rand(3)
    torch.manual_seed(0)
    dflt = UNet(1, widths=(8, 16), attn_heads=2, zero_init=False)
    assert torch.equal(torch.rand(3), after_zero)       # the same random draws either way
    for (k, p), q in zip(zero.named_parameters(), dflt.parameters()):
        assert (p == 0).all() or torch.equal(p, q), k   # only the zeroed layers differ
    x, t = torch.randn(2, 1, 12, 12), torch.tensor([3, 40])
    assert torch.equal(zero(x, t), torch.zeros_like(x)) and dflt(x, t).abs().sum() > 0


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
def test_unconditional_model_is_unchanged(name):
    """cond_dim = 0 builds no conditioning layer, keeps the zero init, ignores guidance and
    ignores a cond given to ``loss`` (the trainer may pass class labels)."""
    torch.manual_seed(0)
    m = tiny(name).eval()
    assert m.unet.cond_mlp is None and not m.is_conditional and m.guidance
    assert m.nfe(guidance=3.0) == m.nfe() == 5
    assert torch.equal(m.sample(3, seed=2, guidance=3.0), m.sample(3, seed=2))
    x = to_float(data().images[:4])
    phase = m.stage_plan()["diffusion" if name == "latent_diffusion" else "main"][0]
    torch.manual_seed(1)
    a = m.loss(x, phase=phase)["loss"]
    torch.manual_seed(1)
    assert torch.equal(a, m.loss(x, data().labels[:4], phase=phase)["loss"])


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
@pytest.mark.parametrize("w,per_step", [(0.0, 1), (1.0, 1), (2.5, 2)])
def test_guided_nfe_equals_network_evaluations(name, w, per_step):
    torch.manual_seed(0)
    model = tiny(name, cond_dim=D).eval()
    calls = _count_calls(model)
    cond = torch.randn(5, D)
    model.sample(5, seed=0, batch_size=5, cond=cond, guidance=w, steps=4)
    assert len(calls) == 4 and sum(calls) == 5 * model.nfe(guidance=w, steps=4) == 5 * 4 * per_step
    calls.clear()
    model.sample(5, seed=0, batch_size=5, guidance=w, steps=4)   # the null condition: one evaluation
    assert sum(calls) == 5 * 4


def live(model):
    """``model`` with its zero-initialised layers (the UNet's output and residual branches start at
    zero, so an untrained model ignores its condition) filled with small seeded weights."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
def test_guidance_mixes_null_and_cond(name):
    """guidance w gives the samplers null + w (cond - null) of the two network predictions."""
    torch.manual_seed(0)
    model = live(tiny(name, cond_dim=D)).eval()
    x, t, c = torch.randn(3, *model.latent_shape()), torch.tensor([40, 20, 2]), torch.randn(3, D)
    null = model.denoiser(x, t, torch.zeros(3, D))
    full = model.denoiser(x, t, c)
    assert not torch.allclose(null, full)
    with torch.no_grad():
        got = model.guided_denoiser(c, 2.5)(x, t)
    assert torch.allclose(got, null + 2.5 * (full - null), atol=1e-5)


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
def test_prompt_dropout_in_training(name):
    torch.manual_seed(0)
    model = live(tiny(name, cond_dim=D, cond_drop=1.0)).train()
    x, c = to_float(data().images[:4]), torch.randn(4, D)
    phase = model.stage_plan()["diffusion" if name == "latent_diffusion" else "main"][0]
    torch.manual_seed(1)
    dropped = model.loss(x, c, phase=phase)["loss"]
    torch.manual_seed(1)
    null = model.loss(x, None, phase=phase)["loss"]     # None: the null condition
    assert torch.equal(dropped, null)
    torch.manual_seed(1)
    assert not torch.equal(model.eval().loss(x, c, phase=phase)["loss"], null)


def test_latent_autoencoder_stage_ignores_cond():
    torch.manual_seed(0)
    model = tiny("latent_diffusion", cond_dim=D)
    x = to_float(data().images[:4])
    torch.manual_seed(1)
    a = model.loss(x, torch.randn(4, D), phase="ae")["loss"]
    torch.manual_seed(1)
    assert torch.equal(a, model.loss(x, torch.randn(4, D) * 0, phase="ae")["loss"])


def test_conditional_bound():
    torch.manual_seed(0)
    model = live(tiny("diffusion", cond_dim=D, timesteps=10)).eval()
    x, c = to_float(data().images[:2]), torch.randn(2, D)
    torch.manual_seed(0)
    null = model.log_prob(x, terms=2)
    torch.manual_seed(0)
    assert torch.equal(null, model.log_prob(x, torch.zeros(2, D), terms=2))   # None: the null condition
    torch.manual_seed(0)
    assert not torch.allclose(null, model.log_prob(x, c, terms=2))
    with pytest.raises(ZooError, match="cond must be"):
        model.log_prob(x, torch.zeros(3, D))
    with pytest.raises(ZooError, match="unconditional"):
        tiny("diffusion").log_prob(x, c)


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
def test_trajectory_ends_at_the_sample(name):
    torch.manual_seed(0)
    model = tiny(name).eval()
    _randomize_zero_layers(model.unet)  # a non-trivial network
    traj = model.trajectory(3, seed=4, frames=4, sampler="ddim", steps=6)
    assert traj.shape == (3, 4, 1, 28, 28) and traj.dtype == torch.uint8
    assert torch.equal(traj[:, -1], model.sample(3, seed=4, sampler="ddim", steps=6))
    with pytest.raises(ZooError):
        model.trajectory(2, frames=8, steps=4)


def test_vlb_terms_and_stratified_estimate():
    torch.manual_seed(0)
    model = tiny("diffusion", timesteps=20).eval()
    _randomize_zero_layers(model.unet, std=0.02)
    x = to_float(data().images[:4])
    full = torch.stack([model.log_prob(x) for _ in range(8)])                    # (8, 4)
    assert (full < 0).all() and torch.isfinite(full).all()
    # an exact check of one KL term: identical network => KL(q || p) depends only on the variances
    t = torch.full((4,), 10)
    var_q = model.schedule.posterior_variance(t, t - 1)
    model.config.variance = "large"
    kl_large = model._kl_term(torch.zeros_like(x), t, None)
    model.config.variance = "small"
    assert (model._kl_term(torch.zeros_like(x), t, None) >= 0).all()
    var_p = model.schedule.betas[10]
    gap = 0.5 * (math.log(var_p / var_q[0]) + var_q[0] / var_p - 1) * x[0].numel()
    assert (kl_large >= gap - 1e-6).all()
    # the stratified estimate is unbiased for the same bound: compare means over repeats
    strat = torch.stack([model.log_prob(x, terms=3) for _ in range(48)])       # (48, 4)
    se = (strat.var(0) / 48 + full.var(0) / 8).sqrt()
    assert ((strat.mean(0) - full.mean(0)).abs() < 4 * se + 1e-3).all(), (strat.mean(0), full.mean(0), se)


def test_latent_stages_and_frozen_autoencoder():
    model = tiny("latent_diffusion")
    groups = model.param_groups()
    ae = {id(p) for p in groups["ae"]}
    unet = {id(p) for p in groups["diffusion"]}
    assert not ae & unet and unet == {id(p) for p in model.unet.parameters()}
    assert ae | unet == {id(p) for p in model.parameters()}
    assert model.stage_fractions() == {"ae": 0.3, "diffusion": pytest.approx(0.7)}
    x = to_float(data().images[:8])
    model.loss(x, phase="diffusion")["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())
    assert any(p.grad is not None for p in model.unet.parameters())


def test_latent_scale_stored_in_config_and_survives_save_load(tmp_path):
    torch.manual_seed(0)
    model = tiny("latent_diffusion", scale_images=512)
    imgs = data().images
    assert model.config.latent_scale == 0.0
    model.begin_stage("ae", imgs)
    assert model.config.latent_scale == 0.0
    torch.manual_seed(3)
    model.begin_stage("diffusion", imgs)
    scale = model.config.latent_scale
    torch.manual_seed(3)
    with torch.no_grad():
        z = model._posterior_sample(to_float(imgs[torch.linspace(0, len(imgs) - 1, 512).round().long()]))
    assert scale == pytest.approx(1 / z.std().item(), rel=1e-5)
    _randomize_zero_layers(model.unet)
    zoo.save(model, tmp_path / "run")
    again = zoo.load(tmp_path / "run")
    assert again.config.latent_scale == scale
    assert torch.equal(again.sample(4, seed=1), model.eval().sample(4, seed=1))


def test_latent_interpolation_endpoints():
    torch.manual_seed(0)
    model = tiny("latent_diffusion").eval()
    a, b = data().images[0], data().images[1]
    strip = model.interpolate(a, b, steps=5)
    assert strip.shape == (5, 1, 28, 28) and strip.dtype == torch.uint8
    with torch.no_grad():
        mu, _ = model.encode(to_float(torch.stack([a, b])))
        ends = (model.decode(mu).clamp(-1, 1) + 1) * 127.5
    assert (strip[0].float() - ends[0].round()).abs().max() <= 1
    assert (strip[-1].float() - ends[1].round()).abs().max() <= 1
