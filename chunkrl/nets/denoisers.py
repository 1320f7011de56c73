"""Denoisers of diffusion and consistency chunk policies: ``denoiser(x, step, conditioning) -> like x``.

``x`` is a (noisy) action chunk [B, h, A], ``step`` the diffusion step or noise level [B] (a float),
``conditioning`` the observation (or flattened observation history) [B, C]. Two backbones:

- ``MLPDenoiser``: Diffusion-QL's network over the flattened chunk: a sinusoidal step embedding
  (16 → 32 → 16 with Mish), then three 256-wide Mish layers over [observation, chunk, embedding].
- ``UNetDenoiser`` (``nets/unet1d.py``): Diffusion Policy's temporal U-Net over the chunk's time axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from chunkrl.nets.mlp import init_linear


def sinusoidal_embedding(step: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] -> [B, dim]: sines then cosines of ``step`` at ``dim/2`` geometric frequencies from 1 to 1/10000."""
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, device=step.device) * (-math.log(10000.0) / max(half - 1, 1)))
    angles = step.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class StepEmbedding(nn.Module):
    """Sinusoidal embedding of the step, then Linear(dim, 2·dim) → Mish → Linear(2·dim, out)."""

    def __init__(self, dim: int, out_dim: int | None = None, expansion: int = 2):
        super().__init__()
        self.dim = dim
        self.hidden = init_linear(nn.Linear(dim, dim * expansion))
        self.out = init_linear(nn.Linear(dim * expansion, out_dim or dim))

    def forward(self, step: torch.Tensor) -> torch.Tensor:
        return self.out(F.mish(self.hidden(sinusoidal_embedding(step, self.dim))))


class MLPDenoiser(nn.Module):
    """Diffusion-QL's denoiser over the flattened chunk (see the module docstring)."""

    def __init__(
        self,
        conditioning_dim: int,
        horizon: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256, 256),
        step_dim: int = 16,
    ):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.step = StepEmbedding(step_dim)
        widths = [conditioning_dim + horizon * action_dim + step_dim, *hidden_dims]
        self.hidden = nn.ModuleList(init_linear(nn.Linear(i, o)) for i, o in zip(widths[:-1], widths[1:], strict=True))
        self.out = init_linear(nn.Linear(widths[-1], horizon * action_dim))

    def forward(self, x: torch.Tensor, step: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        h = torch.cat([conditioning, x.flatten(1), self.step(step)], dim=-1)
        for layer in self.hidden:
            h = F.mish(layer(h))
        return self.out(h).view_as(x)
