"""Typed configurations of the agents (kept beside, not inside, the agent modules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class FlowAgentConfig:
    """The flow agents: FQL family (qc-fql, fql-n, fql) and best-of-N family (qc, bfn-n, bfn).
    Defaults: the paper's."""

    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of the flow (behaviour) policy and of the one-step policy."""
    critic_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of every critic in the ensemble."""
    critic_layer_norm: bool = True
    """LayerNorm in the critic (the paper: yes)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actors (the paper: no)."""
    num_critics: int = 2
    """Critic ensemble size."""
    q_aggregation: Literal["mean", "min"] = "mean"
    """How the ensemble's values are combined in the TD target."""
    learning_rate: float = 3e-4
    """Adam learning rate of every network."""
    target_tau: float = 0.005
    """Polyak rate of the target critic."""
    alpha: float = 100.0
    """Distillation weight: actor loss = alpha * ||pi(s,z) - flow(s,z)||^2 - Q(s, pi(s,z))."""
    flow_steps: int = 10
    """Euler steps of the flow policy."""
    normalize_q_loss: bool = False
    """Divide the actor's Q term by the mean |Q| of the batch (FQL option)."""
    num_samples: int | None = None
    """Best-of-N candidates per state (qc, bfn-n, bfn); None: the method's default (QC 32, BFN 4)."""
    action_chunking: bool = True
    """True: the critic and policy act on the whole chunk (QC-FQL). False: single action with h-step
    return (FQL-n; with horizon 1 this is FQL)."""
