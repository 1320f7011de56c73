"""What Diffusion-QL and CPQL over action chunks share (``diffusion_ql.py``, ``cpql.py``).

- ``actor``: a denoiser over the chunk [h, A] (``nets/denoisers.py`` MLP or ``nets/unet1d.py`` U-Net),
  conditioned on the observation or on an observation history of ``obs_horizon`` steps; the subclass
  says how it is trained (behaviour cloning) and sampled (DDPM chain, consistency function).
- ``ema_actor``: its exponential moving average, which proposes the next chunk ``a'`` of the target
  (``next_actor: ema``, Diffusion-QL's code; ``online``: the actor itself, CPQL's code).
- ``critic``: two (or more) Mish MLP heads ``Q(s, a_{t:t+h})``. In ``truncate`` mode (the default of both
  methods) every chunk is a TD sample, the chunk critic reads which action positions are valid, and the
  target is semi-Markov: ``y = R + (1 - done) γ^τ min_e Q'_e(s_{t+τ}, a')`` with ``R = Σ_{i<τ} γ^i r_{t+i}``
  (``data/chunks.py`` computes ``R``, ``τ`` and the bootstrap discount, 0 on a terminal). With
  ``max_q_backup``, ``max_q_samples`` next chunks are drawn per state, each head keeps its best, and the
  target takes the minimum over heads (Diffusion-QL's AntMaze setting).
- actor loss: ``BC + η · (−Q_i(s, a_π) / mean|Q_j(s, a_π)|)``, with ``a_π`` sampled from the actor *with*
  gradients, the normaliser detached and the two heads ``(i, j)`` swapped at random each update; the
  critic's weights are frozen in this term, so it trains the actor only.
- acting: ``act_samples`` candidate chunks from the actor, picked by a softmax over their target-critic
  value (the official procedure) or greedily.
- two Adams (actor, critics), each clipped to ``max_grad_norm``; target critics by Polyak averaging every
  update (``target_update: polyak``) or on the EMA's schedule (``ema``, CPQL's code); the EMA.
"""

from __future__ import annotations

import copy

import torch

from chunkrl.agents.base import ActorCriticAgent, Losses, call_frozen, masked_mean, td_loss
from chunkrl.agents.diffusion.config import ChunkPolicyQConfig
from chunkrl.data.chunks import BoundaryMode, ChunkBatch
from chunkrl.nets.denoisers import MLPDenoiser
from chunkrl.nets.ensemble import Critic, polyak_update
from chunkrl.nets.unet1d import UNetDenoiser


class ChunkPolicyQAgent(ActorCriticAgent):
    """A generative chunk policy with a semi-Markov chunk critic (see the module docstring)."""

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        horizon: int,
        config: ChunkPolicyQConfig,
        boundary: BoundaryMode = "truncate",
        critic_horizon: int | None = None,
    ):
        super().__init__(observation_dim, action_dim, horizon, critic_horizon)
        c = self.config = config
        for name in ("eta", "max_grad_norm", "target_update", "next_actor"):
            if getattr(c, name) is None:
                raise ValueError(
                    f"{type(c).__name__}.{name} is unset: set it, or build the agent from a run config resolved "
                    "with chunkrl.config.resolve_method (which fills in the method's value)"
                )
        self.history_length = c.obs_horizon
        conditioning_dim = observation_dim if c.obs_horizon == 1 else c.obs_horizon * (observation_dim + 1)
        if c.backbone == "unet":
            u = c.unet
            self.actor = UNetDenoiser(
                conditioning_dim, horizon, action_dim, u.channels, u.kernel_size, u.groups, u.step_dim
            )
        else:
            self.actor = MLPDenoiser(conditioning_dim, horizon, action_dim, c.actor_hidden_dims)
        validity = horizon if boundary == "truncate" else 0
        self.critic = Critic(
            observation_dim,
            horizon * action_dim,
            c.critic_hidden_dims,
            c.num_critics,
            c.critic_layer_norm,
            validity,
            activation="mish",
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.target_tau = c.target_tau
        self.build_process()
        self.add_ema("ema_actor", self.actor, c.ema_decay, c.ema_every, c.ema_start)
        self.add_optimizer("actor", self.actor.parameters(), c.learning_rate, c.max_grad_norm)
        self.add_optimizer("critic", self.critic.parameters(), c.learning_rate, c.max_grad_norm)

    # ------------------------------------------------------------------ what a subclass provides
    def build_process(self) -> None:
        """Create the diffusion or consistency process (``self.process``)."""
        raise NotImplementedError

    def sample_chunks(self, model, conditioning: torch.Tensor) -> torch.Tensor:
        """Chunks [B, h, A] in the action bounds from ``model`` (keeps gradients when enabled)."""
        raise NotImplementedError

    def bc_loss(self, batch: ChunkBatch, conditioning: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Behaviour cloning on the dataset chunks' valid positions (``valid_mean`` of per-element errors)."""
        raise NotImplementedError

    @staticmethod
    def valid_mean(errors: torch.Tensor, batch: ChunkBatch) -> torch.Tensor:
        """Mean of per-element errors [B, h, A] over the chunk positions that exist (padding excluded)."""
        return masked_mean(errors, batch.valid[..., None].expand_as(errors))

    # ------------------------------------------------------------------ inputs
    def conditioning(self, observations: torch.Tensor, history_valid: torch.Tensor | None = None) -> torch.Tensor:
        """What the denoiser is conditioned on: the observation [B, obs], or a history [B, T, obs] (zeroed
        where invalid) flattened with its validity mask."""
        if self.history_length == 1:
            return observations
        if observations.dim() != 3 or history_valid is None:
            raise ValueError(
                f"this policy reads histories of {self.history_length} observations: pass [B, T, obs] observations "
                "with history_valid [B, T] (the training loop and the executor do when obs_horizon > 1)"
            )
        return torch.cat([(observations * history_valid[..., None]).flatten(1), history_valid], dim=-1)

    def batch_conditioning(self, batch: ChunkBatch, following: bool = False) -> torch.Tensor:
        """The conditioning at ``s_t`` (or at ``s_{t+τ}`` with ``following``) of a training batch."""
        if self.history_length == 1:
            return batch.next_observations if following else batch.observations
        if batch.observation_history is None:
            raise ValueError(
                f"this policy reads {self.history_length} observations but the batch has no histories; "
                f"sample it with ChunkSampler(..., history={self.history_length})"
            )
        if following:
            return self.conditioning(batch.next_observation_history, batch.next_history_valid)
        return self.conditioning(batch.observation_history, batch.history_valid)

    # ------------------------------------------------------------------ losses
    def update_target_critic(self) -> None:
        """Polyak every update, or (``target_update: ema``) the EMA actor's schedule, held before its start."""
        if self.config.target_update == "ema":
            polyak_update(self.target_critic.parameters(), self.critic.parameters(), self.ema_actor.weight(0.0))
        else:
            super().update_target_critic()

    def target_values(self, batch: ChunkBatch) -> torch.Tensor:
        """``min_e Q'_e(s_{t+τ}, a')`` [B], ``a'`` from the EMA actor or the actor (``next_actor``); the best of
        several per head with max_q_backup."""
        conditioning = self.batch_conditioning(batch, following=True)
        next_observations = batch.next_observations
        samples = self.config.max_q_samples if self.config.max_q_backup else 1
        if samples > 1:
            conditioning = conditioning.repeat_interleave(samples, dim=0)
            next_observations = next_observations.repeat_interleave(samples, dim=0)
        proposer = self.ema_actor if self.config.next_actor == "ema" else self.actor
        chunks = self.sample_chunks(proposer, conditioning)
        q = self.target_critic(next_observations, chunks.flatten(1))  # [E, B * samples]
        q = q.view(q.shape[0], -1, samples).max(dim=-1).values
        return q.min(dim=0).values

    @torch.no_grad()
    def td_target(self, batch: ChunkBatch) -> torch.Tensor:
        """``y = R + (1 - done) γ^τ min_e Q'_e(s_{t+τ}, a')`` [B]; ``bootstrap_discount`` holds ``γ^τ``, or 0
        on a terminal."""
        return batch.reward_h + batch.bootstrap_discount * self.target_values(batch)

    def critic_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over heads of the TD errors' mean (chunks with ``td_weight = 0`` do not count)."""
        target = self.td_target(batch)
        q = self.critic(batch.observations, batch.actions.flatten(1), batch.valid)  # [E, B]
        return td_loss(q, target, batch.td_weight, members="sum")

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BC + η · normalised Q term (see the module docstring)."""
        conditioning = self.batch_conditioning(batch)
        bc, metrics = self.bc_loss(batch, conditioning)
        chunks = self.sample_chunks(self.actor, conditioning)
        q = call_frozen(self.critic, batch.observations, chunks.flatten(1))  # [E, B]; all positions real
        swap = self.noise.uniform((1,), q.device) < 0.5
        scored, scale = torch.where(swap, q[1], q[0]), torch.where(swap, q[0], q[1])
        q_loss = -scored.mean() / scale.abs().mean().detach().clamp_min(1e-6)
        loss = bc + self.config.eta * q_loss
        return loss, {**metrics, "actor/loss": loss, "actor/q_loss": q_loss}

    def losses(self, batch: ChunkBatch) -> Losses:
        return [self.critic_loss(batch), self.actor_loss(batch)]

    # ------------------------------------------------------------------ acting
    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Chunks [B, h, A]: ``act_samples`` candidates per state, one picked by a softmax over their target
        value (``act: greedy`` or ``deterministic``: the best)."""
        conditioning = self.conditioning(observations, history_valid)
        current = observations if self.history_length == 1 else observations[:, -1]
        batch, k = current.shape[0], self.config.act_samples
        chunks = self.sample_chunks(self.actor, conditioning.repeat_interleave(k, dim=0))
        q = self.target_critic(current.repeat_interleave(k, dim=0), chunks.flatten(1)).min(dim=0).values
        scores = q.view(batch, k).float()
        if not deterministic and self.config.act == "softmax":  # a softmax draw, by the Gumbel-max trick
            uniform = self.noise.uniform((batch, k), scores.device).clamp(1e-20, 1.0 - 1e-7)
            scores = scores - torch.log(-torch.log(uniform))
        best = scores.argmax(dim=1)
        return chunks.view(batch, k, self.actor_chunk, self.action_dim)[torch.arange(batch, device=best.device), best]
