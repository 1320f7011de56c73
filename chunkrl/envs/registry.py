"""Environments by name: OGBench single-task manipulation, with the paper's sparse-reward option."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np

from chunkrl.envs.ogbench import OGBenchTask, parse_task


class SparseReward(gymnasium.RewardWrapper):
    """The paper's sparse reward: -1 on every step that is not a full success, 0 on success."""

    def reward(self, reward: float) -> float:
        return -1.0 if reward != 0.0 else 0.0


ALOHA_PREFIX = "aloha-"


def is_aloha(env_name: str) -> bool:
    return env_name.startswith(ALOHA_PREFIX)


NO_ENV = "none"
"""The environment name of offline runs on a dataset with no simulator here (LeRobot, robomimic)."""


def env_domain(env_name: str) -> str:
    """The family's domain: ``aloha``, ``none``, or the OGBench domain (``puzzle-3x3``, ``scene``, ...)."""
    if env_name == NO_ENV:
        return NO_ENV
    if is_aloha(env_name):
        from chunkrl.envs.aloha import TASKS

        if env_name not in TASKS:
            raise ValueError(f"unknown ALOHA task '{env_name}'; available: {', '.join(TASKS)}")
        return "aloha"
    return parse_task(env_name).domain


def make_env(
    env_name: str,
    sparse: bool = False,
    obs_mode: str = "state",
    max_episode_steps: int | None = None,
    state_keys: tuple[str, ...] = (),
    hold_success: bool = False,
) -> gymnasium.Env:
    """An environment by name: an ALOHA task (``aloha-transfer-cube``, ``aloha-insertion``; ``obs_mode``
    state or pixels; ``state_keys`` the parts of its state, default all) or an OGBench single-task
    environment (``...-singletask-taskN-v0``). Episodes are cut at ``max_episode_steps`` when given (else
    the task's own limit). ``hold_success`` (ALOHA): a success pays the top reward for every step left.

    Unknown names raise ``ValueError`` listing close matches.
    """
    if is_aloha(env_name):
        from chunkrl.envs.aloha import AlohaEnv

        if sparse:
            raise ValueError("--sparse is the OGBench tasks' reward; the ALOHA tasks keep their staged reward (0-4)")
        from chunkrl.envs.aloha import MAX_EPISODE_STEPS, STATE_PARTS

        env_domain(env_name)
        steps = MAX_EPISODE_STEPS if max_episode_steps is None else max_episode_steps
        parts = tuple(state_keys) or STATE_PARTS
        return AlohaEnv(env_name, obs_mode, steps, state_parts=parts, hold_success=hold_success)
    if hold_success:
        raise ValueError("--hold-success is for the ALOHA tasks (whose episodes end at success); OGBench's do not")
    if obs_mode != "state":
        raise ValueError("--obs-mode pixels is for the ALOHA tasks; the OGBench tasks here give states")
    env = make_task_env(parse_task(env_name), sparse)
    return env if max_episode_steps is None else gymnasium.wrappers.TimeLimit(env, max_episode_steps)


def run_env(config) -> gymnasium.Env:
    """A fresh environment of a run, as its config (a ``TrainConfig``) names it, in the environment's own units."""
    c = config
    return make_env(c.env, c.sparse, c.obs_mode, c.max_episode_steps, c.state_keys, c.hold_success)


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
    if not isinstance(env.observation_space, gymnasium.spaces.Box):
        raise ValueError(
            "chunkrl's agents read flat state vectors, and this environment gives "
            f"{type(env.observation_space).__name__} observations (pixels). Train with --obs-mode state."
        )
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
