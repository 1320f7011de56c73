"""Flow Q-learning with action chunking: QC-FQL, and its baselines FQL-n and FQL.

Networks (all MLPs):
- ``flow``: the behaviour policy, a flow-matching velocity field over the flattened chunk
  (``h * A`` dimensions; ``A`` without chunking), trained by behaviour cloning on dataset chunks.
- ``actor``: a one-step, noise-conditioned policy ``pi(s, z)``, trained to stay close to the flow
  policy's output for the same noise (distillation, weight ``alpha``) while maximising ``Q``.
- ``critic``: an ensemble ``Q(s, a_{t:t+h})`` with LayerNorm, trained on the h-step backup
  ``reward_h + bootstrap_discount * Q_target(s_{t+τ}, pi(s_{t+τ}, z))``, and its Polyak target.

Without chunking (FQL-n), the critic and both policies see only the first action ``a_t`` while the
backup still jumps ``h`` steps (the biased n-step return); with ``h = 1`` this is plain FQL.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from chunkrl.agents.base import Agent, call_frozen, make_adam, masked_mean
from chunkrl.agents.configs import FlowAgentConfig
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import Critic, aggregate, polyak_update
from chunkrl.nets.flow import VelocityField, euler_sample, flow_matching_targets
from chunkrl.nets.mlp import MLP


class FQLAgent(Agent):
    """QC-FQL / FQL-n / FQL (see the module docstring)."""

    def __init__(self, observation_dim: int, action_dim: int, horizon: int, config: FlowAgentConfig):
        super().__init__(observation_dim, action_dim, horizon)
        self.config = config
        self.policy_dim = action_dim * horizon if config.action_chunking else action_dim
        c = config
        self.flow = VelocityField(observation_dim, self.policy_dim, c.actor_hidden_dims, c.actor_layer_norm)
        self.actor = MLP(observation_dim + self.policy_dim, c.actor_hidden_dims, self.policy_dim, c.actor_layer_norm)
        self.critic = Critic(observation_dim, self.policy_dim, c.critic_hidden_dims, c.num_critics, c.critic_layer_norm)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        trainable = [*self.flow.parameters(), *self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = make_adam(trainable, c.learning_rate)

    # ------------------------------------------------------------------ policies
    def policy_actions(self, batch: ChunkBatch) -> torch.Tensor:
        """Dataset actions in the policy's space: the flattened chunk, or the first action."""
        if self.config.action_chunking:
            return batch.actions.flatten(1)
        return batch.actions[:, 0]

    def one_step_actions(self, observations: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``pi(s, z)`` clipped to [-1, 1]; ``z ~ N(0, I)`` unless given."""
        if noise is None:
            noise = torch.randn(observations.shape[0], self.policy_dim, device=observations.device)
        return self.actor(observations, noise).clamp(-1.0, 1.0)

    def flow_actions(self, observations: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The behaviour policy's actions for ``noise`` (Euler integration of the flow)."""
        return euler_sample(self.flow, observations, noise, self.config.flow_steps)

    # ------------------------------------------------------------------ losses
    def critic_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD loss on the h-step backup; chunks with ``td_weight = 0`` do not count."""
        with torch.no_grad():
            next_actions = self.one_step_actions(batch.next_observations)
            next_q = aggregate(self.target_critic(batch.next_observations, next_actions), self.config.q_aggregation)
            target = batch.reward_h + batch.bootstrap_discount * next_q
        q = self.critic(batch.observations, self.policy_actions(batch))  # [E, B]
        errors = (q - target).square()
        loss = masked_mean(errors, batch.td_weight.expand_as(errors))
        return loss, {"critic/loss": loss, "critic/q_mean": q.mean(), "critic/target_mean": target.mean()}

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow BC on valid actions + alpha * distillation - Q of the one-step policy."""
        observations = batch.observations
        batch_size = observations.shape[0]
        actions = self.policy_actions(batch)
        noise = torch.randn_like(actions)
        t = torch.rand(batch_size, 1, device=actions.device)
        x_t, velocity = flow_matching_targets(actions, noise, t)
        bc_errors = (self.flow(observations, x_t, t) - velocity).square()
        bc_loss = masked_mean(bc_errors, self._action_validity(batch))

        distill_noise = torch.randn(batch_size, self.policy_dim, device=actions.device)
        with torch.no_grad():  # the flow policy is the distillation teacher: no gradient into it
            teacher = self.flow_actions(observations, distill_noise)
        student = self.actor(observations, distill_noise)
        distill_loss = F.mse_loss(student, teacher)

        # The Q term trains the actor only: the critic runs on detached copies of its weights.
        q = aggregate(call_frozen(self.critic, observations, student.clamp(-1.0, 1.0)), "mean")
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

    def _action_validity(self, batch: ChunkBatch) -> torch.Tensor:
        """Per-dimension weights of the flattened policy actions (padding excluded)."""
        valid = batch.valid if self.config.action_chunking else batch.valid[:, :1]
        return valid.repeat_interleave(self.action_dim, dim=1)

    # ------------------------------------------------------------------ agent surface
    def update(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        """One gradient step on critic + actor losses, then the target update."""
        critic_loss, critic_metrics = self.critic_loss(batch)
        actor_loss, actor_metrics = self.actor_loss(batch)
        total = critic_loss + actor_loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        polyak_update(self.target_critic, self.critic, self.config.target_tau)
        metrics = {**critic_metrics, **actor_metrics, "loss/total": total}
        return {k: v.detach() for k, v in metrics.items()}

    def act_tensor(self, observations: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Chunks [B, h, A] (or [B, 1, A] without chunking) for observations [B, obs_dim].

        Call it without gradient tracking (``Agent.act`` does, under ``torch.inference_mode``)."""
        noise = None
        if deterministic:
            noise = torch.zeros(observations.shape[0], self.policy_dim, device=observations.device)
        actions = self.one_step_actions(observations, noise)
        return actions.view(observations.shape[0], -1, self.action_dim)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}
