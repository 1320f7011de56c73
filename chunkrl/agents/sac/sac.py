"""Chunked soft actor-critic: QC-RLPD, RLPD-AC and RLPD.

- ``actor``: a tanh-squashed Gaussian over the flattened chunk (``h * A`` dimensions); its
  log-probability is the joint log-probability of the whole chunk (tanh correction included).
  ``networks`` picks the hidden layers of the MLP actor and the critic: the QC paper's flow networks (GELU,
  then LayerNorm; chunkrl's default) or its RLPD networks (LayerNorm, then ReLU; log-std down to -20).
- ``critic``: an ensemble (default 10, LayerNorm) scoring ``Q(s, a_{t:t+h})``, trained on the h-step
  backup ``reward_h + bootstrap_discount * V(s_{t+τ})`` where ``V`` is the target ensemble's mean
  value (the paper's code; ``rho > 0`` makes it pessimistic, ``mean - rho * std``) at a chunk sampled
  from the actor. With ``boundary="truncate"`` the chunk critic also reads the validity mask.
- ``log_temperature``: the entropy temperature, learned so that the policy's entropy (minus the joint
  log-probability) tracks ``target_entropy`` (scaled with the chunk: none / linear / sqrt).
- Optional behaviour cloning (QC-RLPD): ``- bc_alpha * log pi(dataset chunk | s)`` (or the squared
  error of ``tanh(mean)``), with a weight that can decay over training, after an optional phase in
  which the actor learns by BC alone.
- The actor is an MLP or the ACT-style transformer (``nets/act.py``), which may read an observation
  history; the critic always scores the current observation.

With ``critic_input: first_action`` the critic scores only ``a_t`` (still on the h-step return) and
the actor's objective is built from per-action values (standard, conservative, temporal_weighted).

The actor's chunk may be longer than the critic's horizon (``actor_chunk`` > ``critic_horizon``, e.g. the
SAC-with-Q-chunking specification's 8 and 3): the critic scores the chunk's first ``critic_horizon``
actions (the per-action objectives run over those), the backup spans them, and the actions past them are
trained only by what reaches them: the entropy term (the joint log-probability and the target entropy
cover the whole actor chunk) and behaviour cloning on the dataset's chunk.
The training loop gives these agents no offline phase and half-offline/half-online batches (RLPD).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from chunkrl.agents.base import ActorCriticAgent, Losses, call_frozen, masked_mean
from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.data.chunks import BoundaryMode, ChunkBatch
from chunkrl.nets.act import ACTChunkActor
from chunkrl.nets.actors import LOG_STD_MIN, GaussianChunkActor, MLPChunkActor, chunk_log_likelihood
from chunkrl.nets.ensemble import Critic, lower_confidence


def ensemble_value(q_values: torch.Tensor, config: SACAgentConfig) -> torch.Tensor:
    """The ensemble's value [B] of member values [E, B]: the minimum over members (``q_aggregation: min``) or
    the mean minus ``rho`` standard deviations."""
    if config.q_aggregation == "min":
        return q_values.min(dim=0).values
    return lower_confidence(q_values, config.rho)


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


def bc_weight(config: SACAgentConfig, step: torch.Tensor | int) -> torch.Tensor:
    """The BC weight ``step`` updates into the decay: from ``bc_alpha`` to ``bc_alpha_end`` over
    ``bc_decay_steps`` (constant: ``bc_alpha`` throughout). Tensor arithmetic on ``step``'s device, so
    the update never waits for the host to read the counter."""
    start, end = config.bc_alpha or 0.0, config.bc_alpha_end
    step = torch.as_tensor(step)
    if config.bc_weight_schedule == "constant":
        return torch.full((), start, device=step.device)
    progress = (step.float().clamp_min(0) / max(config.bc_decay_steps, 1)).clamp_max(1.0)
    if config.bc_weight_schedule == "linear":
        return start + (end - start) * progress
    if config.bc_weight_schedule == "exponential":
        return start * (end / start) ** progress
    raise ValueError(f"bc_weight_schedule must be constant, linear or exponential, got {config.bc_weight_schedule!r}")


NETWORKS = {"fql": ("gelu", False, LOG_STD_MIN), "rlpd": ("relu", True, -20.0)}
"""``sac.networks`` -> the hidden activation, whether LayerNorm precedes it, and the MLP actor's log-std floor."""


def make_actor(observation_dim: int, action_dim: int, horizon: int, config: SACAgentConfig) -> GaussianChunkActor:
    """The configured chunk actor: ``mlp`` or ``act``."""
    if config.actor == "act":
        return ACTChunkActor(observation_dim, action_dim, horizon, config.act)
    if config.actor != "mlp":
        raise ValueError(f"actor must be 'mlp' or 'act', got {config.actor!r}")
    if config.act.obs_history > 1:
        raise ValueError("an observation history (act.obs_history > 1) needs the ACT actor: add --sac.actor act")
    activation, norm_first, log_std_min = NETWORKS[config.networks]
    hidden = config.actor_hidden_dims
    return MLPChunkActor(
        observation_dim, horizon * action_dim, hidden, config.actor_layer_norm, activation, norm_first, log_std_min
    )


def _check(config: SACAgentConfig) -> None:
    if config.networks not in NETWORKS:
        raise ValueError(f"networks must be one of {sorted(NETWORKS)}, got {config.networks!r}")
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
    if config.bc_weight_schedule == "exponential" and not ((config.bc_alpha or 0) > 0 and config.bc_alpha_end > 0):
        raise ValueError(
            "the exponential BC schedule decays geometrically and needs positive start and end weights "
            f"(got bc_alpha {config.bc_alpha}, bc_alpha_end {config.bc_alpha_end}); use linear to decay to 0"
        )
    if config.act.obs_history < 1:
        raise ValueError(f"act.obs_history must be >= 1, got {config.act.obs_history}")


class ChunkedSACAgent(ActorCriticAgent):
    """QC-RLPD / RLPD-AC / RLPD (see the module docstring).

    Args:
        observation_dim, action_dim, horizon: sizes of the task and the chunk.
        config: the SAC family's settings.
        boundary: the sampler's boundary mode; ``truncate`` gives the chunk critic the validity mask.
        actor: a ``GaussianChunkActor`` to use instead of the MLP actor (e.g. the ACT-style one).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        horizon: int,
        config: SACAgentConfig,
        boundary: BoundaryMode = "mask",
        actor: GaussianChunkActor | None = None,
        critic_horizon: int | None = None,
    ):
        super().__init__(observation_dim, action_dim, horizon, critic_horizon)
        _check(config)
        c = self.config = config
        if self.critic_horizon > self.actor_chunk:
            raise ValueError(f"critic_horizon {self.critic_horizon} > actor_chunk {self.actor_chunk} is not supported")
        self.chunk_dim = horizon * action_dim
        self.target_tau = c.target_tau
        self.actor = actor or make_actor(observation_dim, action_dim, horizon, c)
        self.history_length = c.act.obs_history if c.actor == "act" else 1
        critic_action_dim = self.critic_horizon * action_dim if c.critic_input == "chunk" else action_dim
        validity = self.critic_horizon if (boundary == "truncate" and c.critic_input == "chunk") else 0
        activation, norm_first, _ = NETWORKS[c.networks]
        self.critic = Critic(
            observation_dim,
            critic_action_dim,
            c.critic_hidden_dims,
            c.num_critics,
            c.critic_layer_norm,
            validity,
            activation,
            norm_first,
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(c.init_temperature)))
        self.target_entropy = target_entropy(c, horizon, action_dim)
        self.register_buffer("step_weights", objective_weights(c, self.critic_horizon), persistent=False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))  # drives the BC schedule
        self.make_optimizer(c.learning_rate)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def actor_inputs(self, batch: ChunkBatch, following: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the actor reads at ``s_t`` (or ``s_{t+τ}``): the observation, or the history and its mask."""
        if self.history_length == 1:
            return (batch.next_observations if following else batch.observations), None
        if batch.observation_history is None:
            raise ValueError(
                f"this agent's actor reads {self.history_length} observations but the batch has no histories; "
                f"sample it with ChunkSampler(..., history={self.history_length})"
            )
        if following:
            return batch.next_observation_history, batch.next_history_valid
        return batch.observation_history, batch.history_valid

    # ------------------------------------------------------------------ values
    def critic_actions(self, chunks: torch.Tensor) -> torch.Tensor:
        """Flat chunks [B, h_a*A] as the critic's input: the chunk's first ``critic_horizon`` actions (all of them
        when the lengths are equal), or its first action."""
        if self.config.critic_input == "chunk":
            return chunks[:, : self.critic_horizon * self.action_dim]
        return chunks[:, : self.action_dim]

    def actor_values(self, observations: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """What the actor maximises [B]; the critic's weights are frozen (gradients reach the chunk only)."""
        if self.config.critic_input == "chunk" or self.config.actor_objective == "standard":
            return ensemble_value(call_frozen(self.critic, observations, self.critic_actions(chunks)), self.config)
        batch, scored = observations.shape[0], self.critic_horizon  # the objectives run over the critic's actions
        per_step = chunks.view(batch, self.actor_chunk, self.action_dim)[:, :scored]
        per_step = per_step.transpose(0, 1).reshape(-1, self.action_dim)
        repeated = observations.repeat(scored, 1)  # block t of the h*B rows scores a_{t} at s
        values = ensemble_value(call_frozen(self.critic, repeated, per_step), self.config).view(scored, batch)
        if self.config.actor_objective == "conservative":
            return values.min(dim=0).values
        return (self.step_weights[:, None] * values).sum(dim=0)

    # ------------------------------------------------------------------ losses
    @torch.no_grad()
    def td_target(self, batch: ChunkBatch) -> torch.Tensor:
        """``reward_h + bootstrap_discount * V(s')`` [B]: the target critic's pessimistic value of a chunk
        sampled from the actor at ``s'`` (minus the entropy bonus with ``backup_entropy``)."""
        next_chunks, next_log_prob, _, _ = self.actor.sample(*self.actor_inputs(batch, following=True), self.noise)
        next_q = self.target_critic(batch.next_observations, self.critic_actions(next_chunks))
        next_value = ensemble_value(next_q, self.config)
        if self.config.backup_entropy:
            next_value = next_value - self.temperature * next_log_prob
        return batch.reward_h + batch.bootstrap_discount * next_value

    def critic_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD loss on the h-step backup; chunks with ``td_weight = 0`` do not count."""
        target = self.td_target(batch)
        valid = batch.valid[:, : self.critic_horizon]
        q = self.critic(batch.observations, self.critic_actions(batch.actions.flatten(1)), valid)  # [E, B]
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

    def bc_term(self, mean: torch.Tensor, log_std: torch.Tensor, batch: ChunkBatch) -> torch.Tensor:
        """The unweighted BC loss on the batch's chunks' valid actions (``bc_rows: dataset``: the dataset's chunks
        only): NLL or squared error of tanh(mean)."""
        rows = torch.ones_like(batch.reward_h)
        if self.config.bc_rows == "dataset" and batch.from_dataset is not None:
            rows = batch.from_dataset
        actions, valid = batch.actions[:, : self.actor_chunk], batch.valid[:, : self.actor_chunk]  # the actor's chunk
        if self.config.bc_loss == "mse":
            weights = valid.repeat_interleave(self.action_dim, dim=1) * rows[:, None]
            return masked_mean((torch.tanh(mean) - actions.flatten(1)).square(), weights)
        return masked_mean(-chunk_log_likelihood(mean, log_std, actions, valid), rows)

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SAC actor loss on the joint log-probability plus the weighted BC term (BC alone while
        pre-training), and the temperature loss."""
        chunks, log_prob, mean, log_std = self.actor.sample(*self.actor_inputs(batch), self.noise)
        q = self.actor_values(batch.observations, chunks)
        temperature = self.temperature
        sac_loss = (temperature.detach() * log_prob - q).mean()
        entropy = -log_prob.detach().mean()
        temperature_loss = temperature * (entropy - self.target_entropy)
        bc_term = self.bc_term(mean, log_std, batch)
        # BC pre-training, then the scheduled weight; decided on the device (no host sync per update)
        pretraining = self.num_updates < self.config.bc_pretrain_steps
        scheduled = bc_weight(self.config, self.num_updates - self.config.bc_pretrain_steps)
        weight = torch.where(pretraining, torch.ones_like(scheduled), scheduled)
        actor_loss = torch.where(pretraining, bc_term, sac_loss + weight * bc_term)
        metrics = {
            "actor/loss": actor_loss,
            "actor/sac_loss": sac_loss,
            "actor/bc_loss": weight * bc_term,
            "actor/bc_term": bc_term,
            "actor/bc_weight": weight,
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

    def after_update(self) -> None:
        self.num_updates += 1

    # ------------------------------------------------------------------ acting
    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Chunks [B, h, A]: sampled from the actor, or ``tanh(mean)`` when deterministic."""
        if deterministic:
            chunks = self.actor.mode(observations, history_valid)
        else:
            chunks = self.actor.sample_actions(observations, history_valid, self.noise)
        return chunks.view(observations.shape[0], self.actor_chunk, self.action_dim)
