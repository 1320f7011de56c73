"""A batched ensemble of MLPs: every member is evaluated in one batched matrix product per layer."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from chunkrl.nets.mlp import ACTIVATIONS


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied with one ``baddbmm``: [E, B, in] -> [E, B, out]."""

    product_weights = ("weight",)
    """The parameter a bf16 action query may read as a bfloat16 copy (``nets/precision.py``)."""

    def __init__(self, ensemble_size: int, input_dim: int, output_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, input_dim, output_dim))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, output_dim))
        bound = math.sqrt(6.0 / (input_dim + output_dim))  # Xavier-uniform per member
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # the same input for every member: one matmul against all weights
            return torch.matmul(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate scale and shift for each ensemble member."""

    def __init__(self, ensemble_size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,)) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """``E`` MLPs with the same architecture, evaluated together.

    ``forward(*inputs)`` takes inputs of shape [B, d] (shared by all members) and returns
    [E, B, output_dim].
    """

    def __init__(
        self,
        ensemble_size: int,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        layer_norm: bool = True,
        activation: str = "gelu",
        norm_first: bool = False,
    ):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.activation, self.norm_first = ACTIVATIONS[activation], norm_first
        widths = [input_dim, *hidden_dims, output_dim]
        self.linears = nn.ModuleList(
            EnsembleLinear(ensemble_size, i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)
        )
        self.norms = nn.ModuleList(EnsembleLayerNorm(ensemble_size, w) for w in hidden_dims) if layer_norm else None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < last:  # LayerNorm after the activation, or before it (norm_first: the RLPD networks)
                if self.norms is not None and self.norm_first:
                    x = self.norms[i](x)
                x = self.activation(x)
                if self.norms is not None and not self.norm_first:
                    x = self.norms[i](x)
        return x


class Critic(nn.Module):
    """An ensemble of Q-functions ``Q_e(s, a)`` returning [E, B].

    With ``validity_steps = h`` the action is a flattened chunk of ``h`` steps and the critic is told
    which of them are real: ``forward(s, a, valid)`` zeroes the padded positions and reads the mask
    [B, h] beside the actions, so a padded tail can never pass for actions (``valid`` None: all real,
    as for chunks the policy proposes). Without it ``valid`` is ignored.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        ensemble_size: int,
        layer_norm: bool = True,
        validity_steps: int = 0,
        activation: str = "gelu",
        norm_first: bool = False,
    ):
        super().__init__()
        if validity_steps and action_dim % validity_steps:
            raise ValueError(f"a chunk of {action_dim} values does not split into {validity_steps} steps")
        self.validity_steps = validity_steps
        input_dim = observation_dim + action_dim + validity_steps
        self.members = EnsembleMLP(ensemble_size, input_dim, hidden_dims, 1, layer_norm, activation, norm_first)

    def forward(
        self, observations: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.validity_steps:
            return self.members(observations, actions).squeeze(-1)
        if valid is None:
            valid = actions.new_ones(actions.shape[0], self.validity_steps)
        step_dim = actions.shape[-1] // self.validity_steps
        actions = actions * valid.repeat_interleave(step_dim, dim=-1)
        return self.members(observations, actions, valid).squeeze(-1)


def aggregate(q_values: torch.Tensor, how: str) -> torch.Tensor:
    """Combine ensemble values [E, ...] into one estimate: ``mean`` or ``min`` over members."""
    if how == "mean":
        return q_values.mean(dim=0)
    if how == "min":
        return q_values.min(dim=0).values
    raise ValueError(f"unknown aggregation {how!r}; use 'mean' or 'min'")


def lower_confidence(q_values: torch.Tensor, rho: float) -> torch.Tensor:
    """Ensemble value ``mean - rho * std`` over members [E, ...] (population std); ``rho = 0`` is the
    plain mean (the paper's RLPD-family aggregation), computed without the std."""
    if rho == 0:
        return q_values.mean(dim=0)
    return q_values.mean(dim=0) - rho * q_values.std(dim=0, correction=0)


@torch.no_grad()
def polyak_update(target: Iterable[torch.Tensor], source: Iterable[torch.Tensor], tau: float) -> None:
    """``target <- tau * source + (1 - tau) * target``, tensor by tensor, in place (one fused op)."""
    torch._foreach_lerp_(list(target), list(source), tau)
