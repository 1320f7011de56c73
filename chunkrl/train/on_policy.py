"""The on-policy schedule of the training loop: rollout -> chunk-level GAE -> epochs of minibatches.

Each rollout makes ``chunks_per_update`` decisions in ``num_envs`` environments stepped together
through gymnasium's vector API; each decision is one chunk run open loop (``ChunkStepEnv``), so the
environment step counter advances by the chunks' executed lengths ``τ``. Logging, evaluation,
checkpoints, stop signals and resume are the ``Trainer``'s, shared with the off-policy schedule.
A resumed run starts a fresh rollout with fresh episodes (a half-collected rollout is not saved).

Under ``torchrun`` every rank collects its own rollouts (its environments are seeded apart) and the
gradients are averaged by DistributedDataParallel; the step counter is the sum over ranks and a KL stop
on any rank stops every rank's epochs, so that all ranks make the same number of updates; rank 0 alone
logs, evaluates and checkpoints.
"""

from __future__ import annotations

from collections.abc import Generator

import gymnasium
import numpy as np
import torch

from chunkrl.data.rollouts import Rollout, RolloutBatch
from chunkrl.envs.episodes import EpisodeStats
from chunkrl.envs.executor import ChunkStepEnv
from chunkrl.envs.normalized import in_agent_units
from chunkrl.envs.registry import run_env
from chunkrl.train import distributed


def make_vector_env(config, seed: int, normalizer=None) -> gymnasium.vector.VectorEnv:
    """``num_envs`` copies of the run's environment (in the agent's units), each stepping one chunk per call."""

    def build():
        env = in_agent_units(
            run_env(config),
            normalizer,
        )
        return ChunkStepEnv(env, config.actor_chunk, config.discount, config.execute_horizon)

    envs = gymnasium.vector.SyncVectorEnv(
        [build] * config.ppo.num_envs, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP
    )
    envs.reset(seed=seed)
    return envs


def _from_step(info: dict, key: str, done: np.ndarray) -> np.ndarray:
    """A per-environment step value; environments that just reset report it in ``final_info``."""
    values = np.asarray(info[key]).copy() if key in info else None
    if done.any():
        final = np.asarray(info["final_info"][key])
        values = final if values is None else np.where(done, final, values)
    return values


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect value function, 0 no better than a constant."""
    variance = returns.var()
    return float(1.0 - (returns - values).var() / variance) if variance > 0 else float("nan")


def _tensor(values, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=dtype, device=device)


def on_policy_phase(trainer, progress) -> Generator[RolloutBatch, dict[str, torch.Tensor], None]:
    c, agent, counters = trainer.config, trainer.agent, trainer.counters
    p = agent.config
    if counters.online_step >= c.online_steps:
        return
    task = progress.add_task(
        f"on-policy{trainer.label}", total=c.online_steps, completed=counters.online_step, status=""
    )
    envs = make_vector_env(c, c.seed + 1 + 1000 * trainer.rank + counters.episodes, trainer.normalizer)
    observations, _ = envs.reset()
    rows = p.chunks_per_update // p.num_envs
    episodes = EpisodeStats(p.num_envs)
    diverged_since_log = 0  # episodes whose physics diverged (ended as failures, without bootstrapping)
    trainer.restart_rate_clock()
    shuffle = torch.Generator().manual_seed(c.seed + 7 + counters.online_updates)
    try:
        while counters.online_step < c.online_steps:
            rollout, stats, advance = None, {"chunk_reward": [], "tau": []}, 0
            for _ in range(rows):
                obs = torch.as_tensor(observations, dtype=torch.float32, device=trainer.device)
                encoded, log_pi, value, chunks = agent.collect(obs)
                if rollout is None:
                    rollout = Rollout(rows, p.num_envs, obs.shape[1], encoded.shape[1:], encoded.dtype, trainer.device)
                observations, reward, terminated, truncated, info = envs.step(chunks)
                done = terminated | truncated
                tau = _from_step(info, "tau", done)
                bootstrap = observations.copy()
                if done.any():
                    bootstrap[done] = np.stack(info["final_obs"][done])
                next_value = agent.value(_tensor(bootstrap, trainer.device))
                rollout.add(
                    observations=obs,
                    encoded=encoded,
                    log_probs=log_pi,
                    values=value,
                    next_values=next_value,
                    rewards=_tensor(reward, trainer.device),
                    taus=_tensor(tau, trainer.device, torch.long),
                    terminals=_tensor(terminated, trainer.device, torch.bool),
                    ends=_tensor(done, trainer.device, torch.bool),
                )
                stats["chunk_reward"].append(reward)
                stats["tau"].append(tau)
                executed = distributed.total(int(tau.sum()))  # all ranks share one step budget
                counters.online_step += executed
                advance += executed
                success, diverged = _from_step(info, "success", done), _from_step(info, "diverged", done)
                for row in episodes.add(_from_step(info, "reward_sum", done), tau, done, success, diverged):
                    counters.episodes += 1
                    diverged_since_log += int(row["diverged"])
                    trainer.logger.log("episodes", counters.global_step, row, "online")
            batch = agent.prepare_rollout(rollout.batch(c.discount, p.gae_lambda), counters.online_step - advance)
            metrics, epochs = None, 0
            for _ in range(p.epochs):
                epochs += 1
                order = torch.randperm(len(batch), generator=shuffle).to(trainer.device)
                stop = False
                for start in range(0, len(batch), p.minibatch_size):
                    metrics = yield batch.index(order[start : start + p.minibatch_size])
                    trainer.track_nonfinite(metrics["loss/total"])
                    counters.online_updates += 1
                    if p.desired_kl is not None:  # the ranks' mean KL, so that all keep one rate
                        agent.adapt_learning_rate(distributed.mean(float(metrics["ppo/approx_kl"])))
                    stop = distributed.any_rank(agent.stop_epochs(metrics))  # every rank makes the same updates
                    if stop:
                        break
                if stop:
                    break
            rollout_values = {
                "ppo/chunk_reward": float(np.mean(stats["chunk_reward"])),
                "ppo/tau": float(np.mean(stats["tau"])),
                "ppo/explained_variance": explained_variance(batch.values, batch.returns),
                "ppo/epochs": float(epochs),
                "episodes/diverged": float(diverged_since_log),
                "tokenizer/invalid_decodes": float(agent.invalid_decodes),
            }
            if trainer.end_step(metrics, "online", progress, task, advance, rollout_values):  # the shared cadence
                agent.invalid_decodes = diverged_since_log = 0
    finally:
        envs.close()
    trainer.finish_phase("online")
