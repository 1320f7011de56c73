"""What every agent offers the training loop, and small helpers the agents share."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import polyak_update
from chunkrl.nets.noise import GLOBAL_NOISE, GlobalNoise
from chunkrl.nets.precision import autocast, matmul_precision


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``values``; zero when every weight is zero (nothing to learn from)."""
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def make_adam(parameters, learning_rate: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one pass over all parameters: ~8% faster updates on CPU)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):  # older PyTorch without fused CPU Adam
        return torch.optim.Adam(parameters, lr=learning_rate)


def call_frozen(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` with its parameters detached: gradients reach the inputs, never the weights."""
    frozen = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, frozen, inputs)


class Agent(nn.Module):
    """Base class: networks as submodules, an ``update`` per batch and ``act`` for execution.

    Subclasses implement ``update(batch) -> metrics`` (0-dim tensors, read by the loop only when it
    logs), ``act_tensor(observations, deterministic, history_valid)`` returning chunks [B, h, A], and
    ``optimizers()`` for checkpointing. An agent that reads observation histories sets
    ``history_length`` > 1; the loop then samples histories and the executor keeps them.
    """

    history_length: int = 1
    precision: str = "fp32"
    """Arithmetic of updates and action queries: fp32, bf16-matmul or bf16 (``nets/precision.py``)."""
    noise: GlobalNoise = GLOBAL_NOISE
    """Source of every random draw of ``update`` and ``act`` (``nets/noise.py``)."""

    def __init__(self, observation_dim: int, action_dim: int, horizon: int):
        super().__init__()
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.horizon = horizon

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def update(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def act_tensor(
        self, observations: torch.Tensor, deterministic: bool = False, history_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def act(
        self, observations: np.ndarray, deterministic: bool = False, history_valid: np.ndarray | None = None
    ) -> np.ndarray:
        """Action chunks for numpy observations: [obs_dim] -> [h, A]; [B, obs_dim] -> [B, h, A].

        With ``history_valid``, ``observations`` are histories: [T, obs_dim] with ``history_valid`` [T]
        (or batched: [B, T, obs_dim] and [B, T])."""
        single = observations.ndim == (1 if history_valid is None else 2)
        toggle = self.training and self.has_dropout  # switching modes costs ~0.4 ms: only when it matters
        if toggle:
            self.eval()  # no dropout while acting
        with torch.inference_mode(), matmul_precision(self.precision), autocast(self.precision, self.device):
            tensor = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
            valid = None
            if history_valid is not None:
                valid = torch.as_tensor(history_valid, dtype=torch.float32, device=self.device)
                valid = valid[None] if single else valid
            chunks = self.act_tensor(tensor[None] if single else tensor, deterministic, valid)
            chunks = chunks.float().cpu().numpy()
        if toggle:
            self.train()
        return chunks[0] if single else chunks

    @functools.cached_property
    def has_dropout(self) -> bool:
        """Whether any layer behaves differently in training (dropout with p > 0)."""
        return any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.modules())


Losses = list[tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""``(loss, metrics)`` pairs, e.g. ``[critic_loss(batch), actor_loss(batch)]``."""


class ActorCriticAgent(Agent):
    """An agent with a critic ensemble ``critic``, its Polyak target ``target_critic``, and one Adam
    over every trainable parameter (each loss only reaches the networks it should: targets and frozen
    critics are detached where the losses are written).

    Subclasses implement ``losses(batch)`` and call ``make_optimizer()`` once their networks exist.
    """

    target_tau: float

    def make_optimizer(self, learning_rate: float) -> None:
        self.optimizer = make_adam([p for p in self.parameters() if p.requires_grad], learning_rate)

    def losses(self, batch: ChunkBatch) -> Losses:
        raise NotImplementedError

    def total_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sum of the losses, and every loss's metrics with it as ``loss/total``."""
        parts = self.losses(batch)
        total = sum(loss for loss, _ in parts)
        metrics = {name: value for _, part in parts for name, value in part.items()}
        return total, {**metrics, "loss/total": total}

    def update(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        """One gradient step on the sum of the losses, then the target critic's Polyak update."""
        with matmul_precision(self.precision):
            with autocast(self.precision, self.device):
                total, metrics = self.total_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
        polyak_update(self.target_critic.parameters(), self.critic.parameters(), self.target_tau)
        self.after_update()
        return {k: v.detach().float() for k, v in metrics.items()}

    def after_update(self) -> None:
        """Bookkeeping after each optimizer step (e.g. an update counter kept in a buffer)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}
