"""Flow Q-learning with action chunking: QC-FQL, and its baselines FQL-n and FQL.

On top of the shared flow policy and chunk critic (``flow_critic.py``), FQL trains a one-step,
noise-conditioned policy ``pi(s, z)`` to stay close to the flow policy's output for the same noise
(distillation, weight ``alpha``) while maximising ``Q``; it acts and bootstraps with that policy.
Without chunking this is FQL-n (h-step return); with ``h = 1`` it is plain FQL.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from chunkrl.agents.base import call_frozen
from chunkrl.agents.flow.critic import FlowCriticAgent
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import aggregate
from chunkrl.nets.mlp import MLP


class FQLAgent(FlowCriticAgent):
    """QC-FQL / FQL-n / FQL (see the module docstring)."""

    def build_policy(self) -> None:
        c = self.config
        if c.alpha is None:
            raise ValueError(
                "FlowAgentConfig.alpha is unset: set it, or build the agent from a run config resolved with "
                "chunkrl.config.resolve_method (which fills in the paper's value for the task's domain)"
            )
        input_dim = self.observation_dim + self.policy_dim
        self.actor = MLP(input_dim, c.actor_hidden_dims, self.policy_dim, c.actor_layer_norm)

    def one_step_actions(self, observations: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``pi(s, z)`` clipped to [-1, 1]; ``z ~ N(0, I)`` unless given."""
        if noise is None:
            noise = self.noise.normal((observations.shape[0], self.policy_dim), observations.device)
        return self.actor(observations, noise).clamp(-1.0, 1.0)

    def next_values(self, next_observations: torch.Tensor) -> torch.Tensor:
        next_actions = self.one_step_actions(next_observations)
        return aggregate(self.target_critic(next_observations, self.scored(next_actions)), self.config.q_aggregation)

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow BC on valid actions + alpha * distillation - Q of the one-step policy."""
        observations = batch.observations
        bc_loss = self.bc_flow_loss(batch)
        distill_noise = self.noise.normal((observations.shape[0], self.policy_dim), observations.device)
        with torch.no_grad():  # the flow policy is the distillation teacher: no gradient into it
            teacher = self.flow_actions(observations, distill_noise)
        student = self.actor(observations, distill_noise)
        distill_loss = F.mse_loss(student, teacher)

        # The Q term trains the actor only: the critic runs on detached copies of its weights.
        q = aggregate(call_frozen(self.critic, observations, self.scored(student.clamp(-1.0, 1.0))), "mean")
        q_loss = -q.mean()
        if self.config.normalize_q_loss:
            q_loss = q_loss / q.abs().mean().detach().clamp_min(1e-6)
        loss = bc_loss + self.config.alpha * distill_loss + q_loss
        metrics = {
            "actor/loss": loss,
            "actor/bc_flow_loss": bc_loss,
            "actor/distill_loss": distill_loss,
            "actor/q_loss": q_loss,
        }
        return loss, metrics

    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Chunks [B, h, A] (or [B, 1, A] without chunking) for observations [B, obs_dim].

        Call it without gradient tracking (``Agent.act`` does, under ``torch.inference_mode``)."""
        noise = None
        if deterministic:
            noise = torch.zeros(observations.shape[0], self.policy_dim, device=observations.device)
        return self.as_chunks(self.one_step_actions(observations, noise))
