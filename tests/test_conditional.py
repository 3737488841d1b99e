"""The conditioning contract, checked for every family: a model built with ``cond_dim > 0`` takes a
text embedding in ``loss``, ``sample`` and ``log_prob``, samples unconditionally from the null
condition, and mixes the two by classifier-free guidance where it declares ``guidance``."""
import pytest
import torch

import zoo
from zoo import ZooError
from zoo.images import to_float
from zoo.train import TrainConfig, fit

from helpers import data, run_cache, tiny

# the cascades (a base plus a super-resolution decoder) are not conditional yet: they refuse cond_dim
FAMILIES = [n for n in zoo.list_models() if not n.startswith("cascade")]
D = 6


def class_cond(labels: torch.Tensor) -> torch.Tensor:
    """A fixed random embedding per class, standing in for a text encoder's."""
    table = torch.randn(10, D, generator=torch.Generator().manual_seed(0))
    return table[labels]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One briefly trained tiny conditional run per family (conditioned on class_cond), shared below."""
    def make(name, out):
        torch.manual_seed(0)
        m = tiny(name, cond_dim=D)
        d = data()
        fit(m, d.images, class_cond(d.labels), out, TrainConfig(steps=12, batch_size=16, log_every=5), progress=False)
        return zoo.load(out)
    return run_cache(tmp_path_factory, make)


def test_condition_for_training_rate_and_null():
    m = tiny("vae", cond_dim=D, cond_drop=0.3).train()
    c = torch.ones(4000, D)
    torch.manual_seed(0)
    kept = m.condition_for_training(c, 4000).abs().sum(1) > 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.03
    assert torch.equal(m.condition_for_training(None, 3), torch.zeros(3, D))
    assert torch.equal(m.eval().condition_for_training(c[:5], 5), c[:5])      # no dropping outside training


@pytest.mark.parametrize("name", FAMILIES)
def test_loss_depends_on_cond(name, trained):
    m = trained(name).eval()   # briefly trained: a family may start its layers at zero (diffusion's UNet)
    d = data()
    x, y = to_float(d.images[:8]), d.labels[:8]
    a, b = class_cond(y), class_cond((y + 1) % 4)
    moved = False
    for phases in m.stage_plan().values():
        for p in phases:
            torch.manual_seed(1)
            la = m.loss(x, a, phase=p)["loss"]
            torch.manual_seed(1)
            lb = m.loss(x, b, phase=p)["loss"]
            assert torch.isfinite(la) and torch.isfinite(lb)
            moved |= not torch.allclose(la, lb)
    assert moved, "no phase's loss depends on the condition"


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_follow_cond_deterministically(name, trained):
    m = trained(name)
    assert m.is_conditional
    y = torch.tensor([0, 1, 2, 3])
    a = m.sample(4, seed=3, cond=class_cond(y))
    assert a.shape == (4, *data().shape) and a.dtype == torch.uint8
    assert torch.equal(a, m.sample(4, seed=3, cond=class_cond(y)))
    assert not torch.equal(a, m.sample(4, seed=3, cond=class_cond((y + 1) % 4)))
    # unconditional sampling stays available: the null condition
    assert torch.equal(m.sample(4, seed=3), m.sample(4, seed=3, cond=torch.zeros(4, D)))


@pytest.mark.parametrize("name", FAMILIES)
def test_guidance(name, trained):
    m = trained(name)
    c = class_cond(torch.tensor([0, 1, 2]))
    if not m.guidance:
        with pytest.raises(ZooError, match="guidance"):
            m.sample(3, cond=c, guidance=2.0)
        assert torch.equal(m.sample(3, cond=c, guidance=1.0), m.sample(3, cond=c))
        return
    assert torch.equal(m.sample(3, seed=1, cond=c, guidance=0.0), m.sample(3, seed=1))   # w = 0: unconditional
    assert not torch.equal(m.sample(3, seed=1, cond=c, guidance=3.0), m.sample(3, seed=1, cond=c, guidance=1.0))


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_cond_is_one_line(name, trained):
    m = trained(name)
    with pytest.raises(ZooError, match="cond must be"):
        m.sample(2, cond=torch.zeros(2, D + 1))
    with pytest.raises(ZooError, match="cond must be"):
        m.sample(2, cond=torch.zeros(2, D, dtype=torch.long))


@pytest.mark.parametrize("name", [n for n in FAMILIES if zoo.get_model_class(n).likelihood != "none"])
def test_log_prob_given_cond(name, trained):
    m = trained(name)
    d = data()
    x, y = to_float(d.images[:4]), d.labels[:4]
    torch.manual_seed(0)
    a = m.log_prob(x, class_cond(y))
    torch.manual_seed(0)
    b = m.log_prob(x, class_cond((y + 1) % 4))
    assert a.shape == (4,) and torch.isfinite(a).all()
    assert not torch.allclose(a, b)
