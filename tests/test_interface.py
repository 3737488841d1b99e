"""The Generator contract, checked for every registered family (tiny configs, synthetic data)."""
import pytest
import torch

import zoo
from zoo import ZooError
from zoo.images import to_float
from zoo.text import embed_prompts

from helpers import assert_same_images, data, run_cache, tiny, train_tiny

FAMILIES = zoo.list_models()              # at collection: whatever test files were collected before this one
REGISTRY = {name: zoo.get_model_class(name) for name in FAMILIES}
TOYS = {"toy_mean", "toy_nan", "toy_recipe"}   # tests/zoo_test_family.py, registered by the toy_families fixture


def _package_families() -> list[str]:
    """The registered families that zoo.models registers (their classes live in zoo.models)."""
    return sorted(n for n in zoo.list_models() if zoo.get_model_class(n).__module__.startswith("zoo.models."))


def test_the_toy_families_fixture_adds_the_toys_only(toy_families):
    assert set(zoo.list_models()) == set(FAMILIES) | TOYS and not TOYS & set(FAMILIES)
    assert all(zoo.get_model_class(n) is cls for n, cls in REGISTRY.items())


def test_the_registry_holds_the_package_families_alone():
    """No toy registered at collection (the contract tests below are parametrized over the package's
    own families, whichever test file was collected first) and none left behind by the toy_families
    fixture (the test above): the registry is back to the very same classes."""
    from zoo.api import unregister_model
    assert FAMILIES == _package_families() == zoo.list_models() != []
    assert {n: zoo.get_model_class(n) for n in zoo.list_models()} == REGISTRY
    with pytest.raises(KeyError):
        unregister_model("toy_mean")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One briefly trained tiny run directory per family, shared by the tests below."""
    return run_cache(tmp_path_factory, lambda name, out: (train_tiny(name, out), out))


def _phase_losses(model, x):
    torch.manual_seed(1234)  # the same noise draws before and after training
    with torch.no_grad():
        first_stage = next(iter(model.stage_plan().values()))
        return {p: float(model.loss(x, phase=p)["loss"]) for p in first_stage}


@pytest.mark.parametrize("name", FAMILIES)
def test_declarations(name):
    cls = zoo.get_model_class(name)
    assert cls.likelihood in ("exact", "bound", "none")
    m = tiny(name)
    groups = m.param_groups()
    phases = [p for ps in m.stage_plan().values() for p in ps]
    assert sorted(groups) == sorted(phases)
    assert abs(sum(m.stage_fractions().values()) - 1) < 1e-9
    assert m.nfe() >= 1


@pytest.mark.parametrize("name", FAMILIES)
def test_few_steps_reduce_loss(name, tmp_path):
    torch.manual_seed(0)
    m = tiny(name)
    d = data()
    x = to_float(d.images[:32])
    before = _phase_losses(m, x)
    from zoo.train import TrainConfig, fit
    fit(m, d.images, None, tmp_path / "r", TrainConfig(steps=60, batch_size=16), progress=False)
    after = _phase_losses(m, x)
    first = next(iter(before))
    assert after[first] < before[first], (before, after)


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_dtype_shape_range(name, trained):
    model, _ = trained(name)
    c, h, w = data().shape
    state = torch.get_rng_state()
    s = model.sample(5, seed=3, batch_size=4)
    assert torch.equal(state, torch.get_rng_state()), "sample() touched the global RNG"
    assert s.dtype == torch.uint8 and s.device.type == "cpu"
    assert s.shape == (5, c, h, w)
    assert model.sample(0).shape == (0, c, h, w)


# the pixel GPT's case samples 784 sequential steps at three batch sizes (about 50 s): opt in with --runslow
@pytest.mark.parametrize("name", [pytest.param(f, marks=pytest.mark.slow) if f == "pixel_gpt" else f for f in FAMILIES])
def test_same_seed_same_images_any_batch_size(name, trained):
    model, _ = trained(name)
    ref = model.sample(64, seed=11, batch_size=64)
    for bs in (1, 7):
        assert_same_images(model.sample(64, seed=11, batch_size=bs), ref)
    other = model.sample(64, seed=12, batch_size=64)
    assert not torch.equal(other, ref), "different seeds gave identical images"
    # a prefix of a longer request is the same images
    assert_same_images(model.sample(10, seed=11, batch_size=64), ref[:10])


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_identical_samples(name, trained, tmp_path):
    model, run = trained(name)
    again = zoo.load(run)
    assert torch.equal(again.sample(16, seed=5, batch_size=8), model.sample(16, seed=5, batch_size=8))
    zoo.save(again, tmp_path / "copy")
    third = zoo.load(tmp_path / "copy")
    assert torch.equal(third.sample(16, seed=5, batch_size=8), model.sample(16, seed=5, batch_size=8))


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_as_declared(name, trained):
    model, _ = trained(name)
    x = to_float(data("synthetic", "test").images[:6])
    if model.likelihood == "none":
        with pytest.raises(ZooError):
            model.log_prob(x)
        return
    torch.manual_seed(0)
    lp = model.log_prob(x)
    assert lp.shape == (6,)
    assert torch.isfinite(lp).all()
    # a log-probability of discrete pixels is <= 0
    assert (lp <= 1e-3).all(), lp


@pytest.mark.parametrize("name", FAMILIES)
def test_prompts_rejected_by_unconditional(name, trained):
    model, _ = trained(name)
    assert not model.is_conditional
    with pytest.raises(ZooError, match="unconditional"):
        embed_prompts(model, "a dark coat", 3)
    with pytest.raises(ZooError, match="unconditional"):
        model.sample(3, cond=torch.zeros(3, 4))