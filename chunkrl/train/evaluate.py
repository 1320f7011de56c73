"""Evaluating a saved checkpoint in fresh environments (``chunkrl eval``)."""

from __future__ import annotations

import functools
from pathlib import Path

from chunkrl.config import load_config
from chunkrl.envs.executor import ChunkExecutor, evaluate
from chunkrl.envs.normalized import in_agent_units
from chunkrl.envs.registry import run_env, space_dims
from chunkrl.train import checkpoint as ckpt
from chunkrl.train.checkpoint import agent_from_checkpoint, checkpoint_normalizer
from chunkrl.train.device import resolve_device, seed_everything


def evaluate_checkpoint(
    path: Path,
    episodes: int | None = None,
    execute_horizon: int | None = None,
    device: str = "auto",
    deterministic: bool | None = None,
) -> dict:
    """Evaluate a checkpoint (or a run's latest one) in fresh environments with sampled chunks or the agent's
    deterministic chunk; None: as the run's own evaluations acted (its ``eval_acting``: deterministic for
    chunk-bc, sampled for the others and for runs saved before the option existed)."""
    checkpoint = ckpt.resolve_checkpoint(path)
    ckpt.verify_checkpoint(checkpoint)
    config = load_config(checkpoint / "config.yaml")
    raw_env = run_env(config)
    dims = space_dims(raw_env)
    env = in_agent_units(raw_env, checkpoint_normalizer(checkpoint, *dims))
    agent = agent_from_checkpoint(checkpoint, config, *dims, resolve_device(device))
    seed_everything(config.seed + 20_000)
    horizon, history = execute_horizon or config.execute_horizon, agent.history_length
    executor = ChunkExecutor(env, horizon, config.seed + 20_000, history, config.temporal_ensemble)
    if deterministic is None:
        deterministic = config.eval_acting == "deterministic"
    policy = functools.partial(agent.act, deterministic=deterministic)
    results = evaluate(executor, policy, episodes or config.eval_episodes)
    acting = "deterministic" if deterministic else "sampled"
    return {"checkpoint": str(checkpoint), "env": config.env, "agent": config.agent, "acting": acting, **results}
