"""Multilayer perceptrons shared by every agent."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def init_linear(layer: nn.Linear) -> nn.Linear:
    """Xavier-uniform weights and zero biases (the initialisation of the paper's JAX networks)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "mish": F.mish}
"""Hidden activations by name: GELU (the QC paper's flow networks), ReLU (its RLPD networks), Mish (Diffusion-QL's
critic)."""


class MLP(nn.Module):
    """Linear layers with an activation (GELU by default), optionally LayerNorm in each hidden layer: after the
    activation (the QC paper's flow networks) or, with ``norm_first``, before it (its RLPD networks).

    The forward pass calls the functional ops directly rather than a chain of modules: the same
    arithmetic with less per-layer Python overhead, which matters for small batches (action queries).

    Args:
        input_dim: size of the (flat) input.
        hidden_dims: width of each hidden layer.
        output_dim: size of the output.
        layer_norm: apply LayerNorm in every hidden layer (critics use it, actors do not).
        activation: the hidden layers' activation, a name in ``ACTIVATIONS``.
        norm_first: LayerNorm before the activation (Linear, LayerNorm, activation) instead of after it.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        layer_norm: bool = False,
        activation: str = "gelu",
        norm_first: bool = False,
    ):
        super().__init__()
        self.activation, self.norm_first = ACTIVATIONS[activation], norm_first
        widths = [input_dim, *hidden_dims, output_dim]
        self.linears = nn.ModuleList(init_linear(nn.Linear(i, o)) for i, o in zip(widths[:-1], widths[1:], strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(w) for w in hidden_dims) if layer_norm else None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Concatenate the inputs along the last dimension and apply the network."""
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            x = F.linear(x, linear.weight, linear.bias)
            if i < last:
                if self.norms is not None and self.norm_first:
                    x = self._norm(i, x)
                x = self.activation(x)
                if self.norms is not None and not self.norm_first:
                    x = self._norm(i, x)
        return x

    def _norm(self, i: int, x: torch.Tensor) -> torch.Tensor:
        norm = self.norms[i]
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
