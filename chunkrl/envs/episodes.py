"""Episode statistics, counted in one place for every way chunkrl steps environments (online collection,
evaluation, on-policy rollouts of vectorized environments)."""

from __future__ import annotations

import numpy as np


class EpisodeStats:
    """Running return and length of ``num_envs`` environments; ``add`` hands back each finished episode.

    A finished episode is ``{"return", "length", "success", "diverged"}``: the undiscounted sum of its
    rewards, its steps, whether it ended in the task's success and whether its physics diverged.
    """

    def __init__(self, num_envs: int = 1):
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def add(self, rewards, steps, done, success, diverged) -> list[dict[str, float]]:
        """Count one step (or one chunk of ``steps`` steps) of every environment: per environment its
        undiscounted reward, steps taken, and whether the episode ended (with success, diverged)."""
        self.returns += np.asarray(rewards, np.float64)
        self.lengths += np.asarray(steps, np.int64)
        done, success, diverged = (np.atleast_1d(np.asarray(x, bool)) for x in (done, success, diverged))
        finished = []
        for i in np.flatnonzero(done):
            finished.append(
                {
                    "return": float(self.returns[i]),
                    "length": float(self.lengths[i]),
                    "success": float(success[i]),
                    "diverged": float(diverged[i]),
                }
            )
            self.returns[i], self.lengths[i] = 0.0, 0
        return finished
