"""Settings of the flow agents (qc-fql, fql-n, fql, qc, bfn-n, bfn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chunkrl.agents.section import AgentSection, network_problems


@dataclass
class FlowAgentConfig(AgentSection):
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
    distill_kappa: float = 0.5
    """dqc: asymmetry of the loss that distils the partial-chunk critic from the chunk critic (weight kappa where
    the chunk critic's value is above the partial critic's, 1 - kappa below; DQC's code: 0.5, its experiments 0.8
    on the cube and humanoidmaze domains)."""
    distill_loss: Literal["expectile", "quantile"] = "expectile"
    """dqc: that loss: expectile (weighted binary cross-entropy on the sigmoid values, DQC's code) or quantile
    (weighted absolute error of the logits)."""
    backup_kappa: float = 0.9
    """dqc: asymmetry of the implicit value backup V(s) from the target partial-chunk critic (DQC's code: 0.9, its
    experiments 0.93 on the cube domains; above 0.5 V leans towards the best partial chunks the data shows)."""
    backup_loss: Literal["expectile", "quantile"] = "quantile"
    """dqc: the implicit backup's loss: quantile (DQC's code) or expectile."""
    action_chunking: bool = True
    """True: the critic and policy act on the whole chunk (QC-FQL). False: single action with h-step
    return (FQL-n; with horizon 1 this is FQL)."""

    def summary(self) -> str:
        return f"actor {list(self.actor_hidden_dims)}, critic {list(self.critic_hidden_dims)}"

    def problems(self, section: str) -> list[str]:
        problems = network_problems(section, self)
        if self.flow_steps < 1:
            problems.append(f"{section}.flow_steps must be >= 1 (got {self.flow_steps})")
        if self.alpha is not None and self.alpha < 0:
            problems.append(f"{section}.alpha must be >= 0 (got {self.alpha})")
        for name in ("distill_kappa", "backup_kappa"):
            if not 0.0 < getattr(self, name) < 1.0:
                problems.append(f"{section}.{name} must be in (0, 1) (got {getattr(self, name)})")
        if self.num_samples is not None and self.num_samples < 1:
            problems.append(f"{section}.num_samples must be >= 1 (got {self.num_samples})")
        return problems
