"""GAN and VAE-GAN: phase separation, discriminator learning, loss options, collapse check."""
import pytest
import torch

import zoo
from zoo import ZooError
from zoo.images import to_float, to_uint8
from zoo.metrics.collapse import collapse_report
from zoo.models.gan import truncated_normal
from zoo.nn.adversarial import r1_penalty
from zoo.rng import generators

from helpers import assert_same_images, data, tiny

FAMILIES = {"gan": ("disc", "gen"), "vae_gan": ("disc", "vae")}
CASES = [(f, p) for f, ps in FAMILIES.items() for p in ps]


def _batch(n=16):
    return to_float(data().images[:n])


def _snapshot(params):
    return [p.detach().clone() for p in params]


D = 6  # width of the embeddings a conditional model takes


def _cond(n=16, seed=0):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cond_dim", [0, D])
@pytest.mark.parametrize("name", FAMILIES)
def test_param_groups_partition_the_model(name, cond_dim):
    m = tiny(name, cond_dim=cond_dim)
    groups = m.param_groups()
    assert m.phases == FAMILIES[name] and sorted(groups) == sorted(FAMILIES[name])
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)), "a parameter is in two phases"
    assert set(ids) == {id(p) for p in m.parameters()}, "a parameter is in no phase"


@pytest.mark.parametrize("cond_dim", [0, D])
@pytest.mark.parametrize("name,phase", CASES)
def test_phase_updates_only_its_own_parameters(name, phase, cond_dim):
    torch.manual_seed(0)
    m = tiny(name, cond_dim=cond_dim)
    groups = m.param_groups()
    opts = {p: m.configure_optimizer(p, ps) for p, ps in groups.items()}
    others = [q for ps_name, ps in groups.items() if ps_name != phase for q in ps]
    own_before, other_before = _snapshot(groups[phase]), _snapshot(others)
    for o in opts.values():
        o.zero_grad(set_to_none=True)
    m.loss(_batch(), _cond() if cond_dim else None, phase=phase)["loss"].backward()
    # no gradient is even computed for the other phase's parameters (detached / frozen)
    assert all(q.grad is None for q in others)
    opts[phase].step()
    assert all(torch.equal(a, q) for a, q in zip(other_before, others)), "other phase's parameters moved"
    moved = sum(not torch.equal(a, q) for a, q in zip(own_before, groups[phase]))
    assert moved == len(own_before), f"only {moved}/{len(own_before)} of the phase's own tensors moved"


def _disc_loss(m, x, seed=123):
    torch.manual_seed(seed)  # the same fake images every time
    with torch.no_grad():
        return float(m.loss(x, phase="disc")["loss"])


@pytest.mark.parametrize("name", FAMILIES)
def test_disc_loss_falls_with_generator_frozen(name):
    torch.manual_seed(0)
    m = tiny(name)
    frozen_before = _snapshot(p for ph, ps in m.param_groups().items() if ph != "disc" for p in ps)
    opt = m.configure_optimizer("disc", m.param_groups()["disc"])
    images = data().images
    x_eval = to_float(images[:64])
    before = _disc_loss(m, x_eval)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        x = to_float(images[torch.randint(0, len(images), (32,), generator=g)])
        opt.zero_grad(set_to_none=True)
        m.loss(x, phase="disc")["loss"].backward()
        opt.step()
    after = _disc_loss(m, x_eval)
    assert after < 0.6 * before, (before, after)
    frozen_after = [p for ph, ps in m.param_groups().items() if ph != "disc" for p in ps]
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, frozen_after))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("opts", [{"loss": "hinge"}, {"r1_gamma": 1.0}, {"loss": "hinge", "r1_gamma": 10.0}])
def test_loss_options_give_finite_losses(name, opts):
    m = tiny(name, **opts)
    x = _batch()
    for phase in FAMILIES[name]:
        out = m.loss(x, phase=phase)
        assert all(torch.isfinite(v).all() for v in out.values()), (phase, out)
        out["loss"].backward()
    r1 = m.loss(x, phase="disc")["r1"]
    assert (r1 > 0) == (opts.get("r1_gamma", 0) > 0)


def test_hinge_and_ns_generator_losses():
    x = _batch()
    hinge = tiny("gan", loss="hinge").loss(x, phase="gen")
    assert torch.allclose(hinge["loss"], -hinge["d_fake"])  # hinge generator loss is -E[D(G(z))]
    ns = tiny("gan").loss(x, phase="gen")
    assert ns["loss"] > 0 and not torch.allclose(ns["loss"], -ns["d_fake"])  # E softplus(-D(G(z)))


def test_r1_penalty_matches_closed_form():
    w = torch.randn(1, 3, 4, 4)

    class Linear(torch.nn.Module):
        def forward(self, x):  # (B, 3, 4, 4) -> (B,), gradient w.r.t. x is w for every image
            return (x * w).flatten(1).sum(1)
    d, r1 = r1_penalty(Linear(), torch.randn(5, 3, 4, 4))
    assert d.shape == (5,)
    assert torch.allclose(r1, w.pow(2).sum(), rtol=1e-5)


def test_bad_options_raise():
    with pytest.raises(ZooError, match="loss"):
        tiny("gan", loss="wgan")
    with pytest.raises(ZooError, match="loss"):
        tiny("vae_gan", loss="lsgan")
    with pytest.raises(ZooError, match="r1_gamma"):
        tiny("gan", r1_gamma=-1.0)
    m = tiny("gan")
    with pytest.raises(ZooError, match="phase"):
        m.loss(_batch(), phase="main")
    with pytest.raises(TypeError):
        m.sample(2, steps=3)
    with pytest.raises(ZooError, match="truncation"):
        m.sample(2, truncation=0.0)


def test_discriminator_is_spectrally_normalised():
    torch.manual_seed(0)
    m = tiny("gan")
    x = _batch()
    for _ in range(30):  # power iterations converge during training forwards
        m.disc(x)
    convs = [mod for mod in m.disc.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs
    for mod in convs:
        sigma = torch.linalg.matrix_norm(mod.weight.detach().flatten(1), ord=2)
        assert 0.9 < float(sigma) < 1.05, sigma
    plain = tiny("gan", spectral_norm=False)
    assert not any(hasattr(mod, "parametrizations") for mod in plain.disc.modules())


def test_truncation_bounds_and_per_sample():
    gens = generators(3, 0, 6)
    z = truncated_normal(gens, 500, 0.5)
    assert z.shape == (6, 500) and z.abs().max() <= 0.5
    assert z.std() > 0.2  # not collapsed onto 0: truncated N(0,1) on [-0.5, 0.5] has std ~0.28
    again = truncated_normal(generators(3, 4, 2), 500, 0.5)
    assert torch.equal(again, z[4:])
    m = tiny("gan")
    s = m.sample(8, seed=0, batch_size=3, truncation=1.0)
    assert s.shape == (8, 1, 28, 28) and s.dtype == torch.uint8


def test_vae_gan_shares_the_vae_and_keeps_a_bound():
    from zoo.nn.gaussian_vae import GaussianVAEMixin
    m, vae = tiny("vae_gan"), tiny("vae")
    assert isinstance(m, GaussianVAEMixin) and isinstance(vae, GaussianVAEMixin) and m.likelihood == "bound"
    # the same networks under the same names (the discriminator aside)
    shapes = {k: v.shape for k, v in m.state_dict().items() if not k.startswith("disc.")}
    assert shapes == {k: v.shape for k, v in vae.state_dict().items()}
    u = data().images[:2]
    strip = m.interpolate(u[0], u[1], steps=5)
    assert strip.shape == (5, 1, 28, 28) and strip.dtype == torch.uint8
    torch.manual_seed(0)
    lp = m.log_prob(to_float(u), k=4)
    assert torch.isfinite(lp).all() and (lp < 0).all()
    for mode in ("mean", "sample"):
        assert m.sample(3, mode=mode).shape == (3, 1, 28, 28)


def test_collapse_report_flags_a_collapsed_generator():
    # the class check uses the Fashion-MNIST classifier, so judge real Fashion-MNIST images where
    # installed (on the synthetic shapes it would, rightly, see one class)
    from zoo.data import load_dataset
    from zoo.errors import ZooError
    try:
        real = load_dataset("fashion-mnist", "test").images[:1024]
    except ZooError:
        real = data().images
    ok = collapse_report(real[:256], real[256:])
    assert not ok["collapsed"] and 0.8 < ok["std_ratio"] < 1.25
    one = real[:1].expand(256, -1, -1, -1)
    jitter = to_uint8(to_float(one) + 0.02 * torch.randn(one.shape))  # one image, slightly perturbed
    bad = collapse_report(jitter, real)
    assert bad["collapsed"] and bad["std_ratio"] < 0.2
    if "class_hist" in ok:
        assert sum(ok["class_hist"]) == 256 and sum(bad["class_hist"]) == 256


@pytest.mark.parametrize("phase", FAMILIES["vae_gan"])
def test_vae_gan_discriminator_sees_images_in_the_data_range(phase):
    # The decoder's logistic means run past [-1, 1] where the edge bins absorb the mass; the
    # sampler clamps them, so the discriminator must judge the clamped image. Unclamped, it can
    # tell fakes by out-of-range pixels alone (this sank the VAE-GAN's FID and caused collapse).
    torch.manual_seed(0)
    m = tiny("vae_gan")
    with torch.no_grad():
        m.decoder.net[-1].bias.fill_(-3.0)   # push every decoder mean far below -1
    seen = []
    m.disc.body.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    m.loss(_batch(), phase=phase)
    assert seen and all(t.min() >= -1 and t.max() <= 1 for t in seen)
    assert any((t == -1).float().mean() > 0.9 for t in seen), "the fakes were not decoded out of range"


@pytest.mark.parametrize("name", zoo.list_models())
def test_no_family_imports_another(name):
    # what two families share lives in zoo.nn, zoo.distributions or zoo.diffusion_process
    import ast
    import importlib.util
    mod = importlib.import_module(zoo.get_model_class(name).__module__)
    tree = ast.parse(open(mod.__file__).read())
    families = {zoo.get_model_class(f).__module__ for f in zoo.list_models()}
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), mod.__package__)
            imported |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not (imported & families) - {mod.__name__}, sorted(imported & families)


@pytest.mark.parametrize("name", FAMILIES)
def test_conditioning_layers_come_after_the_others(name):
    # a conditional model draws its unconditional weights exactly as the unconditional one does
    torch.manual_seed(0)
    plain = tiny(name).state_dict()
    torch.manual_seed(0)
    cond = tiny(name, cond_dim=D).state_dict()
    assert all(torch.equal(cond[k], v) for k, v in plain.items())
    new = set(cond) - set(plain)
    assert new and all(any(w in k for w in ("film", "cond_in", "embed")) for k in new), sorted(new)


def _record(module, attr, seen):
    """Record the cond each call of module.<attr>(x, cond) gets."""
    orig = getattr(module, attr)

    def wrapped(x, cond=None):
        seen.append(cond)
        return orig(x, cond)
    setattr(module, attr, wrapped)


@pytest.mark.parametrize("name,phase", CASES)
def test_every_image_is_judged_at_its_own_condition(name, phase):
    # the real images at the batch's conds, the fakes at those they were made for; prompt dropout
    # (at 0.5 here) applied once per phase, to both
    torch.manual_seed(0)
    m = tiny(name, cond_dim=D, cond_drop=0.5).train()
    made, judged = [], []
    _record(m.gen if name == "gan" else m.decoder, "forward", made)
    _record(m.disc, "logits", judged)
    c, b = _cond(), 16
    torch.manual_seed(3)
    m.loss(_batch(b), c, phase=phase)
    torch.manual_seed(3)
    if name == "gan":
        torch.randn(b, m.config.latent_dim)   # the GAN draws z before the dropout
    dropped = m.condition_for_training(c, b)
    assert 0 < int((dropped.abs().sum(1) == 0).sum()) < b              # some rows got the null condition
    assert len(made) == 1 and len(judged) == (2 if phase == "disc" else 1)
    if name == "gan":
        fake_cond = dropped
    elif phase == "disc":   # half a batch of reconstructions and half of prior samples, for the first half
        fake_cond = torch.cat([dropped[:b // 2], dropped[:b // 2]])
    else:                   # the batch's reconstructions, then half a batch of prior samples
        fake_cond = torch.cat([dropped, dropped[:b // 2]])
    assert torch.equal(made[0], fake_cond) and torch.equal(judged[-1], fake_cond)
    if phase == "disc":
        assert torch.equal(judged[0], dropped)


@pytest.mark.parametrize("name", FAMILIES)
def test_conditional_sampler_options(name):
    m = tiny(name, cond_dim=D)
    c = _cond(5)
    assert_same_images(m.sample(5, seed=2, batch_size=2, cond=c), m.sample(5, seed=2, batch_size=5, cond=c))
    opts = {"truncation": 1.0} if name == "gan" else {"mode": "sample"}
    assert m.sample(3, cond=c[:3], **opts).shape == (3, 1, 28, 28)
