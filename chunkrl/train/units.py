"""The run's units: the normaliser it fits or restores, checked against what the agent can emit, and recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from chunkrl.agents.registry import METHODS
from chunkrl.config import TrainConfig
from chunkrl.data.normalize import UNIT_TOLERANCE, Normalizer, finite_bounds, fit_normalizer, reach, unit_bounds
from chunkrl.data.trajectories import DatasetError, Trajectories
from chunkrl.envs.registry import NO_ENV, env_domain, space_dims
from chunkrl.train.checkpoint import checkpoint_normalizer


def run_normalizer(
    config: TrainConfig, store: Trajectories | None, env, source: Path | None, console, resuming: bool = False
) -> Normalizer:
    """The run's normaliser: the one ``source`` (the checkpoint resumed, or --init-from's) saved, else fitted
    on the dataset (before any online step) with the run's modes; checked against what the agent can emit
    (except when resuming: a run goes on in the units it started in)."""
    if env is not None:
        observation_dim, action_dim = space_dims(env)
    else:
        observation_dim, action_dim = store.observation_dim, store.action_dim
    unit_actions = METHODS[config.agent].agent.unit_actions
    space = getattr(env, "action_space", None)
    low, high = (None, None) if space is None else (space.low.reshape(-1), space.high.reshape(-1))
    if source is not None:
        normalizer = checkpoint_normalizer(source, observation_dim, action_dim)
        if unit_actions and not resuming:  # weights trained in other units must still reach this data
            check_reachable(normalizer, store, low, high)
        console.print(f"normalisation from {source}: {describe(normalizer)}")
        return normalizer
    action_mode = config.action_norm
    if not unit_actions:
        if action_mode not in ("auto", "none"):
            raise ValueError(
                f"--action-norm {action_mode}: {config.agent} normalises action chunks in its tokenizer (quantiles "
                "of the demonstrations); leave --action-norm at auto or none"
            )
        action_mode = "none"
    domain = env_domain(config.env)
    normalizer = fit_normalizer(
        action_mode, config.obs_norm, store, observation_dim, action_dim, low, high, domain not in ("aloha", NO_ENV)
    )
    if unit_actions:
        check_reachable(normalizer, store, low, high)
    console.print(f"normalisation: {describe(normalizer)}")
    return normalizer


def check_reachable(normalizer: Normalizer, store: Trajectories | None, low, high) -> None:
    """With ``--action-norm none`` the agent's [-1, 1] must be where the data and the environment's actions are."""
    if normalizer.action_mode != "none":
        return
    largest = reach(None if store is None else store.actions[: store.size])
    if largest > 1.0 + UNIT_TOLERANCE:
        raise DatasetError(
            f"the dataset's actions reach {largest:.4g}, outside [-1, 1], which this agent cannot emit (tanh, clip); "
            "use --action-norm min_max or quantile (or auto) to map them into its range"
        )
    if finite_bounds(low, high) and not unit_bounds(low, high):
        raise DatasetError(
            f"the environment's action bounds are [{low.min():.4g}, {high.max():.4g}] (per dimension), not [-1, 1], "
            "which this agent emits; use --action-norm bounds (or auto) to map [-1, 1] onto them"
        )


def describe(normalizer: Normalizer) -> str:
    modes = {
        "none": "as they are",
        "min_max": "dataset min/max -> [-1, 1]",
        "quantile": "dataset 1st/99th percentiles -> [-1, 1], beyond clipped",
        "bounds": "environment bounds -> [-1, 1]",
    }
    observations = "mean/std of the dataset" if normalizer.observation_mode == "mean_std" else "as they are"
    return f"actions {modes[normalizer.action_mode]}, observations {observations}"


def record_normalization(config: TrainConfig, normalizer: Normalizer) -> TrainConfig:
    """The config with the modes the run uses (``auto`` resolved), saved with it."""
    return dataclasses.replace(config, action_norm=normalizer.action_mode, obs_norm=normalizer.observation_mode)


def report_clipped(clipped: int, normalizer: Normalizer, console) -> None:
    """Say how many dataset action numbers fell outside the normalised range and were clipped."""
    if clipped:
        console.print(
            f"[yellow]normalisation ({normalizer.action_mode}): {clipped} action values of the dataset lay outside "
            "the mapped range and were clipped to [-1, 1][/]"
        )
