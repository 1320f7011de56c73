"""Tanh-squashed Gaussians over (flattened) action chunks, with the joint log-probability.

For a pre-squash sample ``u ~ N(mean, std)`` and action ``a = tanh(u)``, the log-density of the
action is ``Σ_d [log N(u_d; mean_d, std_d) - log(1 - tanh(u_d)^2)]``; summing over every dimension
of the chunk gives the joint log-probability of the whole chunk. ``weights`` (e.g. validity of each
chunk position, repeated per action dimension) select the dimensions that count.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def log_one_minus_tanh_squared(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(u)^2)`` computed stably: ``2 (log 2 - u - softplus(-2u))``."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def gaussian_log_probs(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Log-density [B, D] of each dimension of ``x`` under the (unsquashed) diagonal Gaussian."""
    return -0.5 * ((x - mean) / log_std.exp()).square() - log_std - LOG_SQRT_2PI


def tanh_gaussian_log_probs(mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
    """Log-density [B, D] of each dimension of ``tanh(pre_tanh)`` under the squashed Gaussian (independent dims:
    their sum is the joint log-probability)."""
    return gaussian_log_probs(mean, log_std, pre_tanh) - log_one_minus_tanh_squared(pre_tanh)


def tanh_gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Joint log-probability [B] of ``tanh(pre_tanh)`` under the squashed Gaussian (dims summed)."""
    per_dim = tanh_gaussian_log_probs(mean, log_std, pre_tanh)
    if weights is not None:
        per_dim = per_dim * weights
    return per_dim.sum(dim=-1)


def tanh_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised sample ``tanh(mean + std * eps)`` and its joint log-probability; ``eps`` is
    ``noise`` (standard normal, shaped like ``mean``), drawn here when not given."""
    if noise is None:
        noise = torch.randn_like(mean)
    pre_tanh = mean + log_std.exp() * noise
    return torch.tanh(pre_tanh), tanh_gaussian_log_prob(mean, log_std, pre_tanh)


def actions_log_prob(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    actions: torch.Tensor,
    weights: torch.Tensor | None = None,
    epsilon: float = 1e-6,
) -> torch.Tensor:
    """Joint log-probability of given actions in [-1, 1] (e.g. dataset chunks for a BC term)."""
    pre_tanh = torch.atanh(actions.clamp(-1.0 + epsilon, 1.0 - epsilon))
    return tanh_gaussian_log_prob(mean, log_std, pre_tanh, weights)


def actions_log_probs(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, epsilon: float = 1e-6):
    """Per-dimension log-probabilities [B, D] of given actions in [-1, 1]."""
    return tanh_gaussian_log_probs(mean, log_std, torch.atanh(actions.clamp(-1.0 + epsilon, 1.0 - epsilon)))
