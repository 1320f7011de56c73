"""Stochastic chunk actors: a tanh-squashed Gaussian over the flattened chunk (``h * A`` dimensions).

Every actor maps observations to the pre-squash ``mean`` and ``log_std`` of each chunk dimension
(``forward``); ``GaussianChunkActor`` turns that into what the SAC losses need — a reparameterised
sample with its joint log-probability, the deterministic chunk ``tanh(mean)`` and the log-likelihood
of dataset chunks — so that any actor (MLP here, the ACT-style transformer elsewhere) plugs into the
same losses, training loop and checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from chunkrl.nets.distributions import actions_log_prob, tanh_gaussian_sample
from chunkrl.nets.mlp import MLP
from chunkrl.nets.noise import GLOBAL_NOISE, GlobalNoise

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""Bounds of the per-dimension log standard deviation (keeps the entropy term finite)."""


class GaussianChunkActor(nn.Module):
    """Base class: subclasses implement ``forward(observations, valid=None) -> (mean, log_std)``, each
    [B, h*A]. ``observations`` is [B, obs], or [B, T, obs] with ``valid`` [B, T] for actors that read an
    observation history."""

    def forward(
        self, observations: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def sample(
        self, observations: torch.Tensor, valid: torch.Tensor | None = None, noise: GlobalNoise = GLOBAL_NOISE
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A reparameterised chunk [B, h*A], its joint log-probability [B], and the (mean, log_std) used;
        the Gaussian draw comes from ``noise`` (a source from ``nets/noise.py``)."""
        mean, log_std = self(observations, valid)
        actions, log_prob = tanh_gaussian_sample(mean, log_std, noise.normal(mean.shape, mean.device))
        return actions, log_prob, mean, log_std

    def sample_actions(
        self, observations: torch.Tensor, valid: torch.Tensor | None = None, noise: GlobalNoise = GLOBAL_NOISE
    ) -> torch.Tensor:
        """A sampled chunk [B, h*A] without its log-probability (for acting: fewer ops per query)."""
        mean, log_std = self(observations, valid)
        return torch.tanh(torch.addcmul(mean, log_std.exp(), noise.normal(mean.shape, mean.device)))

    def mode(self, observations: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The deterministic chunk ``tanh(mean)`` [B, h*A]."""
        return torch.tanh(self(observations, valid)[0])


def bounded_log_std(raw: torch.Tensor, minimum: float = LOG_STD_MIN) -> torch.Tensor:
    """Clamp a raw log-std head output into ``[minimum, LOG_STD_MAX]``."""
    return raw.clamp(minimum, LOG_STD_MAX)


class MLPChunkActor(GaussianChunkActor):
    """An MLP from the observation to the mean and log-std of every chunk dimension.

    Args:
        observation_dim: size of a flat observation.
        chunk_dim: ``h * A``.
        hidden_dims: hidden layer widths.
        layer_norm: LayerNorm in each hidden layer.
        activation, norm_first: the hidden layers' activation and whether LayerNorm comes before it (``MLP``).
        log_std_min: the lowest log standard deviation (``LOG_STD_MIN``; the RLPD networks' actor: -20).
    """

    def __init__(
        self,
        observation_dim: int,
        chunk_dim: int,
        hidden_dims: Sequence[int],
        layer_norm: bool = False,
        activation: str = "gelu",
        norm_first: bool = False,
        log_std_min: float = LOG_STD_MIN,
    ):
        super().__init__()
        if not log_std_min < LOG_STD_MAX:
            raise ValueError(f"log_std_min must be below the largest log-std {LOG_STD_MAX} (got {log_std_min})")
        self.net = MLP(observation_dim, hidden_dims, 2 * chunk_dim, layer_norm, activation, norm_first)
        self.log_std_min = log_std_min

    def forward(
        self, observations: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if observations.dim() != 2:
            raise ValueError("the MLP actor reads single observations [B, obs]; use --sac.actor act for histories")
        mean, raw_log_std = self.net(observations).chunk(2, dim=-1)
        return mean, bounded_log_std(raw_log_std, self.log_std_min)


def chunk_log_likelihood(
    mean: torch.Tensor, log_std: torch.Tensor, chunks: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Joint log-likelihood [B] of dataset chunks [B, h, A] under the actor's (mean, log_std) [B, h*A].

    Padded positions (``valid`` [B, h] is 0) are left out of the sum; actions at exactly +-1 are moved
    1e-5 inside the interval, where the squashed density is finite.
    """
    weights = valid.repeat_interleave(chunks.shape[-1], dim=1)
    return actions_log_prob(mean, log_std, chunks.flatten(1), weights, epsilon=1e-5)
