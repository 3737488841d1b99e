"""The shared conv encoder/decoder: a nonlinearity between every pair of convolutions."""
import pytest
import torch
from torch import nn

from zoo.nn.conv import ConvDecoder, ConvEncoder


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
