"""Diffusion-QL over action chunks (Wang, Hunt, Zhou 2023, arXiv 2208.06193), with semi-Markov targets.

The policy is a DDPM over the chunk [h, A] with ε-prediction (``T = 5`` VP steps by default, ``x0``
clipped to the action bounds at every reverse step); behaviour cloning is the ε-prediction error on the
dataset chunk's valid positions. Critic, targets, Q term and action selection: ``chunk_policy_q.py``.
"""

from __future__ import annotations

import torch

from chunkrl.agents.diffusion.chunk_policy_q import ChunkPolicyQAgent
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.diffusion import DDPM


class DiffusionQLAgent(ChunkPolicyQAgent):
    """``--agent diffusion-ql`` (see the module docstring)."""

    def build_process(self) -> None:
        self.process = DDPM(self.config.steps, self.config.schedule)

    def sample_chunks(self, model, conditioning: torch.Tensor) -> torch.Tensor:
        shape = (conditioning.shape[0], self.actor_chunk, self.action_dim)
        return self.process.sample(model, conditioning, shape, self.noise)

    def bc_loss(self, batch: ChunkBatch, conditioning: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        errors = self.process.loss_terms(self.actor, batch.actions, conditioning, self.noise)
        loss = self.valid_mean(errors, batch)
        return loss, {"actor/bc_loss": loss}
