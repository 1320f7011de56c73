"""An environment seen in the agents' units: normalised observations out, [-1, 1] actions in.

The statistics come from the training data (``data/normalize.py``); this wrapper only applies them, so
that collection, evaluation and the online replay all live in the same units as the dataset the agent
trained on. It knows nothing about networks or files.
"""

from __future__ import annotations

from typing import Protocol

import gymnasium
import numpy as np


class UnitMap(Protocol):
    """What the wrapper needs of a normaliser."""

    action_mode: str
    observation_mode: str

    def normalize_observations(self, observations: np.ndarray) -> np.ndarray: ...

    def denormalize_actions(self, actions: np.ndarray) -> np.ndarray: ...


class NormalizedEnv(gymnasium.Wrapper):
    """``env`` taking actions in [-1, 1] (mapped to its own units before each step) and giving normalised
    observations. A mode ``none`` leaves that side as it is."""

    def __init__(self, env: gymnasium.Env, normalizer: UnitMap):
        super().__init__(env)
        self.normalizer = normalizer
        if normalizer.action_mode != "none":
            shape = env.action_space.shape
            self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape, np.float32)
        if normalizer.observation_mode != "none":
            shape = env.observation_space.shape
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape, np.float32)

    def _observation(self, observation):
        if self.normalizer.observation_mode == "none":
            return observation
        return self.normalizer.normalize_observations(observation)

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self._observation(observation), info

    def step(self, action):
        if self.normalizer.action_mode != "none":
            action = self.normalizer.denormalize_actions(np.clip(action, -1.0, 1.0))
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(observation), reward, terminated, truncated, info


def in_agent_units(env: gymnasium.Env, normalizer: UnitMap | None) -> gymnasium.Env:
    """``env`` wrapped by ``normalizer``, or as it is when there is none or it changes nothing."""
    if normalizer is None or (normalizer.action_mode == "none" and normalizer.observation_mode == "none"):
        return env
    return NormalizedEnv(env, normalizer)
