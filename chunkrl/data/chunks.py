"""Chunk transitions: what every chunked agent trains on.

A chunk starts at step ``t`` with the critic's horizon ``h`` and discount ``γ`` (docs/chunks.md states the
same rules for users; with ``ChunkSpec.action_length`` L > h the batch carries L actions and ``valid`` over L,
while the return, ``τ`` and the bootstrap span h):

- ``actions``: ``a_t .. a_{t+h-1}`` from the same trajectory; ``valid[i] = 1`` when step ``t+i``
  exists there, otherwise the position is zero-padded and excluded from every loss.
- ``tau``: ``h``, or fewer when a terminal or the trajectory's end comes first (counting that step).
- ``reward_h``: ``Σ_{i<τ} γ^i r_{t+i}``; ``partial_returns[i]`` (only when asked for: no agent reads it
  in training) is the same sum up to ``min(i, τ-1)``.
- ``next_observations``: ``s_{t+τ}``, bootstrapped with ``bootstrap_discount = γ^τ`` (0 on a terminal).
- ``td_weight``: 1 for a TD sample. In ``mask`` mode a chunk with any padded position (the
  trajectory ended inside it, by a time limit or, online, by a terminal success) is left out of the TD
  loss (weight 0), as in the paper's code: only successful chunks would show a zero tail, and a critic
  that saw them could learn "padding means success". In ``truncate`` mode every chunk is a TD sample
  and the chunk critic reads ``valid`` beside the actions, so padding is never mistaken for actions.
- with an observation history of length ``T > 1``: ``observation_history`` holds ``s_{t-T+1} .. s_t``
  (oldest first) and ``history_valid`` marks the ones inside the trajectory; positions before its
  start are zero-padded with ``history_valid = 0``. ``next_observation_history`` /
  ``next_history_valid`` are the same for ``s_{t+τ}``.

``enumerate_chunks`` is the slow, obviously-correct reference; ``ChunkSampler`` is the vectorized
sampler used in training. Tests check that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import torch

from chunkrl.data.trajectories import Trajectories

BoundaryMode = Literal["mask", "truncate"]


@dataclass(frozen=True)
class ChunkSpec:
    """How chunks are cut from trajectories."""

    horizon: int = 5
    """The critic's horizon h: how many actions the backup spans (``tau <= h``, ``reward_h``, ``γ^τ``)."""
    discount: float = 0.99
    """Per-step discount γ."""
    boundary: BoundaryMode = "mask"
    """``mask``: chunks cut by a trajectory's end are excluded from TD; ``truncate``: they bootstrap early."""
    action_length: int | None = None
    """Actions per chunk in a batch (``actions`` and ``valid`` are ``[B, L, A]``, ``[B, L]``): the longer of the
    critic's horizon and the actor's chunk, so that a policy emitting more actions than the critic scores
    (or fewer) trains on its whole chunk. None: ``horizon``. Only the first ``horizon`` positions decide
    the TD weight in ``mask`` mode."""

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.action_length is not None and self.action_length < 1:
            raise ValueError(f"action_length must be >= 1, got {self.action_length}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")
        if self.boundary not in ("mask", "truncate"):
            raise ValueError(f"boundary must be 'mask' or 'truncate', got {self.boundary!r}")

    @property
    def length(self) -> int:
        """Actions per chunk in a batch: ``action_length``, or the horizon."""
        return self.action_length or self.horizon


@dataclass
class ChunkBatch:
    """A batch of chunk transitions with named fields (numpy arrays or torch tensors)."""

    observations: np.ndarray | torch.Tensor  # [B, obs_dim], s_t
    actions: np.ndarray | torch.Tensor  # [B, h, action_dim], zero-padded where invalid
    valid: np.ndarray | torch.Tensor  # [B, h], 1 where step t+i exists in the trajectory
    reward_h: np.ndarray | torch.Tensor  # [B], Σ_{i<τ} γ^i r_{t+i}
    tau: np.ndarray | torch.Tensor  # [B], number of steps summed into reward_h
    bootstrap_discount: np.ndarray | torch.Tensor  # [B], γ^τ, or 0 when the chunk stopped on a terminal
    next_observations: np.ndarray | torch.Tensor  # [B, obs_dim], s_{t+τ}
    td_weight: np.ndarray | torch.Tensor  # [B], 1 for a TD sample, 0 to leave it out of the TD loss
    partial_returns: np.ndarray | torch.Tensor | None = None  # [B, h], running sums, held at reward_h after τ
    observation_history: np.ndarray | torch.Tensor | None = None  # [B, T, obs_dim], s_{t-T+1..t}
    history_valid: np.ndarray | torch.Tensor | None = None  # [B, T], 0 before the trajectory's start
    next_observation_history: np.ndarray | torch.Tensor | None = None  # [B, T, obs_dim], ending at s_{t+τ}
    next_history_valid: np.ndarray | torch.Tensor | None = None  # [B, T]
    from_dataset: np.ndarray | torch.Tensor | None = None  # [B], 1 for a chunk of the dataset, 0 for an online one

    def to_torch(self, device: torch.device | str = "cpu") -> ChunkBatch:
        """Tensors on ``device`` (floats as float32, ``tau`` as int64)."""
        converted = {}
        for f in fields(self):
            if getattr(self, f.name) is None:
                continue
            value = torch.as_tensor(getattr(self, f.name))
            value = value.long() if f.name == "tau" else value.float()
            converted[f.name] = value.to(device, non_blocking=True)
        return ChunkBatch(**converted)

    def __len__(self) -> int:
        return len(self.reward_h)


def enumerate_chunks(trajectories: Trajectories, spec: ChunkSpec) -> ChunkBatch:
    """Every chunk transition of the store, one per step, computed step by step (reference code).

    Deterministic and loop-based on purpose: it states the semantics plainly, for tests and for
    anyone checking the math. Use ``ChunkSampler`` for training.
    """
    n, h, length, gamma = trajectories.size, spec.horizon, spec.length, spec.discount
    steps = trajectories.step_arrays()
    if n and not steps.ends[-1]:
        raise ValueError("enumerate_chunks needs complete trajectories; the newest one is still open")
    out = _empty_batch(n, length, trajectories.observation_dim, trajectories.action_dim)
    for t in range(n):
        ended = False  # passed the trajectory's end
        stopped = False  # return summation has stopped (terminal or end reached)
        ret, tau, stop_index = 0.0, 0, t
        for i in range(length):
            if not ended:
                out.valid[t, i] = 1.0
                out.actions[t, i] = steps.actions[t + i]
            if not stopped and i < h:  # the return spans the critic's horizon only
                ret += gamma**i * float(steps.rewards[t + i])
                tau, stop_index = i + 1, t + i
                if steps.terminals[t + i] or steps.ends[t + i]:
                    stopped = True
            if not ended and steps.ends[t + i]:
                ended = True
            out.partial_returns[t, i] = ret
        terminal_stop = bool(steps.terminals[stop_index])
        out.observations[t] = steps.observations[t]
        out.reward_h[t] = ret
        out.tau[t] = tau
        out.next_observations[t] = steps.next_observations[stop_index]
        out.bootstrap_discount[t] = 0.0 if terminal_stop else gamma**tau
        padded = out.valid[t, :h].sum() < h
        out.td_weight[t] = 0.0 if (spec.boundary == "mask" and padded) else 1.0
    out.from_dataset = np.ones(n, np.float32)  # every step of a store is the dataset's unless a sampler says
    return out


class ChunkSampler:
    """Vectorized random batches of chunk transitions from a (possibly growing) ``Trajectories``.

    Args:
        trajectories: the store to read; its current ``size`` is read at every call.
        spec: horizon, discount and boundary mode.
        seed: seed of the sampler's own random generator.
        history: observations per history (1: no history fields in the batches).
        partial_returns: also return the running discounted sums (diagnostics; off in training).
        dataset_steps: how many leading steps of the store are the dataset's (the rest were collected
            online): batches mark their chunks ``from_dataset``. None: every step is the dataset's.
    """

    def __init__(
        self,
        trajectories: Trajectories,
        spec: ChunkSpec,
        seed: int = 0,
        history: int = 1,
        partial_returns: bool = False,
        dataset_steps: int | None = None,
    ):
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.trajectories = trajectories
        self.spec = spec
        self.history = history
        self.partial_returns = partial_returns
        self.dataset_steps = dataset_steps
        self.rng = np.random.default_rng(seed)
        self._offsets = np.arange(spec.length, dtype=np.int64)
        self._powers = (spec.discount**self._offsets).astype(np.float64)

    def rng_state(self) -> dict:
        """The random generator's state (saved with checkpoints)."""
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Uniform random start steps."""
        if self.trajectories.size == 0:
            raise ValueError("cannot sample chunks from an empty store")
        return self.rng.integers(0, self.trajectories.size, size=batch_size)

    def sample(self, batch_size: int) -> ChunkBatch:
        """A random batch (numpy); call ``.to_torch(device)`` to train on it."""
        return self.gather(self.sample_indices(batch_size))

    def gather(self, starts: np.ndarray) -> ChunkBatch:
        """The chunk transitions starting at ``starts`` (int array), without Python loops."""
        store, h = self.trajectories, self.spec.horizon
        starts = np.asarray(starts, dtype=np.int64)
        last = store.last_step_of(starts)  # [B]
        positions = starts[:, None] + self._offsets  # [B, h]
        valid = positions <= last[:, None]
        stop = np.minimum(np.minimum(last, store.next_terminal[starts]), starts + h - 1)  # [B]
        tau = stop - starts + 1
        summed = self._offsets[None, :] < tau[:, None]
        safe_positions = np.minimum(positions, last[:, None])
        step_rewards = np.where(summed, store.rewards[safe_positions] * self._powers, 0.0)
        terminal_stop = store.terminals[stop]
        actions = store.actions[safe_positions] * valid[..., None]
        bootstrap = np.where(terminal_stop, 0.0, self.spec.discount**tau)
        if self.spec.boundary == "mask":  # any padding leaves the TD loss (see the module docstring)
            td_weight = valid[:, :h].all(axis=1).astype(np.float32)
        else:
            td_weight = np.ones(len(starts), np.float32)
        extra = self.histories(starts, stop) if self.history > 1 else {}
        dataset_steps = store.size if self.dataset_steps is None else self.dataset_steps
        if self.partial_returns:
            extra["partial_returns"] = np.cumsum(step_rewards, axis=1).astype(np.float32)
        return ChunkBatch(
            observations=store.observations[starts],
            actions=actions.astype(np.float32),
            valid=valid.astype(np.float32),
            reward_h=step_rewards.sum(axis=1).astype(np.float32),
            tau=tau,
            bootstrap_discount=bootstrap.astype(np.float32),
            next_observations=store.next_observations[stop],
            td_weight=td_weight,
            from_dataset=(starts < dataset_steps).astype(np.float32),
            **extra,
        )

    def histories(self, starts: np.ndarray, stop: np.ndarray) -> dict[str, np.ndarray]:
        """Observation histories ending at ``s_t`` (step ``starts``) and at ``s_{t+τ}`` (after step ``stop``)."""
        store, length = self.trajectories, self.history
        back = np.arange(1 - length, 1, dtype=np.int64)  # [-(T-1) .. 0]
        rows = starts[:, None] + back
        valid = rows >= store.episode_first[starts][:, None]
        current = store.observations[np.maximum(rows, 0)] * valid[..., None]
        # s_{t+τ} is next_observations[stop]; the T-1 before it are observations[stop-T+2 .. stop]
        rows = stop[:, None] + back[1:]
        next_valid = np.concatenate([rows >= store.episode_first[stop][:, None], np.ones((len(stop), 1), bool)], 1)
        previous = store.observations[np.maximum(rows, 0)]
        following = np.concatenate([previous, store.next_observations[stop][:, None]], axis=1) * next_valid[..., None]
        return {
            "observation_history": current.astype(np.float32),
            "history_valid": valid.astype(np.float32),
            "next_observation_history": following.astype(np.float32),
            "next_history_valid": next_valid.astype(np.float32),
        }


def _empty_batch(n: int, h: int, obs_dim: int, action_dim: int) -> ChunkBatch:
    return ChunkBatch(
        observations=np.zeros((n, obs_dim), np.float32),
        actions=np.zeros((n, h, action_dim), np.float32),
        valid=np.zeros((n, h), np.float32),
        reward_h=np.zeros(n, np.float32),
        partial_returns=np.zeros((n, h), np.float32),
        tau=np.zeros(n, np.int64),
        bootstrap_discount=np.zeros(n, np.float32),
        next_observations=np.zeros((n, obs_dim), np.float32),
        td_weight=np.zeros(n, np.float32),
    )


class MixedChunkSampler:
    """Batches drawn half from offline data and half from online replay (RLPD's symmetric sampling).

    Args:
        offline: sampler over the prior (offline) dataset.
        online: sampler over online replay; while it is empty, whole batches come from ``offline``.
        online_fraction: share of each batch drawn from online replay (0.5: symmetric).
    """

    def __init__(self, offline: ChunkSampler, online: ChunkSampler, online_fraction: float = 0.5):
        if not 0.0 <= online_fraction <= 1.0:
            raise ValueError(f"online_fraction must be in [0, 1], got {online_fraction}")
        self.offline, self.online, self.online_fraction = offline, online, online_fraction

    def rng_state(self) -> dict:
        """Both samplers' generator states (saved with checkpoints)."""
        return {"offline": self.offline.rng_state(), "online": self.online.rng_state()}

    def set_rng_state(self, state: dict) -> None:
        self.offline.set_rng_state(state["offline"])
        self.online.set_rng_state(state["online"])

    def split(self, batch_size: int) -> tuple[int, int]:
        """(offline, online) sample counts for one batch."""
        online = round(batch_size * self.online_fraction) if self.online.trajectories.size else 0
        return batch_size - online, online

    def sample(self, batch_size: int) -> ChunkBatch:
        offline_count, online_count = self.split(batch_size)
        parts = [self.offline.sample(offline_count)] if offline_count else []
        if online_count:
            parts.append(self.online.sample(online_count))
        if len(parts) == 1:
            return parts[0]
        joined = {f.name: [getattr(p, f.name) for p in parts] for f in fields(ChunkBatch)}
        return ChunkBatch(**{k: None if v[0] is None else np.concatenate(v) for k, v in joined.items()})
