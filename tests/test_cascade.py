"""The cascade family (issue 18): a base at low x low plus a noise-conditioned super-resolution decoder.

The Generator contract of ``cascade`` and its presets is also checked by tests/test_interface.py
and tests/test_device.py (they iterate over every registered family); this file checks what is
the cascade's own, with tiny configs on the synthetic shapes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import ZooError
from zoo.api import build_model
from zoo.images import to_float
from zoo.models.cascade import augment, downsample, upsample
from zoo.train import TrainConfig, fit

from helpers import assert_same_images, data, tiny

ZOO = str(Path(sys.executable).parent / "zoo")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny cascade (base vae_gan at 14x14) trained for a few steps: (model, run folder, summary)."""
    out = tmp_path_factory.mktemp("cascade") / "run"
    torch.manual_seed(0)
    m = tiny("cascade", base_share=0.25)
    d = data()
    summary = fit(m, d.images, None, out, TrainConfig(steps=16, batch_size=16, log_every=4), progress=False)
    return zoo.load(out), out, summary


def _randomize(module):
    """Non-zero weights everywhere (the UNet's output convs start at zero, hiding every input)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_downsample_is_block_mean_on_the_8bit_grid():
    x = to_float(data().images[:4])
    small = downsample(x, 14)
    assert small.shape == (4, 1, 14, 14)
    block = x.view(4, 1, 14, 2, 14, 2).mean((3, 5))
    assert (small - block).abs().max() <= 1 / 127.5 / 2 + 1e-6       # the mean, rounded to a level
    levels = (small + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)         # an 8-bit image
    assert downsample(x, 7).shape == (4, 1, 7, 7)


def test_decoder_shapes_and_loss():
    m = tiny("cascade")
    x = to_float(data().images[:6])
    out = m.decoder.loss(x, downsample(x, 14))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    gens = zoo.rng.generators(0, 0, 3)
    y = m.decoder.upscale(downsample(x[:3], 14), gens)
    assert y.shape == (3, 1, 28, 28) and y.min() >= -1 and y.max() <= 1
    up = m.upscale(data().images[:5, :, ::2, ::2].contiguous(), seed=1, batch_size=2)
    assert up.dtype == torch.uint8 and up.shape == (5, 1, 28, 28)
    with pytest.raises(ZooError, match="upscale needs uint8"):
        m.upscale(data().images[:2])                                   # full size: not a small image


@pytest.mark.parametrize("prediction", ["v", "epsilon"])
def test_decoder_loss_is_the_shared_diffusion_loss(prediction):
    """SRDecoder.loss is zoo.diffusion_process.simple_loss of the UNet on [x_t, the upsampled augmented
    small image], after drawing the level and its noise: the same value, bit for bit, as that
    computation written out, and the same RNG state after it."""
    m = tiny("cascade", prediction=prediction, aug_max=0.5)
    _randomize(m.decoder.unet)
    dec, x = m.decoder, to_float(data().images[:6])
    small = downsample(x, 14)
    torch.manual_seed(3)
    got = dec.loss(x, small)
    after = torch.rand(1)
    torch.manual_seed(3)
    level = torch.rand(6) * 0.5
    cond = upsample(augment(small, level, torch.randn_like(small)), 28)
    t = torch.randint(0, dec.schedule.T, (6,))
    noise = torch.randn_like(x)
    x_t = dec.schedule.add_noise(x, noise, t)
    pred = dec.unet(torch.cat([x_t, cond], dim=1), t, aug_level=level)
    want = torch.nn.functional.mse_loss(pred, dec.schedule.target(x, noise, t, prediction))
    assert torch.equal(got["loss"], want) and torch.equal(got["mse"], want)
    assert torch.equal(torch.rand(1), after)


def test_decoder_loss_follows_loss_weight():
    """The decoder's ``loss_weight`` takes effect (through the shared loss) and is checked at build."""
    x = to_float(data().images[:6])
    losses = {}
    for kind in ("uniform", "min-snr"):
        m = tiny("cascade", loss_weight=kind)
        _randomize(m.decoder.unet)
        torch.manual_seed(0)
        losses[kind] = m.decoder.loss(x, downsample(x, 14))
    assert torch.allclose(losses["uniform"]["mse"], losses["min-snr"]["mse"])  # the same draws
    assert not torch.equal(losses["uniform"]["loss"], losses["min-snr"]["loss"])
    with pytest.raises(ZooError, match="loss_weight") as e:
        tiny("cascade", loss_weight="nope")
    assert "\n" not in str(e.value)


def test_level_zero_is_clean_conditioning():
    small = torch.rand(3, 1, 14, 14) * 2 - 1
    noise = torch.randn_like(small)
    assert torch.equal(augment(small, torch.zeros(3), noise), small)
    m = tiny("cascade")
    assert torch.allclose(m.decoder.condition(small, torch.zeros(3), noise), upsample(small, 28))
    # a level a mixes in a * noise (variance preserving)
    a = torch.full((3,), 0.6)
    assert torch.allclose(augment(small, a, noise), 0.8 * small + 0.6 * noise)


def test_the_level_reaches_the_network():
    m = tiny("cascade")
    _randomize(m.decoder.unet)
    x = torch.randn(2, 2, 28, 28)
    t = torch.tensor([10, 10])
    with torch.no_grad():
        a = m.decoder.unet(x, t, aug_level=torch.zeros(2))
        b = m.decoder.unet(x, t, aug_level=torch.full((2,), 0.3))
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="aug_level"):
        m.decoder.unet(x, t)


def _record_levels(m):
    seen = []
    forward = m.decoder.unet.forward

    def spy(x, t, aug_level=None):
        seen.append(aug_level.detach().clone())
        return forward(x, t, aug_level)
    m.decoder.unet.forward = spy
    return seen


def test_training_draws_levels_up_to_aug_max_and_sampling_uses_aug():
    torch.manual_seed(0)
    m = tiny("cascade", aug_max=0.4)
    seen = _record_levels(m)
    x = to_float(data().images[:64])
    m.loss(x, phase="decoder")
    lv = seen[-1]
    assert lv.shape == (64,) and lv.min() >= 0 and lv.max() <= 0.4 and lv.std() > 0.05
    seen.clear()
    m.eval().sample(2, seed=0, aug=0.25)
    assert seen and all(torch.allclose(s, torch.full_like(s, 0.25)) for s in seen)
    seen.clear()
    m.sample(2, seed=0)
    assert all(torch.allclose(s, torch.full_like(s, m.config.sample_aug)) for s in seen)
    # without augmentation in training every level is 0 (clean conditioning)
    m0 = tiny("cascade", aug_max=0.0)
    seen0 = _record_levels(m0)
    m0.loss(x, phase="decoder")
    assert torch.equal(seen0[-1], torch.zeros(64))
    with pytest.raises(ZooError, match="aug must be in"):
        m.sample(2, aug=1.5)


def test_stages_phases_and_recorded_split(run):
    model, out, summary = run
    assert model.stage_plan() == {"decoder": ("decoder",), "base": ("base.disc", "base.vae")}
    train = json.loads((out / "train.json").read_text())
    assert train["stage_fractions"] == {"decoder": 0.75, "base": 0.25}
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["base"] == "vae_gan" and cfg["base_share"] == 0.25 and cfg["low"] == 14
    assert cfg["base_config"]["image_size"] == 14                    # the base's full config is recorded
    assert summary["stage_steps"] == {"decoder": 12, "base": 4}


def test_flop_budget_split_follows_the_ratio(tmp_path):
    torch.manual_seed(0)
    m = tiny("cascade", base="vae", base_share=0.3)
    d = data()
    fit(m, d.images, None, tmp_path / "r", TrainConfig(tflops=0.004, batch_size=8), progress=False)
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    fps = s["flops_per_step"]
    spent = {st: s["stage_steps"][st] * sum(v for k, v in fps.items() if k.startswith(st + "/"))
             for st in ("decoder", "base")}
    total = sum(spent.values())
    assert abs(total / 4e9 - 1) < 0.05
    assert abs(spent["base"] / total - 0.3) < 0.03, spent


def test_sample_stages_match_sample_and_depend_only_on_seed_and_index(run):
    model = run[0]
    small, full = model.sample_stages(6, seed=4, batch_size=4)
    assert small.shape == (6, 1, 14, 14) and full.shape == (6, 1, 28, 28) and small.dtype == torch.uint8
    assert_same_images(full, model.sample(6, seed=4, batch_size=6))
    s1, f1 = model.sample_stages(6, seed=4, batch_size=1)
    assert_same_images(s1, small)
    assert_same_images(f1, full)
    assert not torch.equal(model.sample_stages(6, seed=5)[0], small)


def test_base_options_are_prefixed(run):
    model = run[0]
    a = model.sample(4, seed=0, base_mode="sample")                  # the vae_gan base's own option
    b = model.sample(4, seed=0)
    assert not torch.equal(a, b)
    with pytest.raises(ZooError, match="unknown cascade sampler option"):
        model.sample(2, mode="sample")
    assert model.nfe() == 1 + model.config.steps and model.nfe(steps=2) == 3


def test_save_load_round_trip(run, tmp_path):
    model, out, _ = run
    again = zoo.load(out)
    assert torch.equal(again.sample(4, seed=2), model.sample(4, seed=2))
    zoo.save(again, tmp_path / "copy")
    third = zoo.load(tmp_path / "copy")
    assert torch.equal(third.sample_stages(4, seed=2)[0], model.sample_stages(4, seed=2)[0])


@pytest.mark.parametrize("sets,msg", [
    ({"base": "vqvae"}, "several stages"),
    ({"base": "latent_diffusion"}, "several stages"),
    ({"base": "cascade_diffusion"}, "cannot itself be a cascade"),
    ({"base": "nope"}, "unknown model 'nope'"),
    ({"base": "flow", "low": "7"}, "does not build at 7x7"),
    ({"low": "9"}, "low must be a divisor"),
    ({"base_share": "1"}, "base_share must be in"),
    ({"base_set": "image_size=10"}, "base_set cannot set image_size"),
])
def test_bases_that_cannot_work_are_one_line_errors(sets, msg):
    with pytest.raises(ZooError, match=msg) as e:
        build_model("cascade", (1, 28, 28), sets)
    assert "\n" not in str(e.value)
    if "stages" in msg or "build at" in msg or "itself" in msg:
        assert "bases that work at" in str(e.value) and "diffusion" in str(e.value)


def test_base_levels_follow_low():
    m14 = build_model("cascade", (1, 28, 28), {"base": "vae_gan", "low": "14"})
    assert list(m14.config.base_config["widths"]) == [32, 64]             # 14 -> 7: the same 7x7 latent map
    m7 = build_model("cascade", (1, 28, 28), {"base": "gan", "low": "7"})
    assert list(m7.config.base_config["g_widths"]) == [64]
    m = build_model("cascade", (1, 28, 28), {"base": "vae", "base_set": "widths=(16,32);latent_dim=8"})
    assert list(m.config.base_config["widths"]) == [16, 32] and m.config.base_config["latent_dim"] == 8


def test_bench_all_leaves_cascades_out():
    from zoo.bench import select_families as _families
    fams = _families("all", zoo.list_models())
    assert "vae" in fams and not [f for f in fams if f.startswith("cascade")]
    assert _families("cascade_vae_gan,vae", zoo.list_models()) == ["cascade_vae_gan", "vae"]


def _zoo(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([ZOO, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


TINY_SETS = ["--set", "base_tiny=true", "--set", "widths=8,8", "--set", "timesteps=50", "--set", "steps=3"]


def test_installed_command_trains_a_cascade(tmp_path):
    out = tmp_path / "run"
    r = _zoo("train", "cascade", "--data", "synthetic", "--quiet", "--out", out, "--steps", 4, "--batch-size", 16,
             "--set", "base=vae_gan", "--set", "low=14", *TINY_SETS)
    assert r.returncode == 0, r.stderr
    m = zoo.load(out)
    assert m.config.base == "vae_gan" and m.sample(3).shape == (3, 1, 28, 28)
    bad = _zoo("train", "cascade", "--data", "synthetic", "--quiet", "--out", tmp_path / "bad", "--steps", 2,
               "--set", "base=vqvae", *TINY_SETS)
    lines = [l for l in bad.stderr.splitlines() if l.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "several stages" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()
