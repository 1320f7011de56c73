"""The temporal U-Net denoiser for any chunk length."""

import pytest
import torch

from chunkrl.nets.denoisers import MLPDenoiser, sinusoidal_embedding
from chunkrl.nets.unet1d import FiLMResidualBlock, UNetDenoiser


@pytest.mark.parametrize("horizon", [1, 3, 5, 8])
def test_unet_denoises_chunks_of_any_length_and_keeps_the_padding_empty(horizon):
    torch.manual_seed(0)
    net = UNetDenoiser(6, horizon, 2, channels=(8, 16, 32), groups=4, step_dim=8)
    assert net.padded % 4 == 0 and net.padded >= horizon
    padding_values = []

    def padding_of(tensor):
        real = -(-horizon // (net.padded // tensor.shape[-1]))  # real positions at this length
        padding_values.append(tensor[..., real:])

    for block in net.modules():
        if isinstance(block, FiLMResidualBlock):  # what leaves each block, and what its second conv reads
            block.register_forward_hook(lambda module, inputs, output: padding_of(output))
            block.second.register_forward_pre_hook(lambda module, inputs: padding_of(inputs[0]))
    x = torch.randn(3, horizon, 2, requires_grad=True)
    out = net(x, torch.tensor([0.0, 1.0, 4.0]), torch.randn(3, 6))
    assert out.shape == (3, horizon, 2) and bool(torch.isfinite(out).all())
    assert padding_values and all(bool((p == 0).all()) for p in padding_values)
    out.square().sum().backward()
    assert x.grad is not None and bool((x.grad.abs().sum(dim=(0, 2)) > 0).all())  # every real step matters


def test_unet_output_depends_on_the_conditioning_and_the_step():
    torch.manual_seed(1)
    net = UNetDenoiser(4, 5, 3, channels=(8, 16), groups=4, step_dim=8)
    x, cond = torch.randn(2, 5, 3), torch.randn(2, 4)
    base = net(x, torch.zeros(2), cond)
    assert not torch.allclose(base, net(x, torch.ones(2), cond))
    assert not torch.allclose(base, net(x, torch.zeros(2), cond + 1))


def test_unet_rejects_channels_that_groups_do_not_divide():
    with pytest.raises(ValueError, match="multiple of groups"):
        UNetDenoiser(4, 5, 3, channels=(12, 16), groups=8)


def test_sinusoidal_embedding_and_the_mlp_denoiser_shapes():
    embedding = sinusoidal_embedding(torch.tensor([0.0, 2.0]), 4)
    # frequencies 1 and 1/10000: [sin(t), sin(t/1e4), cos(t), cos(t/1e4)]
    assert embedding[0].tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert embedding[1, 0].item() == pytest.approx(torch.sin(torch.tensor(2.0)).item())
    net = MLPDenoiser(7, 5, 2)
    assert net(torch.randn(4, 5, 2), torch.zeros(4), torch.randn(4, 7)).shape == (4, 5, 2)
