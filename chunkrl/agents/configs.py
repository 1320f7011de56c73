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


@dataclass
class SACAgentConfig:
    """The chunked SAC family: QC-RLPD, RLPD-AC and RLPD. Defaults: the paper's RLPD settings."""

    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of the MLP actor."""
    critic_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of every critic in the ensemble."""
    critic_layer_norm: bool = True
    """LayerNorm in the critic (the paper: yes)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actor (the paper: no)."""
    num_critics: int = 10
    """Critic ensemble size (the paper's RLPD: 10)."""
    rho: float = 0.5
    """Pessimism of the ensemble's value: mean - rho * std over members (target and actor objective)."""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor, critic and temperature."""
    target_tau: float = 0.005
    """Polyak rate of the target critic."""
    init_temperature: float = 1.0
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """Fixed target entropy; None: -target_entropy_multiplier * action_dim, scaled by target_entropy_scaling."""
    target_entropy_multiplier: float = 0.5
    """Per-action-dimension target entropy magnitude (the paper's code: 0.5)."""
    target_entropy_scaling: Literal["none", "linear", "sqrt"] = "linear"
    """How the target entropy grows with the chunk: none (one action's target), linear (x h: every chunk
    dimension counts, matching the joint log-probability), sqrt (x sqrt(h))."""
    bc_alpha: float | None = None
    """Weight of the behaviour-cloning term -log pi(dataset chunk | s); None: the method's default
    (QC-RLPD 0.01, RLPD-AC and RLPD 0)."""
    critic_input: Literal["chunk", "first_action"] = "chunk"
    """chunk: Q(s, a_t..a_t+h-1), an unbiased h-step backup (recommended). first_action: Q(s, a_t) trained
    on the h-step return of the executed chunk (biased when the chunk was not the current policy's)."""
    actor_objective: Literal["standard", "conservative", "temporal_weighted"] = "standard"
    """With critic_input first_action, what the actor maximises: Q of the first action (standard), the
    minimum of Q over the chunk's actions (conservative), or their decay^t-weighted mean (temporal_weighted)."""
    temporal_decay: float = 0.9
    """Decay of the temporal_weighted objective's weights."""
    backup_entropy: bool = False
    """Subtract the entropy bonus in the TD target (classic SAC). The paper's RLPD code does not."""
