"""Best-of-N Q-chunking: QC, and its baselines BFN-n and BFN.

The policy is the flow behaviour policy itself (trained by flow-matching BC only). To act, sample
N chunks from it, score each with the critic ensemble (aggregated as configured, mean by default)
and execute the highest-scoring one. The TD target uses the same selection at the next state,
scored by the target critic: the value of the next state is the maximum target value among the
N candidates (an expected-max backup). All N candidates are generated and scored in single
batched forward passes over N x batch rows, never a loop over candidates.
"""

from __future__ import annotations

import torch

from chunkrl.agents.configs import FlowAgentConfig
from chunkrl.agents.flow_critic import FlowCriticAgent
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import Critic, aggregate


class BestOfNAgent(FlowCriticAgent):
    """QC / BFN-n / BFN (see the module docstring)."""

    def __init__(self, observation_dim: int, action_dim: int, horizon: int, config: FlowAgentConfig):
        super().__init__(observation_dim, action_dim, horizon, config)
        if not config.num_samples or config.num_samples < 1:
            raise ValueError(f"best-of-N needs num_samples >= 1, got {config.num_samples}")
        self.num_samples = config.num_samples
        self.make_optimizer(config.learning_rate)

    def candidates(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N flow samples per observation, flattened: (observations [B*N, obs], actions [B*N, D])."""
        repeated = observations.repeat_interleave(self.num_samples, dim=0)
        noise = torch.randn(repeated.shape[0], self.policy_dim, device=observations.device)
        return repeated, self.flow_actions(repeated, noise)

    def select_best(
        self, critic: Critic, observations: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The highest-scoring candidate per observation and its score: ([B, D], [B])."""
        scores = aggregate(critic(observations, actions), self.config.q_aggregation)
        scores = scores.view(-1, self.num_samples)
        best_scores, best = scores.max(dim=1)
        chosen = actions.view(-1, self.num_samples, self.policy_dim)[torch.arange(len(best)), best]
        return chosen, best_scores

    def next_values(self, next_observations: torch.Tensor) -> torch.Tensor:
        repeated, actions = self.candidates(next_observations)
        return self.select_best(self.target_critic, repeated, actions)[1]

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The policy is the flow itself: flow-matching BC on the valid dataset actions."""
        loss = self.bc_flow_loss(batch)
        return loss, {"actor/loss": loss, "actor/bc_flow_loss": loss}

    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The best of N sampled chunks per observation, scored by the critic: [B, h, A]."""
        repeated, actions = self.candidates(observations)
        return self.as_chunks(self.select_best(self.critic, repeated, actions)[0])
