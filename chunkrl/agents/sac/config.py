"""Settings of the chunked SAC family (qc-rlpd, rlpd-ac, rlpd)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro

from chunkrl.agents.section import AgentSection, network_problems
from chunkrl.nets.act import ACTActorConfig


@dataclass
class SACAgentConfig(AgentSection):
    """The chunked SAC family: QC-RLPD, RLPD-AC and RLPD. Defaults: the paper's RLPD settings, except the hidden layers
    (``networks``: the paper's flow networks by default, its RLPD ones with ``rlpd``)."""

    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of the MLP actor."""
    critic_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of every critic in the ensemble."""
    critic_layer_norm: bool = True
    """LayerNorm in the critic (the paper: yes)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actor (the paper: no)."""
    networks: Literal["fql", "rlpd"] = "fql"
    """The hidden layers of the MLP actor and the critics. fql: Linear, GELU, then LayerNorm where it is on; the
    actor's log-std floored at -5 (the QC paper's flow networks, utils/networks.py; chunkrl's default). rlpd:
    Linear, LayerNorm where it is on, then ReLU; log-std floored at -20 (the QC paper's acrlpd networks, taken from
    RLPD: what its QC-RLPD, RLPD-AC and RLPD baselines ran with). The ACT actor keeps its own layers."""
    num_critics: int = 10
    """Critic ensemble size (the paper's RLPD: 10)."""
    rho: float = 0.0
    """Pessimism of the ensemble's value: mean - rho * std over members, in the TD target and the actor
    objective. 0 (default): the plain mean over the 10 critics, as in the paper's code."""
    q_aggregation: Literal["mean", "min"] = "mean"
    """The ensemble's value in the TD target and the actor objective: mean (minus rho * std; the paper's code)
    or min, the true minimum over all critics (the SAC-with-Q-chunking specification's target; mean - rho * std
    equals it only for two critics and rho = 1)."""
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
    bc_rows: Literal["all", "dataset"] = "all"
    """Which chunks of a batch the BC term imitates: all (the paper's code: with symmetric replay the online
    half too, i.e. the agent's own actions) or dataset (the demonstrations only, as the specification)."""
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

    def execute_horizon_default(self) -> int | None:
        """A first-action critic with the standard objective trains only the chunk's first action by Q: such an
        agent re-plans every step (executes one action), as the specification's select_action does."""
        if self.critic_input == "first_action" and self.actor_objective == "standard":
            return 1
        return None

    def summary(self) -> str:
        actor = f"actor {list(self.actor_hidden_dims)}"
        if self.actor == "act":
            a = self.act
            actor = f"actor ACT width {a.width}, {a.decoder_layers} decoder layers, history {a.obs_history}"
        return f"{actor}, critic {list(self.critic_hidden_dims)}"

    def problems(self, section: str) -> list[str]:
        problems = network_problems(section, self)
        if self.rho < 0:
            problems.append(f"{section}.rho must be >= 0 (got {self.rho})")
        if self.q_aggregation == "min" and self.rho != 0:
            problems.append(f"{section}.rho applies to q_aggregation mean; with min leave it at 0 (got {self.rho})")
        return problems
