"""Open-loop chunk execution in a gymnasium environment: one object serves online collection and evaluation.

The executor steps the environment with the actions of a ``ChunkQueue`` (``envs/chunk_queue.py``, the
same queue a deployed ``Policy`` uses): the agent is queried when the queue is empty, ``execute_horizon``
(k <= h) actions of each chunk run open loop, and the end of an episode clears the queue and the
observation history. Episode statistics come from ``EpisodeStats`` (``envs/episodes.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import numpy as np

from chunkrl.envs.chunk_queue import ChunkPolicy, ChunkQueue
from chunkrl.envs.episodes import EpisodeStats

Policy = ChunkPolicy


@dataclass
class Step:
    """One executed environment step (``episode``: the finished episode's statistics on its last step)."""

    observation: np.ndarray
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_observation: np.ndarray
    info: dict
    episode: dict[str, float] | None = None

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class ChunkExecutor:
    """Runs action chunks in an environment, ``execute_horizon`` actions per query.

    Args:
        env: a gymnasium environment with flat Box observations and actions.
        execute_horizon: actions of each chunk executed before re-planning (None: the whole chunk).
        seed: seed of the first reset (later resets continue the environment's generator).
        history: observations the policy reads (1: the current one only).
        temporal_ensemble: ACT's temporal ensembling weight m (query every step, average the running chunks'
            actions for this step); None: off.
    """

    def __init__(
        self,
        env: gymnasium.Env,
        execute_horizon: int | None = None,
        seed: int | None = None,
        history: int = 1,
        temporal_ensemble: float | None = None,
    ):
        self.env = env
        self.queue = ChunkQueue(env.action_space.shape[-1], execute_horizon, history, temporal_ensemble)
        self.stats = EpisodeStats()
        self.observation, _ = env.reset(seed=seed)
        self.queue.observe(self.observation)
        self.at_episode_start = True

    @property
    def queries(self) -> int:
        """Chunks asked for so far."""
        return self.queue.queries

    def reset(self) -> np.ndarray:
        """Start a new episode and clear the queue and the history."""
        self.queue.reset()
        self.stats = EpisodeStats()
        self.observation, _ = self.env.reset()
        self.queue.observe(self.observation)
        self.at_episode_start = True
        return self.observation

    def step(self, policy: Policy) -> Step:
        """Execute one action (querying ``policy`` first if the queue is empty)."""
        action = self.queue.action(policy)
        next_observation, reward, terminated, truncated, info = self.env.step(action)
        step = Step(self.observation, action, float(reward), bool(terminated), bool(truncated), next_observation, info)
        self.at_episode_start = False
        finished = self.stats.add(step.reward, 1, step.done, info.get("success", False), info.get("diverged", False))
        if step.done:
            step.episode = finished[0]
            self.reset()
        else:
            self.observation = next_observation
            self.queue.observe(next_observation)
        return step

    def run_episode(self, policy: Policy) -> dict[str, float]:
        """Run one whole episode from a fresh start; its statistics (return, length, success, diverged)."""
        if not self.at_episode_start:
            self.reset()
        while True:
            step = self.step(policy)
            if step.done:
                return step.episode


class UniformRandomPolicy:
    """Uniform random actions within a Box action space, one per query (a chunk of length 1), so the
    executor draws a fresh action every step: the warm-up of the paper's RLPD-family online loop.

    Args:
        action_space: the environment's Box action space (finite bounds).
        seed: seed of the policy's own random generator (its state is saved with checkpoints).
    """

    def __init__(self, action_space: gymnasium.spaces.Box, seed: int = 0):
        self.low = np.asarray(action_space.low, np.float32).reshape(-1)
        self.high = np.asarray(action_space.high, np.float32).reshape(-1)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError("random warm-up needs finite action bounds; use --warmup policy for this environment")
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: np.ndarray, history_valid: np.ndarray | None = None) -> np.ndarray:
        return self.rng.uniform(self.low, self.high)[None].astype(np.float32)

    def rng_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def evaluate(
    executor: ChunkExecutor, policy: Policy, episodes: int, stop: Callable[[], bool] | None = None
) -> dict[str, float] | None:
    """Success rate, mean return and mean length over ``episodes`` episodes; None when ``stop()`` turns true
    before an episode (a stop signal: the run checkpoints now rather than after the whole evaluation)."""
    results = []
    for _ in range(episodes):
        if stop is not None and stop():
            return None
        results.append(executor.run_episode(policy))
    return {
        "success": float(np.mean([r["success"] for r in results])),
        "return": float(np.mean([r["return"] for r in results])),
        "length": float(np.mean([r["length"] for r in results])),
        "episodes": float(episodes),
    }


class ChunkStepEnv(gymnasium.Wrapper):
    """One step of this environment is one decision: a whole chunk ``[h, A]`` run open loop.

    ``step(chunk)`` executes the first ``execute_horizon`` actions of the chunk (all of them by
    default), stopping early when the episode ends, and returns the next observation, the chunk's
    reward ``Σ_{i<τ} γ^i r_i``, terminated, truncated and an info with the executed length ``tau``, the
    undiscounted reward ``reward_sum`` and ``success``. Wrapped in a gymnasium vector environment it
    lets every environment make one decision per vector step, whatever the chunks' lengths.
    """

    def __init__(self, env: gymnasium.Env, horizon: int, gamma: float, execute_horizon: int | None = None):
        super().__init__(env)
        self.horizon, self.gamma = horizon, gamma
        self.execute_horizon = execute_horizon or horizon
        low, high = env.action_space.low, env.action_space.high
        shape = (horizon, *env.action_space.shape)
        self.action_space = gymnasium.spaces.Box(
            np.broadcast_to(low, shape), np.broadcast_to(high, shape), shape, env.action_space.dtype
        )

    def step(self, chunk):
        chunk = np.asarray(chunk).reshape(self.horizon, -1)
        total, undiscounted, tau = 0.0, 0.0, 0
        terminated = truncated = False
        info: dict = {}
        for action in chunk[: self.execute_horizon]:
            observation, reward, terminated, truncated, info = self.env.step(action)
            total += self.gamma**tau * float(reward)
            undiscounted += float(reward)
            tau += 1
            if terminated or truncated:
                break
        info = {
            **info,
            "tau": tau,
            "reward_sum": undiscounted,
            "success": bool(info.get("success", False)),
            "diverged": bool(info.get("diverged", False)),
        }
        return observation, total, terminated, truncated, info
