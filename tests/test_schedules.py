"""Noise schedules and samplers (zoo.schedules), checked against oracle and analytic denoisers."""
import pytest
import torch

from zoo import ZooError
from zoo.rng import generators
from zoo.schedules import (DDIMSampler, DDPMSampler, DPMSolverPP2M, DPMSolverPP2MSDE, NoiseSchedule,
                           evenly_spaced, make_sampler, resolve_options, sample, timesteps)

KINDS = ("linear", "cosine")
# (sampler, options): every sampler, DDIM deterministic and stochastic
SAMPLERS = [("ddpm", {}), ("ddim", {"eta": 0.0}), ("ddim", {"eta": 1.0}), ("ddim", {"eta": 0.5}),
            ("dpm++2m", {}), ("dpm++2m-sde", {})]


def _oracle(schedule, x0, prediction, seen=None):
    """The exact network for a known x0: eps (or v) computed from x_t and x0."""
    def net(x_t, t):
        if seen is not None:
            seen.append((x_t.clone(), t.clone()))
        ab = schedule.alpha_bar(t).view(-1, 1, 1, 1)
        eps = ((x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt())
        if prediction == "v":
            return (ab.sqrt() * eps - (1 - ab).sqrt() * x0.double()).float()
        return eps.float()
    return net


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_ends_in_noise(kind):
    s = NoiseSchedule(kind, 1000)
    ab = s.alphas_cumprod
    assert (ab[1:] < ab[:-1]).all() and ab[0] > 0.999
    assert ab[-1] < 1e-4
    g = torch.Generator().manual_seed(0)
    n = 20000
    data = torch.rand(n, 1, 2, 2, generator=g) * 2 - 1
    for x0 in (torch.full((n, 1, 2, 2), 1.0), torch.full((n, 1, 2, 2), -0.7), data):
        noise = torch.randn(x0.shape, generator=g)
        x_T = s.add_noise(x0, noise, torch.full((n,), s.T - 1))
        assert abs(x_T.mean().item()) < 0.02
        assert abs(x_T.std().item() - 1) < 0.02
        assert (x_T - noise).abs().max() < 0.02  # the signal is gone, not just decorrelated
    # at t=0 almost nothing is added
    x0 = data[:100]
    assert (s.add_noise(x0, torch.randn(x0.shape, generator=g), torch.zeros(100, dtype=torch.long)) - x0).std() < 0.02


def test_linear_schedule_matches_ho_et_al():
    s = NoiseSchedule("linear", 1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    with pytest.raises(ZooError):
        NoiseSchedule("quadratic")


def test_v_and_epsilon_round_trip():
    s = NoiseSchedule("cosine", 1000)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.tensor([0, 1, 10, 200, 500, 800, 990, 998])
    x_t = s.add_noise(x0, eps, t)
    for pred in ("epsilon", "v"):
        x0_hat, eps_hat = s.split(s.target(x0, eps, t, pred), x_t, t, pred)
        assert torch.allclose(eps_hat, eps, atol=1e-4)
        if pred == "v":  # x0 from v is well conditioned at every t
            assert torch.allclose(x0_hat, x0, atol=1e-4)
        else:            # x0 from eps divides by sqrt(ab): check where ab is not tiny
            assert torch.allclose(x0_hat[:6], x0[:6], atol=1e-3)


@pytest.mark.parametrize("spacing", ("linspace", "trailing", "leading"))
def test_timestep_spacing(spacing):
    for steps in (1, 10, 20, 50, 333, 1000):
        ts = timesteps(1000, steps, spacing)
        assert len(ts) == steps and all(a > b for a, b in zip(ts, ts[1:])) and 0 <= ts[-1] and ts[0] <= 999
    assert timesteps(1000, 1000, spacing) == list(range(999, -1, -1))
    ts = timesteps(1000, 10, spacing)
    expect = {"linspace": (999, 0), "trailing": (999, 99), "leading": (900, 0)}[spacing]
    assert (ts[0], ts[-1]) == expect
    with pytest.raises(ZooError):
        timesteps(1000, 1001, spacing)
    with pytest.raises(ZooError):
        timesteps(1000, 0, spacing)



@pytest.mark.parametrize("spacing,expect", [("linspace", [99, 74, 50, 25, 0]), ("trailing", [99, 79, 59, 39, 19]),
                                            ("leading", [80, 60, 40, 20, 0])])
@pytest.mark.parametrize("name", ("ddpm", "ddim", "dpm++2m", "dpm++2m-sde"))
def test_set_timesteps_gives_the_documented_spacing(name, spacing, expect):
    """T = 100, 5 steps: linspace rounds linspace(99, 0, 5); trailing is round(100 - 20k) - 1; leading
    is 20k, k = 4..0; with t_start = 49 each spacing works on 0..49 alone."""
    s = make_sampler(name, NoiseSchedule("cosine", 100))
    s.set_timesteps(5, spacing=spacing)
    assert s.timesteps == expect
    s.set_timesteps(5, spacing=spacing, t_start=49)
    assert s.timesteps == {"linspace": [49, 37, 24, 12, 0], "trailing": [49, 39, 29, 19, 9],
                           "leading": [40, 30, 20, 10, 0]}[spacing]
    s.set_timesteps()
    assert len(s.timesteps) == (100 if name == "ddpm" else 50)
    with pytest.raises(ZooError, match="steps must be between 1 and 100"):
        s.set_timesteps(101, spacing=spacing)


def test_make_sampler_classes_and_bad_options():
    s = NoiseSchedule("cosine", 100)
    kinds = {"ddpm": DDPMSampler, "ddim": DDIMSampler, "dpm++2m": DPMSolverPP2M, "dpm++2m-sde": DPMSolverPP2MSDE}
    for name, cls in kinds.items():
        assert type(make_sampler(name, s)) is cls
    assert make_sampler("ddim", s, eta=0.5).eta == 0.5 and make_sampler("ddpm", s, variance="large").variance == "large"
    for bad, msg in (({"sampler": "euler"}, "unknown sampler 'euler'"), ({"variance": "x"}, "unknown variance 'x'"),
                     ({"eta": 1.5}, r"eta must be in \[0, 1\], got 1.5"), ({"prediction": "x0"}, "unknown prediction")):
        with pytest.raises(ZooError, match=msg):
            make_sampler(bad.pop("sampler", "ddim"), s, **bad)


@pytest.mark.parametrize("prediction", ("epsilon", "v"))
@pytest.mark.parametrize("sampler,opts", SAMPLERS + [("ddpm", {"variance": "large"})])
def test_a_hand_written_loop_equals_sample(sampler, opts, prediction):
    """The user's loop over set_timesteps/step gives the very tensor sample() returns, noise included."""
    sch = NoiseSchedule("linear", 200)
    w = torch.randn(9, 9, generator=torch.Generator().manual_seed(4)) * 0.4

    def net(x, t):  # a fixed nonlinear map that also depends on t
        return torch.tanh(x.flatten(1) @ w).view_as(x) + 1e-3 * t.view(-1, 1, 1, 1).float()
    ref = sample(net, (1, 3, 3), generators(6, 0, 4), sch, sampler=sampler, steps=12, prediction=prediction,
                 spacing="trailing", clip=1.0, **opts)
    s = make_sampler(sampler, sch, prediction=prediction, clip=1.0, **opts)
    s.set_timesteps(12, spacing="trailing")

    def loop():
        gens = generators(6, 0, 4)
        x = torch.stack([torch.randn((1, 3, 3), generator=g) for g in gens])
        for t in s.timesteps:
            x = s.step(net(x, torch.full((4,), t)), t, x, generator=gens).prev_sample
        return x
    assert torch.equal(loop(), ref.x)
    assert torch.equal(loop(), ref.x)  # after the last step the sampler starts afresh

def test_step_refuses_misuse():
    s = make_sampler("ddpm", NoiseSchedule("cosine", 50))
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ZooError, match="call set_timesteps first"):
        s.step(x, 49, x)
    s.set_timesteps(5)
    with pytest.raises(ZooError, match="step got timestep 12, expected 49"):
        s.step(x, 12, x)
    with pytest.raises(ZooError, match="one generator per sample"):
        s.step(x, 49, x)
    out = s.step(x, 49, x, generator=generators(0, 0, 2))  # the refused step did not count
    assert out.prev_sample.shape == x.shape and torch.equal(out.pred_original_sample, x)

@pytest.mark.parametrize("prediction", ("epsilon", "v"))
@pytest.mark.parametrize("sampler,opts", SAMPLERS)
@pytest.mark.parametrize("t_start", (None, 400))
def test_oracle_reconstructs_x0(sampler, opts, prediction, t_start):
    s = NoiseSchedule("cosine", 1000)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 1, 5, 5, generator=g)             # outside [-1, 1]: no clipping helps
    eps = torch.randn(3, 1, 5, 5, generator=g)
    t0 = 999 if t_start is None else t_start
    x_t = s.add_noise(x0, eps, torch.full((3,), t0))
    steps = None if sampler == "ddpm" else 10
    out = sample(_oracle(s, x0, prediction), (1, 5, 5), generators(0, 0, 3), s, sampler=sampler, steps=steps,
                 prediction=prediction, x_init=x_t, t_start=t_start, keep=[0, 3], **opts)
    assert (out.x - x0).abs().max() < 1e-4
    for k in (0, 3):  # kept predictions are the oracle's x0 (up to float error at very low SNR)
        assert (out.x0[k] - x0).abs().max() < (1e-3 if k else 1e-1)


@pytest.mark.parametrize("prediction", ("epsilon", "v"))
@pytest.mark.parametrize("sampler", ("ddim", "dpm++2m"))
def test_deterministic_samplers_follow_the_exact_path(sampler, prediction):
    """With the oracle, DDIM(eta=0) and DPM-Solver++ solve the ODE exactly: x_t = a_t x0 + s_t eps."""
    s = NoiseSchedule("linear", 1000)
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 1, 3, 3, generator=g) * 2 - 1
    eps = torch.randn(2, 1, 3, 3, generator=g)
    seen = []
    x_T = s.add_noise(x0, eps, torch.full((2,), 999))
    sample(_oracle(s, x0, prediction, seen), (1, 3, 3), generators(0, 0, 2), s, sampler=sampler, steps=7,
           prediction=prediction, x_init=x_T)
    assert len(seen) == 7
    for x_t, t in seen:
        assert torch.allclose(x_t, s.add_noise(x0, eps, t), atol=1e-4), int(t[0])


def test_ddim_eta0_is_deterministic_and_uses_only_the_initial_noise():
    s = NoiseSchedule("cosine", 100)
    net = lambda x, t: torch.tanh(x) * 0.5 + 0.01 * t.view(-1, 1, 1, 1).float()  # any fixed function
    gens = generators(7, 0, 4)
    a = sample(net, (1, 4, 4), gens, s, sampler="ddim", steps=10, eta=0.0)
    b = sample(net, (1, 4, 4), generators(7, 0, 4), s, sampler="ddim", steps=10, eta=0.0)
    assert torch.equal(a.x, b.x)
    ref = generators(7, 0, 4)
    for r in ref:
        torch.randn((1, 4, 4), generator=r)  # only the initial noise was drawn
    assert all(torch.equal(g.get_state(), r.get_state()) for g, r in zip(gens, ref))
    # and the initial noise decides everything: same x_T, any generators -> same sample
    x_T = torch.stack([torch.randn((1, 4, 4), generator=r) for r in generators(7, 0, 4)])
    c = sample(net, (1, 4, 4), generators(99, 0, 4), s, sampler="ddim", steps=10, eta=0.0, x_init=x_T)
    assert torch.equal(c.x, a.x)
    # eta > 0 draws more noise, so it differs from eta = 0 and depends on the generators
    d = sample(net, (1, 4, 4), generators(7, 0, 4), s, sampler="ddim", steps=10, eta=1.0)
    assert not torch.allclose(d.x, a.x)


@pytest.mark.parametrize("sampler,opts", SAMPLERS)
@pytest.mark.parametrize("steps", (1, 2, 7, None))
def test_reported_nfe_equals_calls(sampler, opts, steps):
    s = NoiseSchedule("cosine", 60)
    calls = []

    def net(x, t):
        calls.append(int(t[0]))
        return 0.1 * x
    out = sample(net, (1, 2, 2), generators(0, 0, 3), s, sampler=sampler, steps=steps, keep=[0], **opts)
    expect = steps if steps is not None else (60 if sampler == "ddpm" else 50)
    assert out.nfe == len(calls) == expect
    assert calls == out.timesteps and len(set(calls)) == len(calls)


@pytest.mark.parametrize("sampler,steps,tol,eta", [("ddpm", None, 0.06, 0.0), ("ddim", 50, 0.05, 0.0),
                                                   ("dpm++2m", 20, 0.05, 0.0), ("ddim", 20, 0.08, 0.0),
                                                   ("ddim", 100, 0.06, 1.0), ("dpm++2m-sde", 20, 0.06, 0.0)])
@pytest.mark.parametrize("prediction", ("epsilon", "v"))
def test_samplers_recover_a_gaussian(sampler, steps, tol, eta, prediction):
    """Data N(mu, s^2) per dimension has an exact denoiser; samples must come out N(mu, s^2)."""
    sch = NoiseSchedule("cosine", 1000)
    mu, sd = 0.3, 0.5

    def net(x_t, t):
        ab = sch.alpha_bar(t).view(-1, 1, 1, 1).float()
        a, s2 = ab.sqrt(), 1 - ab
        x0 = mu + a * sd ** 2 / (ab * sd ** 2 + s2) * (x_t - a * mu)      # E[x0 | x_t]
        eps = (x_t - a * x0) / s2.sqrt()
        return eps if prediction == "epsilon" else a * eps - s2.sqrt() * x0
    n = 300 if sampler in ("ddpm", "dpm++2m-sde") or eta > 0 else 1000
    # the SDE solver's second-order term extrapolates between noisy x0 predictions: a last step into
    # t = 0 far longer (in log-SNR) than the one before it, as linspace makes, inflates the variance
    spacing = "trailing" if sampler == "dpm++2m-sde" else "linspace"
    out = sample(net, (1, 4, 4), generators(5, 0, n), sch, sampler=sampler, steps=steps, prediction=prediction,
                 eta=eta, spacing=spacing)
    assert abs(out.x.mean().item() - mu) < tol
    assert abs(out.x.std().item() - sd) < tol


def test_evenly_spaced_frames():
    assert evenly_spaced(20, 5) == [0, 5, 10, 14, 19]
    assert evenly_spaced(1000, 2) == [0, 999]
    with pytest.raises(ZooError):
        evenly_spaced(4, 8)


def test_resolve_options():
    d = {"sampler": "dpm++2m", "steps": 20, "eta": 0.0, "spacing": "linspace", "clip": 1.0, "variance": "small"}
    assert resolve_options(d, {}, 1000)["steps"] == 20
    assert resolve_options(d, {"sampler": "ddpm"}, 1000)["steps"] == 1000
    assert resolve_options(d, {"sampler": "ddim"}, 1000)["steps"] == 20
    assert resolve_options(d, {"sampler": "ddpm", "steps": 100}, 1000)["steps"] == 100
    for bad in ({"temperature": 1.0}, {"sampler": "euler"}, {"steps": 0}, {"steps": 1001}, {"spacing": "x"}):
        with pytest.raises(ZooError):
            resolve_options(d, bad, 1000)


@pytest.mark.parametrize("kind", KINDS)
def test_min_snr_weights_the_same_x0_error_alike_for_v_and_epsilon(kind):
    """Min-SNR-gamma weights an x0 error by min(SNR, gamma) whatever the network predicts: a v output
    and the epsilon output that imply the same x0 estimate get the same weighted loss, and that loss is
    min(SNR, gamma) times the x0 error."""
    s = NoiseSchedule(kind, 1000)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 30, 200, 500, 800, 990])        # SNR from far above gamma=5 to far below it
    x0 = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    x_t = s.add_noise(x0, noise, t)
    v_hat = s.v_target(x0, noise, t) + 0.1 * torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    x0_hat, eps_hat = s.split(v_hat, x_t, t, "v")
    per = lambda a, b: (a - b).pow(2).flatten(1).mean(1)  # noqa: E731
    loss_v = s.loss_weight(t, "v", "min-snr", 5.0).double() * per(v_hat, s.v_target(x0, noise, t))
    loss_eps = s.loss_weight(t, "epsilon", "min-snr", 5.0).double() * per(eps_hat, noise)
    ab = s.alpha_bar(t)
    loss_x0 = (ab / (1 - ab)).clamp(max=5.0) * per(x0_hat, x0)
    torch.testing.assert_close(loss_v, loss_x0, rtol=1e-5, atol=0)
    torch.testing.assert_close(loss_eps, loss_x0, rtol=1e-5, atol=0)
    assert s.loss_weight(t, "v", "uniform", 5.0) is None


def test_min_snr_loss_and_bad_settings():
    from zoo import get_model_class
    cls = get_model_class("diffusion")
    torch.manual_seed(0)
    m = cls(cls.tiny_config(loss_weight="min-snr"))
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    out = m.loss(x)
    assert out["loss"].item() < out["mse"].item()   # every weight is below 1 (gamma/(SNR+1) or SNR/(SNR+1))
    out["loss"].backward()
    for bad, msg in (({"loss_weight": "snr"}, "unknown loss_weight"), ({"loss_weight": "min-snr", "snr_gamma": 0.0},
                                                                       "snr_gamma must be > 0")):
        with pytest.raises(ZooError, match=msg):
            cls(cls.tiny_config(**bad))
