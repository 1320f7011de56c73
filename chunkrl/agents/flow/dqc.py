"""Decoupled Q-chunking (DQC: Li, Park, Levine 2025, arXiv 2512.10926): the critic's chunk apart from the policy's.

The critic backs up over long chunks (``critic_horizon`` h, e.g. 25) for fast value propagation while the
policy emits short ones (``actor_chunk`` h_a <= h, e.g. 5) and stays reactive:

- ``critic``: the chunk critic ``Q(s, a_{t:t+h})`` (an ensemble), trained towards the h-step backup
  ``clip(reward_h + bootstrap_discount * sigmoid(V(s_{t+τ})), 0, 1)``;
- ``action_critic``: the partial-chunk critic ``Q(s, a_{t:t+h_a})``, distilled from the chunk critic by an
  optimistic implicit loss (weight ``distill_kappa`` where the chunk critic is above it): it approximates the
  best value the rest of the chunk can reach after these h_a actions; its Polyak copy is
  ``target_action_critic``;
- ``value``: ``V(s)``, an implicit (quantile or expectile, ``backup_kappa``) backup of the target partial-chunk
  critic's value of the dataset's partial chunk;
- ``flow``: the behaviour policy over h_a actions (flow-matching BC); acting and nothing else picks the best of
  ``num_samples`` flow chunks by the partial-chunk critic.

Values are sigmoids of the networks' outputs, trained with binary cross-entropy as in the authors' code: they
are discounted success probabilities in [0, 1]. The method's registry entry therefore adds 1 to every training
reward: OGBench's sparse reward (-1 until the task is solved, 0 at the solving step, which ends the episode)
becomes 1 exactly at success, the reward of the authors' goal-reaching data. Distillation and the value backup
count a chunk only when its first h_a actions exist in the trajectory.

With one horizon for both (``critic_horizon == actor_chunk``) there is nothing to distil: as the authors' code
does for its "QC" baseline (``use_chunk_critic=False``), no chunk critic is built and the partial-chunk critic,
now the whole chunk's, learns the bounded backup itself with the distillation's loss and weight
(``distill_kappa``); V still backs up implicitly from its target copy. This is the DQC paper's QC (h = h_a), not
chunkrl's ``qc`` (the Q-chunking paper's best-of-N target).
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from chunkrl.agents.base import Losses, masked_mean
from chunkrl.agents.flow.best_of_n import BestOfNAgent
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import Critic, aggregate, polyak_update
from chunkrl.nets.mlp import MLP

PROBABILITY_CLIP = 1e-5
"""Values are clipped to [clip, 1 - clip] before their logit is taken (the quantile losses)."""


def asymmetric_weight(targets: torch.Tensor, predictions: torch.Tensor, kappa: float) -> torch.Tensor:
    """``kappa`` where the target is at or above the prediction, ``1 - kappa`` below: with kappa > 0.5 the fit
    leans towards the larger targets (an optimistic, implicit maximum); 0.5 weighs both sides alike."""
    return torch.where(targets >= predictions, kappa, 1.0 - kappa)


def implicit_loss(kind: str, logits: torch.Tensor, targets: torch.Tensor, kappa: float) -> torch.Tensor:
    """Elementwise asymmetric loss of value logits against target probabilities in [0, 1]: ``expectile`` weighs
    the binary cross-entropy, ``quantile`` the absolute error of the logits."""
    weight = asymmetric_weight(targets, torch.sigmoid(logits), kappa)
    if kind == "expectile":
        return weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if kind == "quantile":
        return weight * (logits - torch.logit(targets.clamp(PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP))).abs()
    raise ValueError(f"implicit loss must be 'expectile' or 'quantile', got {kind!r}")


class DQCAgent(BestOfNAgent):
    """DQC (see the module docstring): best-of-N acting with a partial-chunk critic distilled from a chunk critic."""

    critic_may_be_longer = True

    def build_policy(self) -> None:
        super().build_policy()  # best-of-N's checks and its number of candidates
        c = self.config
        del self.target_critic  # the chunk critic bootstraps from V, not from a target copy of itself
        if self.one_horizon:
            del self.critic  # the partial-chunk critic covers the whole chunk and learns the backup itself
        self.action_critic = Critic(
            self.observation_dim, self.policy_dim, c.critic_hidden_dims, c.num_critics, c.critic_layer_norm
        )
        self.target_action_critic = copy.deepcopy(self.action_critic).requires_grad_(False)
        self.value = MLP(self.observation_dim, c.critic_hidden_dims, 1, c.critic_layer_norm)

    @property
    def one_horizon(self) -> bool:
        """The critic's horizon equals the policy's chunk: the DQC paper's QC, no chunk critic to distil."""
        return self.critic_horizon == self.actor_chunk

    def scored(self, actions: torch.Tensor) -> torch.Tensor:
        """Best-of-N scores the policy's whole (partial) chunk, with the partial-chunk critic."""
        return actions

    def chunk_actions(self, batch: ChunkBatch) -> torch.Tensor:
        """The dataset's chunk over the critic's horizon, flattened [B, h * A]."""
        return batch.actions[:, : self.critic_horizon].flatten(1)

    @torch.no_grad()
    def chunk_targets(self, batch: ChunkBatch) -> torch.Tensor:
        """The chunk critic's targets [B]: ``clip(reward_h + bootstrap_discount * sigmoid(V(s_{t+τ})), 0, 1)``."""
        next_value = torch.sigmoid(self.value(batch.next_observations)[..., 0])
        return (batch.reward_h + batch.bootstrap_discount * next_value).clamp(0.0, 1.0)

    def critic_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Binary cross-entropy of the chunk critic towards the bounded h-step backup through V."""
        target = self.chunk_targets(batch)
        valid = batch.valid[:, : self.critic_horizon]
        logits = self.critic(batch.observations, self.chunk_actions(batch), valid)  # [E, B]
        errors = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
        loss = masked_mean(errors, batch.td_weight.expand_as(errors))
        return loss, {
            "critic/loss": loss,
            "critic/q_mean": torch.sigmoid(logits).mean(),
            "critic/target_mean": target.mean(),
        }

    def distillation_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each partial-chunk critic member fitted to the matching chunk critic member's value of the dataset's
        chunk, optimistically (``distill_kappa``); chunks whose first h_a actions exist only."""
        with torch.no_grad():
            target = torch.sigmoid(
                self.critic(batch.observations, self.chunk_actions(batch), batch.valid[:, : self.critic_horizon])
            )
        loss, logits = self.fit_action_critic(batch, target)
        return loss, {"distill/loss": loss, "distill/q_mean": torch.sigmoid(logits).mean()}

    def fit_action_critic(self, batch: ChunkBatch, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The partial-chunk critic's implicit loss (``distill_loss``, ``distill_kappa``) towards ``target`` ([B]
        or one per member [E, B]) on the dataset's partial chunk, counting chunks whose h_a actions exist; and its
        logits [E, B]."""
        c = self.config
        logits = self.action_critic(batch.observations, self.policy_actions(batch))
        present = batch.valid[:, self.actor_chunk - 1]
        errors = implicit_loss(c.distill_loss, logits, target.expand_as(logits), c.distill_kappa)
        return masked_mean(errors, present.expand_as(logits)), logits

    def one_horizon_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One horizon (the authors' ``use_chunk_critic=False``): the partial-chunk critic fitted to the bounded
        h-step backup with the distillation's loss and weight; chunks whose h_a actions exist only."""
        target = self.chunk_targets(batch)
        loss, logits = self.fit_action_critic(batch, target)
        return loss, {
            "critic/loss": loss,
            "critic/q_mean": torch.sigmoid(logits).mean(),
            "critic/target_mean": target.mean(),
        }

    def value_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The implicit backup: V(s) fitted to the target partial-chunk critic's value of the dataset's partial
        chunk with weight ``backup_kappa`` above it."""
        c = self.config
        with torch.no_grad():
            target_q = torch.sigmoid(self.target_action_critic(batch.observations, self.policy_actions(batch)))
            target = aggregate(target_q, c.q_aggregation)
        logits = self.value(batch.observations)[..., 0]
        loss = masked_mean(
            implicit_loss(c.backup_loss, logits, target, c.backup_kappa), batch.valid[:, self.actor_chunk - 1]
        )
        return loss, {
            "value/loss": loss,
            "value/mean": torch.sigmoid(logits).mean(),
            "value/advantage": (target - torch.sigmoid(logits)).mean(),
        }

    def actor_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The policy is the flow itself: flow-matching BC on the dataset's partial chunk."""
        loss = self.bc_flow_loss(batch)
        return loss, {"actor/loss": loss, "actor/bc_flow_loss": loss}

    def losses(self, batch: ChunkBatch) -> Losses:
        if self.one_horizon:
            return [self.one_horizon_loss(batch), self.value_loss(batch), self.actor_loss(batch)]
        return [self.critic_loss(batch), self.distillation_loss(batch), self.value_loss(batch), self.actor_loss(batch)]

    def update_target_critic(self) -> None:
        """Polyak update of the target partial-chunk critic (the chunk critic has no target)."""
        polyak_update(self.target_action_critic.parameters(), self.action_critic.parameters(), self.target_tau)

    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The best of N flow chunks [B, h_a, A], scored by the partial-chunk critic."""
        return self.as_chunks(self.select_best(self.action_critic, observations)[0])
