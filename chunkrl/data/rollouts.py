"""On-policy rollout storage: one row per decision (a chunk), and chunk-level GAE.

A decision of environment ``n`` at rollout step ``t`` holds the observation it was made on, the
chunk as the policy encoded it (token ids, or a continuous chunk), its log-probability and value
estimate, the number of steps executed ``τ`` (fewer than the chunk when the episode ended inside it),
the chunk reward ``R = Σ_{i<τ} γ^i r_i``, whether it ended on a terminal, whether the episode ended
(terminal or time limit), and the value of the observation it led to.

Chunk-level GAE. Between consecutive decisions ``τ_t`` environment steps pass, so the discount from
one decision to the next is ``γ^τ_t``:

    δ_t = R_t + γ^τ_t (1 - terminal_t) V(s_{t+τ}) - V(s_t)
    A_t = δ_t + γ^τ_t λ (1 - end_t) A_{t+1}

``λ`` is applied once per decision. A single discount per chunk (``γ^h``) is right only when every
chunk runs its full length; a chunk cut short by the episode's end would be discounted as if it had
run ``h`` steps. A time limit inside a chunk bootstraps from the value of the observation where the
episode stopped (``next_values``), a terminal does not bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


def chunk_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    taus: torch.Tensor,
    terminals: torch.Tensor,
    ends: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns [T, N] of a rollout of T decisions in N environments (see the module)."""
    discount = torch.pow(torch.as_tensor(gamma, dtype=values.dtype, device=values.device), taus.to(values.dtype))
    deltas = rewards + discount * (1.0 - terminals.to(values.dtype)) * next_values - values
    carry = discount * lam * (1.0 - ends.to(values.dtype))
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):  # T is a few dozen decisions: a short loop on [N] tensors
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return advantages, advantages + values


@dataclass
class RolloutBatch:
    """Decisions flattened to rows (a minibatch, or the whole rollout)."""

    observations: torch.Tensor  # [B, obs]
    encoded: torch.Tensor  # [B, ...] the chunk as the actor encodes it (token ids, or a continuous chunk)
    log_probs: torch.Tensor  # [B] at collection
    values: torch.Tensor  # [B] at collection
    advantages: torch.Tensor  # [B]
    returns: torch.Tensor  # [B]
    element_log_probs: torch.Tensor | None = None  # [B, K] per token or dimension, for a per-element PPO ratio

    def __len__(self) -> int:
        return len(self.log_probs)

    def index(self, rows: torch.Tensor) -> RolloutBatch:
        return RolloutBatch(*(None if (v := getattr(self, f.name)) is None else v[rows] for f in fields(self)))


class Rollout:
    """A rollout of ``steps`` decisions in each of ``num_envs`` environments, filled row by row."""

    def __init__(self, steps: int, num_envs: int, observation_dim: int, encoded_shape, encoded_dtype, device):
        def zeros(*shape, dtype=torch.float32):
            return torch.zeros(steps, num_envs, *shape, dtype=dtype, device=device)

        self.steps, self.num_envs = steps, num_envs
        self.observations = zeros(observation_dim)
        self.encoded = zeros(*encoded_shape, dtype=encoded_dtype)
        self.log_probs, self.values, self.next_values, self.rewards = zeros(), zeros(), zeros(), zeros()
        self.taus = zeros(dtype=torch.long)
        self.terminals, self.ends = zeros(dtype=torch.bool), zeros(dtype=torch.bool)
        self.position = 0

    def add(self, **row: torch.Tensor) -> None:
        for name, value in row.items():
            getattr(self, name)[self.position] = value
        self.position += 1

    @property
    def full(self) -> bool:
        return self.position >= self.steps

    def batch(self, gamma: float, lam: float) -> RolloutBatch:
        """Every decision as a row, with its chunk-level GAE advantage and return."""
        advantages, returns = chunk_gae(
            self.rewards, self.values, self.next_values, self.taus, self.terminals, self.ends, gamma, lam
        )
        flat = lambda x: x.reshape(self.steps * self.num_envs, *x.shape[2:])  # noqa: E731
        return RolloutBatch(
            flat(self.observations),
            flat(self.encoded),
            flat(self.log_probs),
            flat(self.values),
            flat(advantages),
            flat(returns),
        )
