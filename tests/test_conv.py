"""The shared conv encoder/decoder: a nonlinearity between every pair of convolutions."""
import pytest
import torch
from torch import nn

from zoo.nn.conv import ConvDecoder, ConvEncoder, Discriminator


@pytest.mark.parametrize("cls", [ConvEncoder, ConvDecoder])
@pytest.mark.parametrize("blocks", [0, 1])
def test_every_conv_after_the_first_is_pre_activated(cls, blocks):
    # With blocks=0 the stack is only strided convs: without an activation between them the
    # whole encoder/decoder collapses to one linear map (plus a final activation).
    layers = list(cls(1, 4, (8, 16, 16), blocks).net)
    convs = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs[0] == 0 and len(convs) >= 3
    for i in convs[1:]:
        assert isinstance(layers[i - 1], nn.SiLU), f"{cls.__name__} layer {i} ({layers[i]}) follows {layers[i - 1]}"


def test_encoder_decoder_shapes():
    enc, dec = ConvEncoder(1, 4, (8, 16, 16), 0), ConvDecoder(4, 2, (8, 16, 16), 0)
    h = enc(torch.randn(3, 1, 28, 28))
    assert h.shape == (3, 4, 7, 7)
    assert dec(h).shape == (3, 2, 28, 28)


def _conds(n=3, d=5):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("cls", [ConvEncoder, ConvDecoder])
def test_film_conditions_a_stack_without_touching_it(cls):
    torch.manual_seed(0)
    m = cls(4, 4, (8, 16, 16), 1)
    x = torch.randn(3, 4, 28, 28) if cls is ConvEncoder else torch.randn(3, 4, 7, 7)
    before = m(x)
    layers, state = list(m.net), {k: v.clone() for k, v in m.net.state_dict().items()}
    with pytest.raises(ValueError, match="unconditional"):
        m(x, torch.zeros(3, 5))
    m.add_conditioning(5)
    assert list(m.net) == layers and all(torch.equal(v, m.net.state_dict()[k]) for k, v in state.items())
    assert len(m.film.sites) == 3            # one per resolution level: the pre-activation norms of net
    with pytest.raises(ValueError, match="give cond"):
        m(x)
    a, b = _conds()
    ya, yb = m(x, a), m(x, b)
    assert ya.shape == before.shape and not torch.allclose(ya, yb)
    with torch.no_grad():
        m.film.proj.weight.zero_()
        m.film.proj.bias.zero_()
    assert torch.allclose(m(x, a), before, atol=1e-6)   # scale 0 and shift 0: the plain stack


def test_projection_discriminator_closed_form():
    torch.manual_seed(0)
    d = Discriminator(1, 28, (8, 16), spectral_norm=False)
    x = torch.randn(4, 1, 28, 28)
    plain = d(x)
    with pytest.raises(ValueError, match="unconditional"):
        d(x, torch.zeros(4, 5))
    d.add_conditioning(5)
    assert torch.equal(d(x, torch.zeros(4, 5)), plain)   # the null condition: psi(phi(x)) alone
    with pytest.raises(ValueError, match="give cond"):
        d(x)
    c, _ = _conds(4)
    h = d.features(x)                                                    # (4, 16, 7, 7)
    v = d.embed.weight                                                   # (16, 5)
    # Miyato & Koyama: y^T V phi(x) + psi(phi(x)), with V tied across the positions of phi(x) = flatten(h)
    tiled = torch.einsum("fd,bd->bf", v, c)[:, :, None, None].expand_as(h) / (7 * 7)
    want = d.head(h.flatten(1)).squeeze(1) + (tiled.flatten(1) * h.flatten(1)).sum(1)
    assert torch.allclose(d(x, c), want, atol=1e-5)


def test_conditional_discriminator_is_spectrally_normalised():
    torch.manual_seed(0)
    d = Discriminator(1, 28, (8, 16))
    d.add_conditioning(5)
    assert hasattr(d.embed, "parametrizations") and d.embed.bias is None
    c, x = torch.randn(8, 5), torch.randn(8, 1, 28, 28)
    for _ in range(30):  # power iterations converge during training forwards
        d(x, c)
    sigma = torch.linalg.matrix_norm(d.embed.weight.detach(), ord=2)
    assert 0.9 < float(sigma) < 1.05, sigma
