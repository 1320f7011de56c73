"""What every agent offers the training loop, and small helpers the agents share."""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.compiled import compiled_method
from chunkrl.nets.ensemble import polyak_update
from chunkrl.nets.noise import GLOBAL_NOISE, GlobalNoise
from chunkrl.nets.precision import ActingWeights, autocast, bump_weights_generation, matmul_precision


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``values``; zero when every weight is zero (nothing to learn from)."""
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def td_loss(
    q: torch.Tensor, target: torch.Tensor, td_weight: torch.Tensor, members: str = "mean"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Squared TD errors of ensemble values ``q`` [E, B] against ``target`` [B], averaged over the TD samples
    (``td_weight``) and then averaged (``members="mean"``) or summed (``"sum"``, Diffusion-QL's
    ``MSE(Q1) + MSE(Q2)``) over the members; with the usual ``critic/*`` metrics."""
    errors = (q - target).square()
    loss = masked_mean(errors, td_weight.expand_as(errors)) * (q.shape[0] if members == "sum" else 1)
    return loss, {"critic/loss": loss, "critic/q_mean": q.mean(), "critic/target_mean": target.mean()}


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
    compile_queries: bool = False
    """Action queries run ``act_tensor`` compiled (``--compile``, ``nets/compiled.py``)."""
    noise: GlobalNoise = GLOBAL_NOISE
    """Source of every random draw of ``update`` and ``act`` (``nets/noise.py``)."""
    progress_metrics: dict[str, str] = {"critic/loss": "critic", "actor/loss": "actor"}
    """Metrics shown beside the progress bar (name -> label), when an update or a rollout reports them."""
    fresh_on_init: tuple[str, ...] = ()
    """Parameter-name prefixes that ``--init-from`` may leave fresh when the checkpoint lacks them (chunk-ppo
    from a chunk-bc checkpoint: ``value_head.``)."""
    needs_initial_weights: bool = False
    """The agent fine-tunes networks it cannot train from scratch (chunk-ppo's residual over a frozen imitation
    policy): a new run needs ``--init-from``."""
    unit_actions: bool = True
    """The agent emits actions in [-1, 1] (tanh, clip or clamp): the run maps the data's actions into that
    range (``data/normalize.py``). Token policies normalise inside their tokenizer and set False."""

    def __init__(self, observation_dim: int, action_dim: int, actor_chunk: int, critic_horizon: int | None = None):
        super().__init__()
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.actor_chunk = actor_chunk
        """Actions the policy emits per query (``act`` returns ``[B, actor_chunk, A]``)."""
        self.critic_horizon = critic_horizon or actor_chunk
        """Actions the critic scores (the backup's length; the batches' ``reward_h`` spans it)."""
        self.acting_weights = ActingWeights()
        """bf16: the weights' bfloat16 copies that action queries use (made again after weights change)."""
        self.register_load_state_dict_post_hook(bump_weights_generation)

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

    def extra_files(self) -> dict[str, str]:
        """Text files saved beside the weights in every checkpoint (name -> content), e.g. a tokenizer."""
        return {}

    def distribute(self) -> None:
        """Average gradients over the ranks of ``torch.distributed`` (agents whose registry entry declares
        ``data_parallel``)."""
        raise NotImplementedError(f"{type(self).__name__} does not train data-parallel")

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
            # bf16: the weights' bf16 copies, which autocast would otherwise cast at every query
            weights = self.acting_weights.swapped_in(self) if self.precision == "bf16" else contextlib.nullcontext()
            act_tensor = self.act_tensor
            if self.compile_queries:
                act_tensor = functools.partial(compiled_method(type(self), "act_tensor"), self)
            with weights:
                chunks = act_tensor(tensor[None] if single else tensor, deterministic, valid)
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


@dataclass
class OptimizerGroup:
    """One optimizer, the parameters it steps, and the gradient-norm bound applied to them first."""

    optimizer: torch.optim.Optimizer
    parameters: list[torch.Tensor]
    max_grad_norm: float | None = None  # None: no clipping


class EMA(nn.Module):
    """An exponential-moving-average copy of a module, as Diffusion-QL and CPQL keep of their actor.

    ``step()`` after every update: from update ``start`` on, every ``every`` updates,
    ``copy <- decay * copy + (1 - decay) * source``; before ``start`` the copy follows the source exactly
    (Diffusion-QL's code leaves it at the initial weights until then; following the source keeps an
    early target sensible and changes nothing after ``start``). The update count is a buffer, saved
    with checkpoints, and the schedule is computed on the device: no host sync inside the update loop.
    """

    def __init__(self, source: nn.Module, decay: float, every: int = 1, start: int = 0):
        super().__init__()
        if not 0.0 <= decay < 1.0 or every < 1 or start < 0:
            raise ValueError(f"EMA needs 0 <= decay < 1, every >= 1, start >= 0 (got {decay}, {every}, {start})")
        self.decay, self.every, self.start = decay, every, start
        self.module = copy.deepcopy(source).requires_grad_(False)
        self.source = [source]  # a list: not registered as a submodule (its weights are saved once, by the owner)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def weight(self, before_start: float = 1.0) -> torch.Tensor:
        """The share of the source taken at this update: ``before_start`` before ``start`` (1: follow the
        source; 0: hold the copy still), then ``1 - decay`` every ``every`` updates, else 0."""
        n = self.updates
        scheduled = (n % self.every == 0).float() * (1.0 - self.decay)
        return torch.where(n < self.start, torch.full_like(scheduled, before_start), scheduled)

    @torch.no_grad()
    def step(self) -> None:
        polyak_update(self.module.parameters(), self.source[0].parameters(), self.weight())
        self.updates += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class ActorCriticAgent(Agent):
    """An agent with a critic ensemble ``critic``, its Polyak target ``target_critic``, and optimizers.

    By default one Adam steps every trainable parameter (``make_optimizer``): each loss only reaches the
    networks it should, because targets and frozen critics are detached where the losses are written.
    Methods that want separate optimizers (other learning rates, a gradient-norm bound per network)
    call ``add_optimizer`` per network instead; ``update`` clips and steps each group, then updates the
    target critic and every ``EMA`` the agent registered in ``emas``.

    Subclasses implement ``losses(batch)`` and create their optimizers once their networks exist.
    """

    target_tau: float

    def __init__(self, observation_dim: int, action_dim: int, actor_chunk: int, critic_horizon: int | None = None):
        super().__init__(observation_dim, action_dim, actor_chunk, critic_horizon)
        self.groups: dict[str, OptimizerGroup] = {}
        self.emas: list[EMA] = []

    def make_optimizer(self, learning_rate: float) -> None:
        """One Adam over every trainable parameter (saved as ``optimizer``)."""
        self.add_optimizer("optimizer", self.parameters(), learning_rate)

    def add_optimizer(self, name: str, parameters, learning_rate: float, max_grad_norm: float | None = None) -> None:
        """An Adam of its own for ``parameters`` (trainable ones only), clipped to ``max_grad_norm`` first."""
        if max_grad_norm is not None and max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or None (got {max_grad_norm})")
        trainable = [p for p in parameters if p.requires_grad]
        self.groups[name] = OptimizerGroup(make_adam(trainable, learning_rate), trainable, max_grad_norm)

    def add_ema(self, name: str, source: nn.Module, decay: float, every: int = 1, start: int = 0) -> EMA:
        """Register ``EMA(source)`` as submodule ``name`` (saved with checkpoints), stepped after each update."""
        ema = EMA(source, decay, every, start)
        setattr(self, name, ema)
        self.emas.append(ema)
        return ema

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The single optimizer of an agent with one group (``--seeds`` stacks agents of that kind)."""
        if len(self.groups) != 1:
            raise AttributeError(f"{type(self).__name__} has several optimizers: {sorted(self.groups)}")
        return next(iter(self.groups.values())).optimizer

    @property
    def stackable(self) -> bool:
        """Whether ``--seeds`` can train it with stacked parameters: one optimizer, no clipping, no EMA."""
        plain = len(self.groups) == 1 and not self.emas and all(g.max_grad_norm is None for g in self.groups.values())
        return plain

    def losses(self, batch: ChunkBatch) -> Losses:
        raise NotImplementedError

    def total_loss(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sum of the losses, and every loss's metrics with it as ``loss/total``."""
        parts = self.losses(batch)
        total = sum(loss for loss, _ in parts)
        metrics = {name: value for _, part in parts for name, value in part.items()}
        return total, {**metrics, "loss/total": total}

    def update(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        """One gradient step on the sum of the losses (each group clipped, then stepped), then the
        target critic's Polyak update and the EMA copies."""
        with matmul_precision(self.precision):
            with autocast(self.precision, self.device):
                total, metrics = self.total_loss(batch)
            for group in self.groups.values():
                group.optimizer.zero_grad(set_to_none=True)
            total.backward()
            for name, group in self.groups.items():
                if group.max_grad_norm is not None:
                    norm = torch.nn.utils.clip_grad_norm_(group.parameters, group.max_grad_norm, foreach=True)
                    metrics[f"{name}/grad_norm"] = norm
                group.optimizer.step()
        self.update_target_critic()
        for ema in self.emas:
            ema.step()
        self.after_update()
        return {k: v.detach().float() for k, v in metrics.items()}

    def update_target_critic(self) -> None:
        """Move the target critic towards the critic (after every update, before the EMAs step): Polyak
        with ``target_tau``."""
        polyak_update(self.target_critic.parameters(), self.critic.parameters(), self.target_tau)

    def after_update(self) -> None:
        """Bookkeeping after each optimizer step (e.g. an update counter kept in a buffer)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {name: group.optimizer for name, group in self.groups.items()}
