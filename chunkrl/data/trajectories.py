"""Step-level trajectory store: the one place where environment steps live.

Every step ``t`` holds ``s_t, a_t, r_t, s_{t+1}`` and two flags:

- ``terminals[t]``: the task ended at this step; nothing is bootstrapped past it.
- ``ends[t]``: the stored trajectory stops at this step (a time limit, the end of a recorded
  episode, or a terminal that reset the environment).

Steps of one trajectory are contiguous. Three index arrays are kept up to date so that chunk samplers
never loop in Python: ``episode_first[t]`` / ``episode_last[t]`` (index of the first / last step of
``t``'s trajectory) and ``next_terminal[t]`` (index of the first terminal at or after ``t`` in the
same trajectory).
The store grows by appending steps (online replay) and is built in one go from arrays (datasets).
"""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from chunkrl.errors import DatasetError  # noqa: F401  (re-exported: readers raise it from here)

NO_INDEX = np.iinfo(np.int64).max // 4
"""Marker for "no such step" in ``next_terminal`` (and for open trajectories in ``episode_last``)."""


@dataclass(frozen=True)
class StepArrays:
    """Plain per-step arrays, the exchange format between sources and the store."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    ends: np.ndarray
    next_observations: np.ndarray


class Trajectories:
    """Preallocated, appendable store of environment steps with trajectory boundaries.

    Args:
        observation_dim: size of a flat observation vector.
        action_dim: size of one action.
        capacity: maximum number of steps the store can hold.
        directory: keep the arrays in ``.npy`` files there, memory-mapped, instead of in RAM: for
            datasets larger than memory. The process then holds only the pages it touches (the OS
            pages them in and out); sampling costs the same per batch while the pages it reads are
            cached. The directory must be new or empty (nothing is overwritten).
    """

    def __init__(self, observation_dim: int, action_dim: int, capacity: int, directory: Path | None = None):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.capacity = capacity
        self.size = 0
        allocate = _in_memory if directory is None else _mapped_in(Path(directory))
        self.observations = allocate("observations", (capacity, observation_dim), np.float32)
        self.next_observations = allocate("next_observations", (capacity, observation_dim), np.float32)
        self.actions = allocate("actions", (capacity, action_dim), np.float32)
        self.rewards = allocate("rewards", (capacity,), np.float32)
        self.terminals = allocate("terminals", (capacity,), bool)
        self.ends = allocate("ends", (capacity,), bool)
        self.episode_first = allocate("episode_first", (capacity,), np.int64)
        self.episode_last = allocate("episode_last", (capacity,), np.int64)
        self.next_terminal = allocate("next_terminal", (capacity,), np.int64)
        self.episode_last[:] = NO_INDEX
        self.next_terminal[:] = NO_INDEX
        self._open_start = 0  # first step of the trajectory being appended to
        self._open_after_terminal = 0  # first step after the latest terminal of that trajectory

    # ------------------------------------------------------------------ building
    @classmethod
    def from_arrays(cls, steps: StepArrays, capacity: int | None = None) -> Trajectories:
        """Build a store from per-step arrays, checking shapes, values and boundaries."""
        n = _validate(steps)
        store = cls(steps.observations.shape[1], steps.actions.shape[1], max(capacity or n, n))
        store._write_block(steps)
        return store

    def _write_block(self, steps: StepArrays) -> None:
        n = len(steps.rewards)
        lo, hi = self.size, self.size + n
        if self.size and not self.ends[self.size - 1]:
            raise DatasetError("cannot add a block of trajectories while a trajectory is still open")
        if hi > self.capacity:
            raise DatasetError(f"store capacity {self.capacity} exceeded (have {self.size}, adding {n})")
        self.observations[lo:hi] = steps.observations
        self.next_observations[lo:hi] = steps.next_observations
        self.actions[lo:hi] = steps.actions
        self.rewards[lo:hi] = steps.rewards
        self.terminals[lo:hi] = steps.terminals
        self.ends[lo:hi] = steps.ends
        positions = np.arange(lo, hi, dtype=np.int64)
        starts = np.concatenate([[True], steps.ends[:-1]])  # a trajectory starts after every end
        self.episode_first[lo:hi] = np.maximum.accumulate(np.where(starts, positions, lo))
        self.episode_last[lo:hi] = _next_flagged(positions, steps.ends)
        next_terminal = _next_flagged(positions, steps.terminals)
        self.next_terminal[lo:hi] = np.where(next_terminal <= self.episode_last[lo:hi], next_terminal, NO_INDEX)
        self.size = hi
        self._open_start = self._open_after_terminal = hi

    def extend(self, other: Trajectories) -> None:
        """Append every step of ``other`` (which must hold only complete trajectories)."""
        self._write_block(other.step_arrays())

    def add(
        self,
        observation: np.ndarray,
        action: np.ndarray,
        reward: float,
        terminal: bool,
        end: bool,
        next_observation: np.ndarray,
    ) -> None:
        """Append one environment step to the open trajectory (``end`` closes it)."""
        t = self.size
        if t >= self.capacity:
            raise DatasetError(f"store capacity {self.capacity} exceeded; create it with a larger capacity")
        self.observations[t] = observation
        self.next_observations[t] = next_observation
        self.actions[t] = action
        self.rewards[t] = reward
        self.terminals[t] = terminal
        self.ends[t] = end
        self.episode_first[t] = self._open_start
        if terminal:
            self.next_terminal[self._open_after_terminal : t + 1] = t
            self._open_after_terminal = t + 1
        self.size = t + 1
        if end:
            self.episode_last[self._open_start : t + 1] = t
            self._open_start = self._open_after_terminal = t + 1

    # ------------------------------------------------------------------ reading
    def last_step_of(self, index: np.ndarray) -> np.ndarray:
        """Index of the last stored step of each step's trajectory (open ones: the newest step)."""
        last = self.episode_last[index]
        return np.where(last == NO_INDEX, self.size - 1, last)

    def step_arrays(self) -> StepArrays:
        """Views of the filled part of the store."""
        n = self.size
        return StepArrays(
            self.observations[:n],
            self.actions[:n],
            self.rewards[:n],
            self.terminals[:n],
            self.ends[:n],
            self.next_observations[:n],
        )

    def content_digest(self) -> str:
        """SHA-256 (hex) of the filled steps' contents: observations, actions, rewards, terminals, ends and next
        observations, in that order, as stored. Two stores with equal digests hold the same steps; a file's own
        bytes cannot tell that (an npz written twice differs in its zip timestamps)."""
        digest, steps = hashlib.sha256(), self.step_arrays()
        for field in fields(steps):
            digest.update(np.ascontiguousarray(getattr(steps, field.name)).data)
        return digest.hexdigest()

    @property
    def num_trajectories(self) -> int:
        """Number of complete trajectories (plus one if a trajectory is open)."""
        closed = int(self.ends[: self.size].sum())
        return closed + int(self.size > 0 and not self.ends[self.size - 1])

    def __len__(self) -> int:
        return self.size


def _in_memory(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.zeros(shape, dtype)


def _mapped_in(directory: Path):
    """An allocator of zero-filled arrays memory-mapped from ``directory/<name>.npy``."""
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; a memory-mapped store needs a new directory")
    directory.mkdir(parents=True, exist_ok=True)

    def allocate(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        array = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        # batches read scattered rows: without this hint every page fault reads ahead ~128 KiB it will
        # not use, and a store larger than the page cache thrashes (measured: hundreds of GB read)
        if hasattr(mmap, "MADV_RANDOM"):  # POSIX only
            array._mmap.madvise(mmap.MADV_RANDOM)
        return array

    return allocate


def _next_flagged(positions: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """For each position, the first flagged position at or after it (``NO_INDEX`` if none)."""
    candidates = np.where(flags, positions, NO_INDEX)
    return np.minimum.accumulate(candidates[::-1])[::-1]


def _validate(steps: StepArrays) -> int:
    n = len(steps.rewards)
    if n == 0:
        raise DatasetError("the dataset holds no steps")
    named = {
        "observations": steps.observations,
        "next_observations": steps.next_observations,
        "actions": steps.actions,
        "rewards": steps.rewards,
        "terminals": steps.terminals,
        "ends": steps.ends,
    }
    for name, array in named.items():
        if len(array) != n:
            raise DatasetError(f"'{name}' has {len(array)} steps but 'rewards' has {n}; the arrays must align")
    for name in ("observations", "next_observations", "actions"):
        if named[name].ndim != 2:
            raise DatasetError(f"'{name}' must be 2-D [steps, dim], got shape {named[name].shape}")
    if steps.observations.shape != steps.next_observations.shape:
        raise DatasetError("observations and next_observations have different shapes")
    for name in ("observations", "next_observations", "actions", "rewards"):
        if not np.isfinite(named[name]).all():
            raise DatasetError(f"'{name}' contains NaN or inf values; the dataset file is corrupt")
    if not steps.ends[-1]:
        raise DatasetError("the last step does not end a trajectory; the dataset looks truncated")
    return n
