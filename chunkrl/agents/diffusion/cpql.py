"""CPQL over action chunks (Chen, Li, Zhao 2023, arXiv 2310.06343), with semi-Markov targets.

The policy is a consistency function over the chunk [h, A] in Karras et al.'s parameterisation
(``nets/diffusion.py``: σ_min 0.002, σ_max 80, ρ 7, σ_data 0.5), sampled in one step from ``σ_max`` by
default. Its behaviour-cloning signal is the consistency-training loss of the CPQL paper (against the
EMA actor at the adjacent noise level) or, with ``bc_loss: reconstruction``, the weighted
reconstruction loss the authors' code trains with. Critic, targets, Q term and action selection:
``chunk_policy_q.py``.
"""

from __future__ import annotations

import torch

from chunkrl.agents.diffusion.chunk_policy_q import ChunkPolicyQAgent
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.diffusion import Consistency


class CPQLAgent(ChunkPolicyQAgent):
    """``--agent cpql`` (see the module docstring)."""

    def build_process(self) -> None:
        c = self.config
        self.process = Consistency(c.sigma_min, c.sigma_max, c.rho, c.sigma_data, c.scales)

    def sample_chunks(self, model, conditioning: torch.Tensor) -> torch.Tensor:
        shape = (conditioning.shape[0], self.actor_chunk, self.action_dim)
        return self.process.sample(model, conditioning, shape, self.noise, self.config.sample_steps)

    def bc_loss(self, batch: ChunkBatch, conditioning: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        errors = self.process.loss_terms(
            self.actor, self.ema_actor, batch.actions, conditioning, self.noise, self.config.bc_loss
        )
        loss = self.valid_mean(errors, batch)
        return self.config.bc_weight * loss, {"actor/bc_loss": loss}
