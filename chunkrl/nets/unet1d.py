"""A 1-D temporal convolutional U-Net over an action chunk, conditioned by FiLM (Diffusion Policy's
``ConditionalUnet1D`` design).

The chunk [B, h, A] is read as A channels over h time steps. Each level has two residual blocks
(Conv1d → GroupNorm → Mish, twice, with a per-channel scale and shift computed from the conditioning
vector — the observation and the step embedding — after the first convolution) and a stride-2
convolution down; the way up joins each level's output (a skip connection, from the deepest level up,
as Diffusion Policy does: the top level's own output is not re-joined), reduces the channels to the
next level's and doubles the length with a transposed convolution.

A U-Net with ``L`` levels halves the time axis ``L - 1`` times, so it needs a length divisible by
``2^(L-1)``. Any horizon works here: the chunk is zero-padded at the end to the next multiple, the
padded positions are zeroed again after every block (they never carry anything but the convolutions'
own zero padding), and the output is cropped back to ``h``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from chunkrl.nets.denoisers import StepEmbedding


@dataclass
class UNetConfig:
    """The temporal U-Net denoiser (``--diffusion.backbone unet``), Diffusion Policy's design."""

    channels: tuple[int, ...] = (64, 128, 256)
    """Channels per level; L levels halve the chunk's time axis L - 1 times (the chunk is padded to fit).
    Diffusion Policy uses (256, 512, 1024): about 16x the parameters, for GPUs."""
    kernel_size: int = 5
    """Temporal kernel of the convolutions."""
    groups: int = 8
    """GroupNorm groups (must divide every channel count)."""
    step_dim: int = 128
    """Width of the diffusion-step embedding."""


class ConvBlock(nn.Sequential):
    """Conv1d (same length) → GroupNorm → Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(groups, out_channels),
            nn.Mish(),
        )


class FiLMResidualBlock(nn.Module):
    """Two ConvBlocks; the conditioning scales and shifts the channels between them; a residual path."""

    def __init__(self, in_channels: int, out_channels: int, conditioning_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.first = ConvBlock(in_channels, out_channels, kernel_size, groups)
        self.second = ConvBlock(out_channels, out_channels, kernel_size, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(conditioning_dim, 2 * out_channels))
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(conditioning)[..., None].chunk(2, dim=1)
        h = (scale * self.first(x) + shift) * mask
        return (self.second(h) + self.residual(x)) * mask


class UNetDenoiser(nn.Module):
    """``denoiser(x [B, h, A], step [B], conditioning [B, C]) -> [B, h, A]`` (see the module docstring).

    Args:
        conditioning_dim: size of the observation (or flattened history) vector.
        horizon: chunk length h (any h >= 1).
        action_dim: channels A.
        channels: channels per level, e.g. (64, 128, 256): three levels, two halvings.
        kernel_size: temporal kernel of every convolution (5, as Diffusion Policy).
        groups: GroupNorm groups (must divide every channel count).
        step_dim: width of the step embedding.
    """

    def __init__(
        self,
        conditioning_dim: int,
        horizon: int,
        action_dim: int,
        channels: Sequence[int] = (64, 128, 256),
        kernel_size: int = 5,
        groups: int = 8,
        step_dim: int = 128,
    ):
        super().__init__()
        if not channels or any(c % groups for c in channels):
            raise ValueError(f"every U-Net channel count must be a multiple of groups={groups} (got {list(channels)})")
        if kernel_size % 2 == 0:
            raise ValueError(f"the U-Net kernel size must be odd (got {kernel_size})")
        self.horizon, self.action_dim = horizon, action_dim
        self.multiple = 2 ** (len(channels) - 1)
        self.padded = -(-horizon // self.multiple) * self.multiple
        self.step = StepEmbedding(step_dim, expansion=4)
        cond = step_dim + conditioning_dim
        widths = [action_dim, *channels]
        block = lambda i, o: FiLMResidualBlock(i, o, cond, kernel_size, groups)  # noqa: E731
        self.down = nn.ModuleList(
            nn.ModuleList([block(i, o), block(o, o)]) for i, o in zip(widths[:-1], widths[1:], strict=True)
        )
        self.downsample = nn.ModuleList(nn.Conv1d(c, c, 3, stride=2, padding=1) for c in channels[:-1])
        self.middle = nn.ModuleList([block(channels[-1], channels[-1]), block(channels[-1], channels[-1])])
        # going up from the deepest level: join its skip, reduce to the next level's channels, double the length
        ups = list(zip(reversed(channels[1:]), reversed(channels[:-1]), strict=True))  # (channels in, channels out)
        self.up = nn.ModuleList(nn.ModuleList([block(2 * i, o), block(o, o)]) for i, o in ups)
        self.upsample = nn.ModuleList(nn.ConvTranspose1d(o, o, 4, stride=2, padding=1) for _, o in ups)
        self.final = nn.Sequential(
            ConvBlock(channels[0], channels[0], kernel_size, groups), nn.Conv1d(channels[0], action_dim, 1)
        )

    def forward(self, x: torch.Tensor, step: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([self.step(step), conditioning], dim=-1)
        h = F.pad(x.transpose(1, 2), (0, self.padded - self.horizon))  # [B, A, padded]
        masks = [self._mask(self.padded // 2**level, x) for level in range(len(self.down))]
        skips = []
        for level, (first, second) in enumerate(self.down):
            h = second(first(h, cond, masks[level]), cond, masks[level])
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h) * masks[level + 1]
        for block in self.middle:
            h = block(h, cond, masks[-1])
        for i, (first, second) in enumerate(self.up):
            level = len(self.down) - 1 - i  # the skip joined here, at this level's length
            h = torch.cat([h, skips[level]], dim=1)
            h = second(first(h, cond, masks[level]), cond, masks[level])
            h = self.upsample[i](h) * masks[level - 1]
        return self.final(h)[..., : self.horizon].transpose(1, 2)

    def _mask(self, length: int, like: torch.Tensor) -> torch.Tensor:
        """[1, 1, length]: 1 on positions that hold (a downsampled view of) real chunk steps."""
        scale = self.padded // length
        real = -(-self.horizon // scale)
        return (torch.arange(length, device=like.device) < real).to(like.dtype)[None, None]
