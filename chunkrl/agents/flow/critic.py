"""What the flow agents (FQL family, best-of-N family) share.

- ``flow``: the behaviour policy, a flow-matching velocity field over the flattened chunk
  (``h * A`` dimensions; ``A`` without chunking), trained by behaviour cloning on dataset chunks.
- ``critic``: an ensemble ``Q(s, a_{t:t+h})`` with LayerNorm, trained on the h-step backup
  ``reward_h + bootstrap_discount * V_target(s_{t+τ})``, and its Polyak target.

With ``boundary="truncate"`` every chunk is a TD sample, padded tails included, so the chunk critic
also reads the chunk's validity mask (``nets/ensemble.py``); in ``mask`` mode padded chunks never
reach the TD loss and the critic reads actions only.

Subclasses say how the next state is valued (``next_values``), what the actor loss is and how
actions are chosen (``act_tensor``). Without chunking (the ``-n`` baselines) the critic and policy
see only the first action ``a_t`` while the backup still jumps ``h`` steps.
"""

from __future__ import annotations

import copy

import torch

from chunkrl.agents.base import ActorCriticAgent, Losses, masked_mean, td_loss
from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.data.chunks import BoundaryMode, ChunkBatch
from chunkrl.nets.ensemble import Critic
from chunkrl.nets.flow import VelocityField, euler_sample, flow_matching_targets


class FlowCriticAgent(ActorCriticAgent):
    """Flow behaviour policy + chunk critic ensemble + target; one Adam over every trainable network."""

    critic_may_be_longer = False
    """Whether the critic's horizon may exceed the actor's chunk (DQC); the others score a prefix of it."""

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        horizon: int,
        config: FlowAgentConfig,
        boundary: BoundaryMode = "mask",
        critic_horizon: int | None = None,
    ):
        super().__init__(observation_dim, action_dim, horizon, critic_horizon)
        if self.critic_horizon > self.actor_chunk and not self.critic_may_be_longer:
            raise ValueError(f"critic_horizon {self.critic_horizon} > actor_chunk {self.actor_chunk} is not supported")
        self.config = config
        chunking = config.action_chunking
        self.policy_dim = action_dim * self.actor_chunk if chunking else action_dim
        self.critic_dim = action_dim * self.critic_horizon if chunking else action_dim
        c = config
        self.flow = VelocityField(observation_dim, self.policy_dim, c.actor_hidden_dims, c.actor_layer_norm)
        validity = self.critic_horizon if (boundary == "truncate" and chunking) else 0
        self.critic = Critic(
            observation_dim, self.critic_dim, c.critic_hidden_dims, c.num_critics, c.critic_layer_norm, validity
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.target_tau = config.target_tau
        self.build_policy()
        self.make_optimizer(config.learning_rate)

    def build_policy(self) -> None:
        """Check the family's settings and create its policy networks (before the optimizer is made)."""

    # ------------------------------------------------------------------ policies
    def policy_actions(self, batch: ChunkBatch) -> torch.Tensor:
        """Dataset actions in the policy's space: the flattened actor chunk, or the first action."""
        if self.config.action_chunking:
            return batch.actions[:, : self.actor_chunk].flatten(1)
        return batch.actions[:, 0]

    def scored(self, actions: torch.Tensor) -> torch.Tensor:
        """The part of policy-space actions [B, policy_dim] the critic scores: the chunk's first
        ``critic_horizon`` actions (all of them when the two lengths are equal)."""
        return actions[:, : self.critic_dim]

    def flow_actions(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The behaviour policy's actions for ``noise`` (Euler integration of the flow)."""
        return euler_sample(self.flow, observations, noise, self.config.flow_steps)

    def as_chunks(self, actions: torch.Tensor) -> torch.Tensor:
        """Policy-space actions [B, policy_dim] as chunks [B, h, A] ([B, 1, A] without chunking)."""
        return actions.view(actions.shape[0], -1, self.action_dim)

    def next_values(self, next_observations: torch.Tensor) -> torch.Tensor:
        """The target critic's value [B] of the next states under the agent's policy."""
        raise NotImplementedError

    # ------------------------------------------------------------------ losses
    def critic_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD loss on the h-step backup; chunks with ``td_weight = 0`` do not count."""
        with torch.no_grad():
            target = batch.reward_h + batch.bootstrap_discount * self.next_values(batch.next_observations)
        valid = batch.valid[:, : self.critic_horizon]
        q = self.critic(batch.observations, self.scored(self.policy_actions(batch)), valid)  # [E, B]
        return td_loss(q, target, batch.td_weight)

    def bc_flow_loss(self, batch: ChunkBatch) -> torch.Tensor:
        """Flow-matching behaviour cloning on the valid dataset actions (padding excluded)."""
        actions = self.policy_actions(batch)
        noise = self.noise.normal(actions.shape, actions.device)
        t = self.noise.uniform((actions.shape[0], 1), actions.device)
        x_t, velocity = flow_matching_targets(actions, noise, t)
        errors = (self.flow(batch.observations, x_t, t) - velocity).square()
        valid = batch.valid[:, : self.actor_chunk] if self.config.action_chunking else batch.valid[:, :1]
        return masked_mean(errors, valid.repeat_interleave(self.action_dim, dim=1))

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def losses(self, batch: ChunkBatch) -> Losses:
        return [self.critic_loss(batch), self.actor_loss(batch)]
