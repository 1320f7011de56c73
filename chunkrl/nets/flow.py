"""Flow matching over (flattened) action chunks: the velocity-field network and its Euler sampler."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from chunkrl.nets.mlp import MLP


class VelocityField(nn.Module):
    """``v(s, x_t, t)``: the flow-matching velocity from noise (t=0) to actions (t=1)."""

    def __init__(self, observation_dim: int, action_dim: int, hidden_dims: Sequence[int], layer_norm: bool = False):
        super().__init__()
        self.action_dim = action_dim
        self.net = MLP(observation_dim + action_dim + 1, hidden_dims, action_dim, layer_norm)

    def forward(self, observations: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(observations, x_t, t)


def flow_matching_targets(
    actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolation path: ``x_t = (1 - t) x_0 + t x_1`` and its velocity ``x_1 - x_0``."""
    x_t = (1.0 - t) * noise + t * actions
    return x_t, actions - noise


def euler_sample(field: VelocityField, observations: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate the velocity field from ``noise`` with ``steps`` Euler steps; clip to [-1, 1]."""
    x = noise
    for i in range(steps):
        t = torch.full((*noise.shape[:-1], 1), i / steps, device=noise.device, dtype=noise.dtype)
        x = x + field(observations, x, t) / steps
    return x.clamp(-1.0, 1.0)
