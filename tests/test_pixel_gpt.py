"""pixel_gpt: exact log-likelihood, tokens, sampler options, warm-up, the RGB palette."""
import math

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo import ZooError
from zoo.data import load_dataset
from zoo.images import to_float
from zoo.models.pixel_gpt import PixelGPT


def _model(size=8, channels=1, **fields):
    torch.manual_seed(0)
    return PixelGPT(PixelGPT.tiny_config(image_size=size, channels=channels, **fields)).eval()


def _images(size=8, channels=1, n=5):
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


def test_log_prob_is_sum_of_token_log_softmax():
    m = _model()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    u = _images()
    x = to_float(u)
    lp = m.log_prob(x)
    tokens = u.flatten(1).long()                           # grayscale token = 8-bit level
    logp = torch.log_softmax(m.net(tokens), -1)           # (B, T, 256)
    expected = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(1)
    torch.testing.assert_close(lp, expected)
    # the training loss is the same quantity in nats per token
    loss = m.loss(x)
    torch.testing.assert_close(loss["loss"], -lp.mean() / 64)
    torch.testing.assert_close(loss["bpd"], -lp.mean() / (64 * math.log(2)))


def test_uniform_model_is_exactly_8_bits_per_dim():
    m = _model()
    with torch.no_grad():
        m.net.head.weight.zero_()
        m.net.head.bias.zero_()
    from zoo.metrics.bpd import bits_per_dim
    r = bits_per_dim(m, _images(n=4))
    assert r["kind"] == "exact"
    assert abs(r["bpd"] - 8.0) < 1e-6


def test_grayscale_tokens_round_trip():
    m = _model()
    u = _images()
    tokens = m.tokenize(to_float(u))
    assert torch.equal(tokens, u.flatten(1).long())
    assert torch.equal(zoo.images.to_uint8(m.detokenize(tokens)), u)


def test_cache_and_recompute_give_identical_images():
    m = _model()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    a = m.sample(4, seed=1, temperature=0.9, top_k=40)
    b = m.sample(4, seed=1, temperature=0.9, top_k=40, use_cache=False)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


def test_sampler_options():
    m = _model()
    assert m.nfe() == 64 and m.nfe(use_cache=False) == 64
    assert m.sample(2, seed=0, top_k=1).unique(dim=0).shape[0] == 1, "top_k=1 is greedy: seed-independent"
    with pytest.raises(TypeError):
        m.sample(1, steps=5)                               # not an option of this family
    with pytest.raises(ZooError):
        m.sample(1, temperature=0)
    with pytest.raises(ZooError):
        m.sample(1, top_k=-1)
    with pytest.raises(ZooError):
        m.sample(1, use_cache="yes")
    with pytest.raises(ZooError):
        PixelGPT(PixelGPT.tiny_config(channels=2))


def test_low_temperature_concentrates():
    m = _model()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    hot = m.sample(8, seed=0, temperature=1.0).float().std(0).mean()
    cold = m.sample(8, seed=0, temperature=0.05).float().std(0).mean()
    assert cold < hot


def test_warmup_schedule_survives_resume():
    m = _model(warmup_steps=4, lr=1e-2)
    params = list(m.parameters())
    opt = m.configure_optimizer("main", params)
    lrs = []
    for _ in range(3):
        opt.zero_grad()
        m.loss(to_float(_images()))["loss"].backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([2.5e-3, 5e-3, 7.5e-3])
    again = m.configure_optimizer("main", params)          # as on --resume: fresh optimizer + saved state
    again.load_state_dict(opt.state_dict())
    for _ in range(2):
        again.zero_grad()
        m.loss(to_float(_images()))["loss"].backward()
        again.step()
    assert again.param_groups[0]["lr"] == pytest.approx(1e-2)


@pytest.mark.parametrize("warm", [0, 3])
def test_own_warmup_composes_with_the_trainers_lr_decay(tmp_path, warm):
    """train.lr_decay reaches the pixel GPT: the lr of each step is its own warm-up factor times the
    trainer's schedule (it once overwrote that schedule with its constant lr)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from zoo.train import TrainConfig, fit
    from zoo.train.schedule import lr_factor
    seen = []
    handle = register_optimizer_step_post_hook(lambda opt, a, k: seen.append(opt.param_groups[0]["lr"]))
    tcfg = TrainConfig(steps=8, batch_size=8, lr_decay="linear", min_lr_ratio=0.1, log_every=1)
    m = _model(warmup_steps=warm, lr=1e-2)
    try:
        fit(m, _images(n=16), None, tmp_path / "r", tcfg, progress=False)
    finally:
        handle.remove()
    want = [1e-2 * (min(1.0, (t + 1) / warm) if warm else 1.0) * lr_factor(t, 8, tcfg) for t in range(8)]
    assert seen == pytest.approx(want) and seen[-1] < 3e-3  # decayed, not held at 1e-2


def test_rgb_palette_fit_save_load(tmp_path):
    d = load_dataset("synthetic:16:3", "train")
    torch.manual_seed(0)
    m = PixelGPT(PixelGPT.tiny_config(image_size=16, channels=3))
    assert m.bpd_units == "palette tokens"
    x = to_float(d.images[:64])
    before = (m.detokenize(m.tokenize(x)) - x).abs()       # placeholder grid palette
    m.begin_stage("main", d.images)
    pal = m.palette.clone()                                # (16, 3)
    assert pal.shape == (16, 3) and pal.abs().max() <= 1
    # the fitted palette reconstructs the training colours far better than the grid (which
    # misses them by ~0.05 on average and ~1 at worst); 16 colours for ~130 in the data
    after = (m.detokenize(m.tokenize(x)) - x).abs()
    assert after.mean() < 0.2 * before.mean() and after.max() < 0.1, (before.mean(), after.mean(), after.max())
    x = x[:8]
    tokens = m.tokenize(x)
    # tokens are nearest-palette indices
    pix = x.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(tokens.flatten(), torch.cdist(pix, pal).argmin(1))
    lp = m.log_prob(x)
    assert lp.shape == (8,) and (lp < 0).all()
    zoo.save(m, tmp_path / "rgb")
    back = zoo.load(tmp_path / "rgb")
    assert torch.equal(back.palette, pal)
    s = back.sample(2, seed=0)
    assert s.shape == (2, 3, 16, 16)
    assert torch.equal(s, m.sample(2, seed=0))


def test_trajectory_draws_in_raster_order():
    m = _model()
    traj = m.trajectory(2, seed=4, frames=4)               # (2, 4, 1, 8, 8): 16 more pixels per frame
    assert traj.shape == (2, 4, 1, 8, 8) and traj.dtype == torch.uint8
    final = m.sample(2, seed=4)
    assert torch.equal(traj[:, -1], final)
    flat = traj.flatten(2)                                 # (2, 4, 64)
    assert torch.equal(flat[:, 1, :32], final.flatten(1)[:, :32])
    assert (flat[:, 1, 32:] == 128).all()


def _cond_model(**fields):
    m = _model(cond_dim=5, **fields)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m


def test_unconditional_model_builds_no_condition_layer():
    m = _model()
    assert not m.is_conditional and m.net.cond_proj is None
    assert not any("cond" in k for k in m.state_dict())
    assert m.nfe(guidance=3.0) == 64                       # no condition: nothing to guide


def test_conditional_log_prob_is_exact_given_cond():
    m = _cond_model()
    u = _images(n=4)
    x, c = to_float(u), torch.randn(4, 5)
    lp = m.log_prob(x, c)
    tokens = u.flatten(1).long()
    logp = torch.log_softmax(m.net(tokens, cond=c), -1)   # (B, T, 256)
    torch.testing.assert_close(lp, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(1))
    assert not torch.allclose(lp, m.log_prob(x, torch.randn(4, 5)))
    torch.testing.assert_close(m.log_prob(x), m.log_prob(x, torch.zeros(4, 5)))   # None: the null condition
    torch.testing.assert_close(m.loss(x, c)["loss"], -lp.mean() / 64)              # eval: nothing dropped
    with pytest.raises(ZooError, match="cond must be"):
        m.log_prob(x, torch.zeros(4, 6))


def test_loss_drops_conditions_in_training():
    m = _cond_model(cond_drop=1.0).train()
    x, c = to_float(_images(n=4)), torch.randn(4, 5)
    torch.testing.assert_close(m.loss(x, c)["loss"], m.loss(x, torch.zeros(4, 5))["loss"])
    m.config.cond_drop = 0.0
    assert not torch.allclose(m.loss(x, c)["loss"], m.loss(x, torch.zeros(4, 5))["loss"])


def test_guided_sampling_options_and_nfe():
    m = _cond_model()
    c = torch.randn(3, 5)
    assert m.guidance and m.nfe() == 64 and m.nfe(guidance=0) == 64 and m.nfe(guidance=1.0) == 64
    assert m.nfe(guidance=2.0) == 128                      # null and cond rows: two evaluations per token
    a = m.sample(3, seed=1, cond=c, guidance=2.0, temperature=0.9, top_k=40)
    b = m.sample(3, seed=1, cond=c, guidance=2.0, temperature=0.9, top_k=40, use_cache=False)
    assert torch.equal(a, b)
    assert not torch.equal(a, m.sample(3, seed=1, cond=c, temperature=0.9, top_k=40))
    assert torch.equal(m.sample(3, seed=1, cond=c, guidance=0.0), m.sample(3, seed=1))
    for bad in (-1.0, float("inf")):
        with pytest.raises(ZooError, match="guidance"):
            m.sample(1, cond=c[:1], guidance=bad)
