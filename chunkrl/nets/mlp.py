"""Multilayer perceptrons shared by every agent."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def init_linear(layer: nn.Linear) -> nn.Linear:
    """Xavier-uniform weights and zero biases (the initialisation of the paper's JAX networks)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Linear layers with GELU activations, optionally LayerNorm after each hidden layer.

    Args:
        input_dim: size of the (flat) input.
        hidden_dims: width of each hidden layer.
        output_dim: size of the output.
        layer_norm: apply LayerNorm after every hidden layer (critics use it, actors do not).
    """

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], output_dim: int, layer_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers.append(init_linear(nn.Linear(width, hidden)))
            layers.append(nn.GELU())
            if layer_norm:
                layers.append(nn.LayerNorm(hidden))
            width = hidden
        layers.append(init_linear(nn.Linear(width, output_dim)))
        self.net = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Concatenate the inputs along the last dimension and apply the network."""
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        return self.net(x)
