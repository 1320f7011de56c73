"""Open-loop chunk execution: one object serves online collection and evaluation.

The agent is queried when the action queue is empty; ``execute_horizon`` (k <= h) actions of each
chunk are run open loop before the next query; the end of an episode clears the queue. With
``history = T > 1`` the executor keeps the last T observations of the episode (every step, not only
query steps) and queries ``policy(history [T, obs], history_valid=[T])``, zero-padding and marking
invalid the positions before the episode's start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import numpy as np

Policy = Callable[..., np.ndarray]  # observation [obs_dim] (or history [T, obs_dim], history_valid=[T]) -> [h, A]


def stacked_history(history, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last observations of an episode as ``[length, obs]``, zero-padded before the episode's start,
    and the validity of each position (1 for a real observation)."""
    padding = length - len(history)
    stacked = np.zeros((length, *np.shape(history[-1])), np.float32)
    stacked[padding:] = np.stack(history)
    return stacked, (np.arange(length) >= padding).astype(np.float32)


@dataclass
class Step:
    """One executed environment step."""

    observation: np.ndarray
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_observation: np.ndarray
    info: dict

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
    """

    def __init__(
        self, env: gymnasium.Env, execute_horizon: int | None = None, seed: int | None = None, history: int = 1
    ):
        if execute_horizon is not None and execute_horizon < 1:
            raise ValueError(f"execute_horizon must be >= 1, got {execute_horizon}")
        self.env = env
        self.execute_horizon = execute_horizon
        self.history_length = history
        self.history: deque[np.ndarray] = deque(maxlen=history)
        self.queue: deque[np.ndarray] = deque()
        self.queries = 0
        self.observation, _ = env.reset(seed=seed)
        self.history.append(self.observation)
        self.at_episode_start = True

    def reset(self) -> np.ndarray:
        """Start a new episode and clear the queue and the history."""
        self.queue.clear()
        self.observation, _ = self.env.reset()
        self.history.clear()
        self.history.append(self.observation)
        self.at_episode_start = True
        return self.observation

    def query(self, policy: Policy) -> np.ndarray:
        """The policy's chunk [h, A] for the current observation (or history)."""
        if self.history_length == 1:
            return np.asarray(policy(self.observation))
        stacked, valid = stacked_history(self.history, self.history_length)
        return np.asarray(policy(stacked, history_valid=valid))

    def step(self, policy: Policy) -> Step:
        """Execute one action (querying ``policy`` first if the queue is empty)."""
        if not self.queue:
            chunk = self.query(policy).reshape(-1, self.env.action_space.shape[-1])
            self.queue.extend(chunk[: self.execute_horizon or len(chunk)])
            self.queries += 1
        action = self.queue.popleft()
        next_observation, reward, terminated, truncated, info = self.env.step(action)
        step = Step(self.observation, action, float(reward), bool(terminated), bool(truncated), next_observation, info)
        self.at_episode_start = False
        if step.done:
            self.reset()
        else:
            self.observation = next_observation
            self.history.append(next_observation)
        return step

    def run_episode(self, policy: Policy) -> tuple[float, int, bool]:
        """Run one whole episode from a fresh start: (return, length, success)."""
        if not self.at_episode_start:
            self.reset()
        total, length = 0.0, 0
        while True:
            step = self.step(policy)
            total += step.reward
            length += 1
            if step.done:
                return total, length, bool(step.info.get("success", False))


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


def evaluate(executor: ChunkExecutor, policy: Policy, episodes: int) -> dict[str, float]:
    """Success rate, mean return and mean length over ``episodes`` episodes."""
    results = [executor.run_episode(policy) for _ in range(episodes)]
    returns, lengths, successes = (np.array(x, dtype=np.float64) for x in zip(*results, strict=True))
    return {
        "success": float(successes.mean()),
        "return": float(returns.mean()),
        "length": float(lengths.mean()),
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
