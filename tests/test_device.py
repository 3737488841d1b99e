"""Every tensor a family makes lands on the model's device, checked without a GPU.

Two checks, parametrized over every registered family (tiny configs):

1. The model on the ``meta`` device. Each phase's ``loss`` (with its backward), ``generate``
   under ``zoo.rng.device_scope("meta")`` (as ``Generator.sample`` runs it), ``log_prob`` on
   CPU images and ``interpolate``/``trajectory`` all run on meta tensors. A tensor made on the
   CPU and mixed with meta tensors raises; one that slips through shows up in the outputs,
   which must all be on meta. Meta tensors hold no data, so three things are adapted, each
   named where it is done:
     - diffusion: ``NoiseSchedule.alpha_bar`` looks its float64 CPU table up by the timesteps'
       values (``t.cpu()``); a stand-in returns a CPU tensor of the same shape and dtype, so the
       move of the looked-up values onto the model's device is still exercised;
     - ``zoo.images.to_uint8`` ends in ``.cpu()`` (uint8 images leave on the CPU), which has
       nothing to copy on meta: the test lets ``.cpu()`` pass meta tensors through;
     - losses whose training forward has data-dependent steps run on meta in eval mode (same
       arithmetic without that step), or not at all: see ``META_EVAL`` and ``META_SKIP``.
2. The model on the CPU with ``torch.set_default_device("meta")`` (``with torch.device("meta")``)
   for the paths with data-dependent steps (``.item()``, ``bool()``, ``bincount``, ``nonzero``):
   every stage hook and loss in train mode, ``log_prob`` and ``interpolate``. A tensor made
   without ``device=`` lands on meta there and raises when it meets the model's CPU tensors, so
   tensors kept on the CPU on purpose (global-RNG draws and indices into CPU tables or the CPU
   image set) say ``device="cpu"``.

Not covered: the data-dependent steps of check 1 are only covered by check 2, which finds
tensors made without a device but not CPU inputs left unmoved (e.g. images given to
``begin_stage`` must be moved to the model's device: flow's and latent diffusion's
``begin_stage`` read data with ``bool()``/``.item()`` and so run on meta nowhere). The sampling
loops inside ``Generator.sample`` copy into a CPU tensor and are not run on meta.
"""
import pytest
import torch

import zoo
from zoo import rng
from zoo.images import to_float
from zoo.schedules import NoiseSchedule

from helpers import data, tiny

FAMILIES = zoo.list_models()
META = torch.device("meta")

# family -> why its training forward cannot run on meta; its losses run there in eval mode
META_EVAL = {
    "flow": "ActNorm's first-batch initialization checks its flag with bool()",
}
# (family, phase) -> why that loss cannot run on meta at all (check 2 covers it)
META_SKIP = {
    ("vqvae", "ae"): "the quantizer counts code use with bincount, which has no meta kernel",
}
# extra sampler options exercised by generate(), per family
SAMPLER_OPTS = {
    "diffusion": [{"sampler": "ddpm", "steps": 3, "variance": "large"}, {"sampler": "ddim", "steps": 3, "eta": 1.0}],
    "latent_diffusion": [{"sampler": "ddim", "steps": 3}],
    "gan": [{"truncation": 0.5}],
    "vae": [{"mode": "sample"}],
    "vae_gan": [{"mode": "sample"}],
    "vqvae": [{"use_cache": False}],
}


@pytest.fixture
def meta_safe(monkeypatch):
    """The two stand-ins of check 1 (see the module docstring)."""
    lookup = NoiseSchedule.alpha_bar

    def alpha_bar(self, t):  # for meta timesteps: the table lookup's shape, dtype and device (CPU)
        if torch.is_tensor(t) and t.is_meta:
            return torch.full(t.shape, 0.5, dtype=torch.float64, device="cpu")
        return lookup(self, t)
    monkeypatch.setattr(NoiseSchedule, "alpha_bar", alpha_bar)
    cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: self if self.is_meta else cpu(self, *a, **k))


def _meta_model(name, **fields):
    torch.manual_seed(0)
    return tiny(name, **fields).to(META)


def _phases(model):
    return [p for ps in model.stage_plan().values() for p in ps]


def _assert_on(device_type, tensors, what):
    for k, v in tensors.items():
        if torch.is_tensor(v):
            assert v.device.type == device_type, f"{what}: {k!r} is on {v.device}, not {device_type}"


@pytest.mark.parametrize("name", FAMILIES)
def test_losses_on_meta(name, meta_safe):
    model = _meta_model(name).train(name not in META_EVAL)
    c, h, w = data().shape
    x = torch.zeros(4, c, h, w, device=META)
    ran = 0
    for phase in _phases(model):
        if (name, phase) in META_SKIP:
            continue
        model.zero_grad(set_to_none=True)
        out = model.loss(x, phase=phase)
        _assert_on("meta", out, f"{name} loss({phase})")
        out["loss"].backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads, f"{name} loss({phase}) reached no parameter"
        _assert_on("meta", grads, f"{name} grad after loss({phase})")
        ran += 1
    assert ran


@pytest.mark.parametrize("name", FAMILIES)
def test_generate_on_meta(name, meta_safe):
    model = _meta_model(name).eval()
    c, h, w = data().shape
    for opts in [{}] + SAMPLER_OPTS.get(name, []):
        with torch.no_grad(), rng.device_scope(META):
            y = model.generate(rng.generators(0, 0, 3), **opts)
        assert y.device == META and y.shape == (3, c, h, w), (opts, y.device, y.shape)


@pytest.mark.parametrize("name", [f for f in FAMILIES if zoo.get_model_class(f).likelihood != "none"])
def test_log_prob_moves_its_input(name, meta_safe):
    model = _meta_model(name).eval()
    x = to_float(data().images[:3])                                 # CPU images, as zoo.metrics.bpd gives them
    kw = {"terms": 2} if name == "diffusion" else {}
    lp = model.log_prob(x, **kw)
    assert lp.device == META and lp.shape == (3,)


@pytest.mark.parametrize("name", [f for f in FAMILIES if zoo.get_model_class(f).has_latent])
def test_interpolate_moves_its_inputs(name, meta_safe):
    model = _meta_model(name).eval()
    a, b = data().images[0], data().images[1]                       # uint8 on the CPU
    strip = model.interpolate(a, b, steps=3)
    assert strip.device == META and strip.dtype == torch.uint8 and strip.shape == (3, *data().shape)


@pytest.mark.parametrize("name", ["diffusion", "latent_diffusion"])
def test_trajectory_on_meta(name, meta_safe):
    model = _meta_model(name)
    traj = model.trajectory(2, frames=2, sampler="ddim", steps=3)
    assert traj.device == META and traj.shape == (2, 2, *data().shape)


@pytest.mark.parametrize("name", FAMILIES)
def test_data_dependent_paths_make_no_tensor_without_a_device(name):
    torch.manual_seed(0)
    model = tiny(name, **({"scale_images": 64} if name == "latent_diffusion" else {}))
    images = data().images[:64]
    x = to_float(images[:8])
    with torch.device(META):  # a tensor made without device= lands on meta and fails to mix
        for stage, phases in model.stage_plan().items():
            model.train()
            model.begin_stage(stage, images)
            for phase in phases:
                model.zero_grad(set_to_none=True)
                out = model.loss(x, phase=phase)
                _assert_on("cpu", out, f"{name} loss({phase})")
                out["loss"].backward()
        model.eval()
        if model.likelihood != "none":
            kws = [{}] + ([{"terms": 2}] if name == "diffusion" else [])
            for kw in kws:
                _assert_on("cpu", {"log_prob": model.log_prob(x, **kw)}, f"{name} log_prob({kw})")
        if model.has_latent:
            _assert_on("cpu", {"strip": model.interpolate(images[0], images[1], steps=3)}, f"{name} interpolate")
    if name == "diffusion":  # the other variance reads its table with t.cpu()
        model.config.variance = "large"
        with torch.device(META):
            _assert_on("cpu", {"log_prob": model.log_prob(x, terms=2)}, "diffusion log_prob(variance=large)")
