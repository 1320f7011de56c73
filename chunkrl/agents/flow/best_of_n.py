"""Best-of-N Q-chunking: QC, and its baselines BFN-n and BFN.

The policy is the flow behaviour policy itself (trained by flow-matching BC only). To act, sample
N chunks from it, score each with the critic ensemble (aggregated as configured, mean by default)
and execute the highest-scoring one. The TD target uses the same rule at the next state: the online
critic picks the best of N chunks (the very chunk the agent would execute there) and the target
critic scores that one chunk, as the paper's code does (``target_selection: critic``). The
alternative ``target_critic`` picks and scores with the target critic, a maximum over the target's
own noise that is biased upwards. All N candidates are generated and scored in single batched
forward passes over N x batch rows, never a loop over candidates.
"""

from __future__ import annotations

import torch

from chunkrl.agents.flow.critic import FlowCriticAgent
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import Critic, aggregate

CPU_CANDIDATE_ROWS = 2048
"""Candidate chunks scored per block on a CPU (see ``BestOfNAgent.select_best``)."""


class BestOfNAgent(FlowCriticAgent):
    """QC / BFN-n / BFN (see the module docstring)."""

    def build_policy(self) -> None:
        c = self.config
        if not c.num_samples or c.num_samples < 1:
            raise ValueError(f"best-of-N needs num_samples >= 1, got {c.num_samples}")
        if c.target_selection not in ("critic", "target_critic"):
            raise ValueError(f"target_selection must be 'critic' or 'target_critic', got {c.target_selection!r}")
        self.num_samples = c.num_samples

    def candidates(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N flow samples per observation, flattened: (observations [B*N, obs], actions [B*N, D])."""
        repeated = observations.repeat_interleave(self.num_samples, dim=0)
        noise = self.noise.normal((repeated.shape[0], self.policy_dim), observations.device)
        return repeated, self.flow_actions(repeated, noise)

    def select_best(self, critic: Critic, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample N candidates per observation and keep the one ``critic`` scores highest: its chunk and
        score ([B, D], [B]). On a CPU the observations go through in blocks of about
        ``CPU_CANDIDATE_ROWS`` candidates, so that each layer's activations stay in the cache (measured:
        1.8x faster than one pass over 32 x 256 rows); on a GPU in one pass."""
        if observations.device.type != "cpu":
            return self._select_best(critic, observations)
        parts = [self._select_best(critic, part) for part in observations.split(self.block_size)]
        return torch.cat([chosen for chosen, _ in parts]), torch.cat([score for _, score in parts])

    @property
    def block_size(self) -> int:
        return max(1, CPU_CANDIDATE_ROWS // self.num_samples)

    def _select_best(self, critic: Critic, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        repeated, actions = self.candidates(observations)
        scores = aggregate(critic(repeated, self.scored(actions)), self.config.q_aggregation)
        scores = scores.view(-1, self.num_samples)
        best_scores, best = scores.max(dim=1)
        chosen = actions.view(-1, self.num_samples, self.policy_dim)[torch.arange(len(best)), best]
        return chosen, best_scores

    def next_values(self, next_observations: torch.Tensor) -> torch.Tensor:
        if self.config.target_selection == "target_critic":
            return self.select_best(self.target_critic, next_observations)[1]
        chosen, _ = self.select_best(self.critic, next_observations)
        return aggregate(self.target_critic(next_observations, self.scored(chosen)), self.config.q_aggregation)

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The policy is the flow itself: flow-matching BC on the valid dataset actions."""
        loss = self.bc_flow_loss(batch)
        return loss, {"actor/loss": loss, "actor/bc_flow_loss": loss}

    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The best of N sampled chunks per observation, scored by the critic: [B, h, A]."""
        return self.as_chunks(self.select_best(self.critic, observations)[0])
