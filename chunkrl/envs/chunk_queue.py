"""The one object that turns chunks into actions, shared by training, evaluation and deployment (``Policy``).

The queue asks the policy for a chunk when it is empty, keeps the first ``execute_horizon`` (k <= h) of
its actions and hands them out one per step; ``reset`` at an episode's start empties it. It also keeps
the episode's last ``history`` observations (every step's, not only the query steps'): a policy that
reads a history is queried with ``(history [T, obs], history_valid=[T])``, zero-padded and marked
invalid before the episode's start. Chunks are reshaped by the action size, so a policy may answer
``[h, A]`` or a flat ``[h * A]``.

With ``temporal_ensemble = m`` (ACT's temporal ensembling) the queue asks for a chunk at every step and the
action it hands out is the weighted mean of what every chunk still running predicted for this step, with
weights ``exp(-m * i)`` from the oldest prediction (i = 0) to the newest (ACT: m = 0.01).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

ChunkPolicy = Callable[..., np.ndarray]
"""observation [obs_dim] (or history [T, obs_dim] with ``history_valid=[T]``) -> chunk [h, A]"""


def stacked_history(history, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last observations of an episode as ``[length, obs]``, zero-padded before the episode's start,
    and the validity of each position (1 for a real observation)."""
    padding = length - len(history)
    stacked = np.zeros((length, *np.shape(history[-1])), np.float32)
    stacked[padding:] = np.stack(history)
    return stacked, (np.arange(length) >= padding).astype(np.float32)


class ChunkQueue:
    """Actions of queried chunks, one per step, and the observation history the queries read.

    Args:
        action_dim: size of one action (chunks are reshaped to ``[-1, action_dim]``).
        execute_horizon: actions of each chunk run before the next query (None: the whole chunk).
        history: observations a query reads (1: the current one only).
    """

    def __init__(
        self,
        action_dim: int,
        execute_horizon: int | None = None,
        history: int = 1,
        temporal_ensemble: float | None = None,
    ):
        if execute_horizon is not None and execute_horizon < 1:
            raise ValueError(f"execute_horizon must be >= 1, got {execute_horizon}")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        if temporal_ensemble is not None and (temporal_ensemble < 0 or execute_horizon not in (None, 1)):
            raise ValueError(
                f"temporal ensembling queries every step: it needs a weight m >= 0 and no execute_horizon above 1 "
                f"(got m {temporal_ensemble}, execute_horizon {execute_horizon})"
            )
        self.action_dim, self.execute_horizon, self.history_length = action_dim, execute_horizon, history
        self.temporal_ensemble = temporal_ensemble
        self.running: list[tuple[np.ndarray, int]] = []  # ensembling: (chunk, steps since it was asked for)
        self.actions: deque[np.ndarray] = deque()
        self.history: deque[np.ndarray] = deque(maxlen=history)
        self.queries = 0
        """Chunks asked for so far (over every episode)."""

    def __len__(self) -> int:
        """Actions still queued (with temporal ensembling: chunks still running)."""
        return len(self.running) if self.temporal_ensemble is not None else len(self.actions)

    def reset(self) -> None:
        """Forget the queued actions, the running chunks and the history (an episode starts)."""
        self.actions.clear()
        self.running.clear()
        self.history.clear()

    def observe(self, observation: np.ndarray) -> None:
        """Record this step's observation (call it every step, before ``action``)."""
        self.history.append(observation)

    def query(self, policy: ChunkPolicy) -> np.ndarray:
        """The policy's chunk ``[h, A]`` for the latest observation (or history); the queue is untouched."""
        if self.history_length == 1:
            chunk = policy(self.history[-1])
        else:
            stacked, valid = stacked_history(self.history, self.history_length)
            chunk = policy(stacked, history_valid=valid)
        return np.asarray(chunk).reshape(-1, self.action_dim)

    def action(self, policy: ChunkPolicy) -> np.ndarray:
        """The next action: the queue's next one, or the first of a new chunk when it is empty (with temporal
        ensembling: the weighted mean of every running chunk's action for this step, after a new query)."""
        if self.temporal_ensemble is not None:
            return self.ensembled_action(policy)
        if not self.actions:
            chunk = self.query(policy)
            self.actions.extend(chunk[: self.execute_horizon or len(chunk)])
            self.queries += 1
        return self.actions.popleft()

    def ensembled_action(self, policy: ChunkPolicy) -> np.ndarray:
        """ACT's temporal ensembling: query now, then average each running chunk's prediction for this step."""
        self.running.append((self.query(policy), 0))
        self.queries += 1
        self.running = [(chunk, age) for chunk, age in self.running if age < len(chunk)]  # oldest first
        predictions = np.stack([chunk[age] for chunk, age in self.running])
        weights = np.exp(-self.temporal_ensemble * np.arange(len(predictions)))
        self.running = [(chunk, age + 1) for chunk, age in self.running]
        return ((weights[:, None] * predictions).sum(0) / weights.sum()).astype(predictions.dtype)
