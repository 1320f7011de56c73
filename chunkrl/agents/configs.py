"""Typed configurations of the agents (kept beside, not inside, the agent modules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro


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
    alpha: float | None = None
    """Distillation weight: actor loss = alpha * ||pi(s,z) - flow(s,z)||^2 - Q(s, pi(s,z)). None: the paper's
    value for the method and the task's domain (its Table 4: QC-FQL 300 on scene, puzzle-3x3 and
    cube-double, 100 on cube-triple/quadruple; FQL 300 except 100 on puzzle-3x3; FQL-n 100), else 100."""
    flow_steps: int = 10
    """Euler steps of the flow policy."""
    normalize_q_loss: bool = False
    """Divide the actor's Q term by the mean |Q| of the batch (FQL option)."""
    num_samples: int | None = None
    """Best-of-N candidates per state (qc, bfn-n, bfn); None: the paper's value (its Table 5: QC 64 on
    puzzle-3x3 and 32 elsewhere; BFN and BFN-n 4)."""
    target_selection: Literal["critic", "target_critic"] = "critic"
    """Best-of-N TD target at s': critic (the paper's code) picks the best of the N chunks with the online
    critic, as when acting, and the target critic scores that chunk; target_critic picks and scores with
    the target critic (a max over its own estimates, biased upwards)."""
    action_chunking: bool = True
    """True: the critic and policy act on the whole chunk (QC-FQL). False: single action with h-step
    return (FQL-n; with horizon 1 this is FQL)."""


@dataclass
class ACTActorConfig:
    """The ACT-style transformer chunk actor (``--sac.actor act``)."""

    width: int = 256
    """Token width (d_model)."""
    heads: int = 4
    """Attention heads (must divide the width)."""
    decoder_layers: int = 4
    """Transformer decoder layers over the h chunk-step queries."""
    encoder_layers: int = 2
    """Transformer encoder layers over the observation history (only with obs_history > 1)."""
    feedforward: int = 1024
    """Feed-forward width inside each transformer layer."""
    dropout: float = 0.0
    """Dropout inside the transformer layers (active in training updates only)."""
    memory_tokens: int = 1
    """Tokens a single observation is projected to (obs_history 1)."""
    obs_history: int = 1
    """Observations the actor reads: the current one and the obs_history - 1 before it (padded and
    masked at episode starts). The critic always scores the current observation."""
    action_groups: tuple[str, ...] = ()
    """Split output heads per named slice of the action vector, as name:start:end (e.g. arm:0:3
    hand:3:5); they must cover the action in order. Empty: one head for the whole action."""


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
    rho: float = 0.0
    """Pessimism of the ensemble's value: mean - rho * std over members, in the TD target and the actor
    objective. 0 (default): the plain mean over the 10 critics, as in the paper's code."""
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
    actor: Annotated[Literal["mlp", "act"], tyro.conf.arg(aliases=("--actor",))] = "mlp"
    """Chunk actor: an MLP (the paper's) or the ACT-style transformer (settings under act)."""
    act: ACTActorConfig = field(default_factory=ACTActorConfig)
    """Settings of the ACT-style actor."""
    bc_alpha: float | None = None
    """Weight of the behaviour-cloning term on dataset chunks (the start weight when it decays);
    None: the method's default (QC-RLPD 0.01, RLPD-AC and RLPD 0)."""
    bc_loss: Literal["nll", "mse"] = "nll"
    """BC term: negative log-likelihood of the dataset chunk (the paper's), or the squared error of the
    deterministic chunk tanh(mean) against it."""
    bc_weight_schedule: Annotated[
        Literal["constant", "linear", "exponential"], tyro.conf.arg(aliases=("--bc-weight-schedule",))
    ] = "constant"
    """How the BC weight moves from bc_alpha to bc_alpha_end over bc_decay_steps updates (after any BC
    pre-training): constant (stays bc_alpha), linear, or exponential (geometric; both weights > 0)."""
    bc_alpha_end: float = 0.0
    """BC weight at the end of the decay."""
    bc_decay_steps: int = 100_000
    """Updates over which the BC weight decays."""
    bc_pretrain_steps: int = 0
    """First updates in which the actor learns by BC alone (weight 1, no Q or entropy term); the critic
    and temperature keep learning. Then the SAC losses with the scheduled BC weight take over."""
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
