"""Chunked soft actor-critic: QC-RLPD, RLPD-AC and RLPD.

- ``actor``: a tanh-squashed Gaussian over the flattened chunk (``h * A`` dimensions); its
  log-probability is the joint log-probability of the whole chunk (tanh correction included).
- ``critic``: an ensemble (default 10, LayerNorm) scoring ``Q(s, a_{t:t+h})``, trained on the h-step
  backup ``reward_h + bootstrap_discount * V(s_{t+τ})`` where ``V`` is the pessimistic target value
  ``mean - rho * std`` over the target ensemble at a chunk sampled from the actor.
- ``log_temperature``: the entropy temperature, learned so that the policy's entropy (minus the joint
  log-probability) tracks ``target_entropy`` (scaled with the chunk: none / linear / sqrt).
- Optional behaviour cloning (QC-RLPD): ``- bc_alpha * log pi(dataset chunk | s)``.

With ``critic_input: first_action`` the critic scores only ``a_t`` (still on the h-step return) and
the actor's objective is built from per-action values (standard, conservative, temporal_weighted).
The training loop gives these agents no offline phase and half-offline/half-online batches (RLPD).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from chunkrl.agents.base import ActorCriticAgent, Losses, call_frozen, masked_mean
from chunkrl.agents.configs import SACAgentConfig
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.actors import GaussianChunkActor, MLPChunkActor, chunk_log_likelihood
from chunkrl.nets.ensemble import Critic, lower_confidence


def target_entropy(config: SACAgentConfig, horizon: int, action_dim: int) -> float:
    """The entropy the temperature steers towards: ``-multiplier * A`` times 1, h or sqrt(h)."""
    if config.target_entropy is not None:
        return float(config.target_entropy)
    scales = {"none": 1.0, "linear": float(horizon), "sqrt": math.sqrt(horizon)}
    if config.target_entropy_scaling not in scales:
        raise ValueError(
            f"target_entropy_scaling must be one of {sorted(scales)}, got {config.target_entropy_scaling!r}"
        )
    return -config.target_entropy_multiplier * action_dim * scales[config.target_entropy_scaling]


def objective_weights(config: SACAgentConfig, horizon: int) -> torch.Tensor:
    """Weights [h] of the per-action values in the temporal_weighted objective: decay^t, normalised."""
    weights = torch.tensor([config.temporal_decay**t for t in range(horizon)], dtype=torch.float32)
    return weights / weights.sum()


def _check(config: SACAgentConfig) -> None:
    if config.critic_input not in ("chunk", "first_action"):
        raise ValueError(f"critic_input must be 'chunk' or 'first_action', got {config.critic_input!r}")
    objectives = ("standard", "conservative", "temporal_weighted")
    if config.actor_objective not in objectives:
        raise ValueError(f"actor_objective must be one of {objectives}, got {config.actor_objective!r}")
    if config.critic_input == "chunk" and config.actor_objective != "standard":
        raise ValueError(
            f"actor_objective {config.actor_objective!r} scores single actions and needs "
            "critic_input first_action; the chunk critic already scores the whole chunk (use 'standard')."
        )
    if config.init_temperature <= 0:
        raise ValueError(f"init_temperature must be positive, got {config.init_temperature}")


class ChunkedSACAgent(ActorCriticAgent):
    """QC-RLPD / RLPD-AC / RLPD (see the module docstring).

    Args:
        observation_dim, action_dim, horizon: sizes of the task and the chunk.
        config: the SAC family's settings.
        actor: a ``GaussianChunkActor`` to use instead of the MLP actor (e.g. the ACT-style one).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        horizon: int,
        config: SACAgentConfig,
        actor: GaussianChunkActor | None = None,
    ):
        super().__init__(observation_dim, action_dim, horizon)
        _check(config)
        c = self.config = config
        self.chunk_dim = horizon * action_dim
        self.bc_alpha = c.bc_alpha or 0.0
        self.target_tau = c.target_tau
        self.actor = actor or MLPChunkActor(observation_dim, self.chunk_dim, c.actor_hidden_dims, c.actor_layer_norm)
        critic_action_dim = self.chunk_dim if c.critic_input == "chunk" else action_dim
        self.critic = Critic(
            observation_dim, critic_action_dim, c.critic_hidden_dims, c.num_critics, c.critic_layer_norm
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(c.init_temperature)))
        self.target_entropy = target_entropy(c, horizon, action_dim)
        self.register_buffer("step_weights", objective_weights(c, horizon), persistent=False)
        self.make_optimizer(c.learning_rate)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    # ------------------------------------------------------------------ values
    def critic_actions(self, chunks: torch.Tensor) -> torch.Tensor:
        """Flat chunks [B, h*A] as the critic's input: the whole chunk or its first action."""
        return chunks if self.config.critic_input == "chunk" else chunks[:, : self.action_dim]

    def actor_values(self, observations: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """What the actor maximises [B]; the critic's weights are frozen (gradients reach the chunk only)."""
        rho = self.config.rho
        if self.config.critic_input == "chunk" or self.config.actor_objective == "standard":
            return lower_confidence(call_frozen(self.critic, observations, self.critic_actions(chunks)), rho)
        batch = observations.shape[0]
        per_step = chunks.view(batch, self.horizon, self.action_dim).transpose(0, 1).reshape(-1, self.action_dim)
        repeated = observations.repeat(self.horizon, 1)  # block t of the h*B rows scores a_{t} at s
        values = lower_confidence(call_frozen(self.critic, repeated, per_step), rho).view(self.horizon, batch)
        if self.config.actor_objective == "conservative":
            return values.min(dim=0).values
        return (self.step_weights[:, None] * values).sum(dim=0)

    # ------------------------------------------------------------------ losses
    @torch.no_grad()
    def td_target(self, batch: ChunkBatch) -> torch.Tensor:
        """``reward_h + bootstrap_discount * V(s')`` [B]: the target critic's pessimistic value of a chunk
        sampled from the actor at ``s'`` (minus the entropy bonus with ``backup_entropy``)."""
        next_chunks, next_log_prob, _, _ = self.actor.sample(batch.next_observations)
        next_q = self.target_critic(batch.next_observations, self.critic_actions(next_chunks))
        next_value = lower_confidence(next_q, self.config.rho)
        if self.config.backup_entropy:
            next_value = next_value - self.temperature * next_log_prob
        return batch.reward_h + batch.bootstrap_discount * next_value

    def critic_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD loss on the h-step backup; chunks with ``td_weight = 0`` do not count."""
        target = self.td_target(batch)
        q = self.critic(batch.observations, self.critic_actions(batch.actions.flatten(1)))  # [E, B]
        errors = (q - target).square()
        loss = masked_mean(errors, batch.td_weight.expand_as(errors))
        metrics = {
            "critic/loss": loss,
            "critic/q_mean": q.mean(),
            "critic/target_mean": target.mean(),
            "chunk/h_step_return": batch.reward_h.mean(),
            "chunk/effective_length": batch.tau.float().mean(),
        }
        return loss, metrics

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SAC actor loss on the joint log-probability, the temperature loss, and the optional BC term."""
        chunks, log_prob, mean, log_std = self.actor.sample(batch.observations)
        q = self.actor_values(batch.observations, chunks)
        temperature = self.temperature
        sac_loss = (temperature.detach() * log_prob - q).mean()
        entropy = -log_prob.detach().mean()
        temperature_loss = temperature * (entropy - self.target_entropy)
        bc_log_likelihood = chunk_log_likelihood(mean, log_std, batch.actions, batch.valid).mean()
        bc_loss = -self.bc_alpha * bc_log_likelihood
        actor_loss = sac_loss + bc_loss
        metrics = {
            "actor/loss": actor_loss,
            "actor/sac_loss": sac_loss,
            "actor/bc_loss": bc_loss,
            "actor/bc_log_likelihood": bc_log_likelihood,
            "actor/q": q.mean(),
            "actor/log_prob": log_prob.mean(),
            "actor/entropy": entropy,
            "actor/target_entropy": torch.tensor(self.target_entropy),
            "actor/temperature": temperature,
            "actor/temperature_loss": temperature_loss,
        }
        return actor_loss + temperature_loss, metrics

    def losses(self, batch: ChunkBatch) -> Losses:
        return [self.critic_loss(batch), self.actor_loss(batch)]

    # ------------------------------------------------------------------ acting
    def act_tensor(self, observations: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Chunks [B, h, A]: sampled from the actor, or ``tanh(mean)`` when deterministic."""
        chunks = self.actor.mode(observations) if deterministic else self.actor.sample(observations)[0]
        return chunks.view(observations.shape[0], self.horizon, self.action_dim)
