"""The Gaussian conv VAE (vae, and the VAE-GAN's networks) conditioned on an embedding: q(z|x,c),
p(x|z,c), prior N(0, I); the null condition when none is given."""
import pytest
import torch

from zoo import ZooError
from zoo.images import to_float

from helpers import data, tiny

D = 6


def class_cond(labels: torch.Tensor) -> torch.Tensor:
    """A fixed random embedding per class, standing in for a text encoder's."""
    return torch.randn(10, D, generator=torch.Generator().manual_seed(0))[labels]


def test_conditioning_layers_come_after_the_others():
    torch.manual_seed(0)
    plain = tiny("vae").state_dict()
    torch.manual_seed(0)
    cond = tiny("vae", cond_dim=D).state_dict()
    assert all(torch.equal(cond[k], v) for k, v in plain.items())
    assert sorted({k.split(".")[0] + "." + k.split(".")[1] for k in set(cond) - set(plain)}) == ["decoder.film", "encoder.film"]
    # the VAE-GAN's VAE is the same networks under the same names, conditioning included
    shared = {k: v.shape for k, v in tiny("vae_gan", cond_dim=D).state_dict().items() if not k.startswith("disc.")}
    assert shared == {k: v.shape for k, v in cond.items()}


def test_no_cond_is_the_null_condition():
    torch.manual_seed(0)
    m = tiny("vae", cond_dim=D).eval()
    x = to_float(data().images[:4])
    for a, b in zip(m.encode(x), m.encode(x, torch.zeros(4, D))):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    a = m.log_prob(x, k=3)
    torch.manual_seed(1)
    assert torch.equal(a, m.log_prob(x, torch.zeros(4, D), k=3))
    c = class_cond(data().labels[:4])
    mu_c, _ = m.encode(x, c)
    assert not torch.allclose(mu_c, m.encode(x)[0])                     # q(z|x,c) depends on c


def test_cond_is_checked():
    x = to_float(data().images[:3])
    with pytest.raises(ZooError, match="unconditional"):
        tiny("vae").log_prob(x, torch.zeros(3, D))
    with pytest.raises(ZooError, match="unconditional"):
        tiny("vae").loss(x, torch.zeros(3, D))
    with pytest.raises(ZooError, match="cond must be"):
        tiny("vae", cond_dim=D).log_prob(x, torch.zeros(2, D))


@pytest.mark.slow
def test_conditional_vae_uses_its_condition():
    # after a short training on the class embeddings, the bound of log p(x|c) is higher at the
    # image's own class than at another trained class's (200 steps: +170 nats on average, higher
    # for 86% of the images; still mixed at 80 steps)
    torch.manual_seed(0)
    m = tiny("vae", cond_dim=D)
    d = data()
    opt = m.configure_optimizer("main", m.param_groups()["main"])
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        i = torch.randint(0, len(d.images), (32,), generator=g)
        opt.zero_grad(set_to_none=True)
        m.loss(to_float(d.images[i]), class_cond(d.labels[i]))["loss"].backward()
        opt.step()
    m.eval()
    x, y = to_float(d.images[:64]), d.labels[:64]
    torch.manual_seed(0)
    own = m.log_prob(x, class_cond(y), k=4)
    torch.manual_seed(0)
    other = m.log_prob(x, class_cond((y + 1) % 4), k=4)
    assert (own - other).mean() > 50 and (own > other).float().mean() > 0.7, (own - other)
