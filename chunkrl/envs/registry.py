"""Environments by name: OGBench single-task manipulation, with the paper's sparse-reward option."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np

from chunkrl.data.sources.ogbench import OGBenchTask, parse_task


class SparseReward(gymnasium.RewardWrapper):
    """The paper's sparse reward: -1 on every step that is not a full success, 0 on success."""

    def reward(self, reward: float) -> float:
        return -1.0 if reward != 0.0 else 0.0


def make_env(env_name: str, sparse: bool = False) -> gymnasium.Env:
    """An OGBench single-task environment (``...-singletask-taskN-v0``) as a gymnasium.Env.

    Unknown names raise ``ValueError`` listing close matches.
    """
    task = parse_task(env_name)
    return make_task_env(task, sparse)


def make_task_env(task: OGBenchTask, sparse: bool = False) -> gymnasium.Env:
    """The environment of an already parsed task."""
    # gymnasium warns (on every reset) that OGBench's float64 bounds are cast to float32: harmless.
    warnings.filterwarnings("ignore", message=".*precision lowered.*")
    import ogbench.manipspace  # noqa: F401  (registers the environments)

    env = gymnasium.make(task.gym_id)
    if sparse:
        env = SparseReward(env)
    return env


def space_dims(env: gymnasium.Env) -> tuple[int, int]:
    """(observation size, action size) of a flat Box environment."""
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
