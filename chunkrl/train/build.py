"""Building a Trainer from a resolved config: environment, dataset, units, agent, sampler; restoring a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import torch

from chunkrl.agents.registry import METHODS, build_agent
from chunkrl.config import TrainConfig, run_dict, save_config
from chunkrl.data.catalog import load_dataset
from chunkrl.data.chunks import ChunkSampler, ChunkSpec, MixedChunkSampler
from chunkrl.data.trajectories import Trajectories
from chunkrl.envs.executor import ChunkExecutor, UniformRandomPolicy
from chunkrl.envs.normalized import in_agent_units
from chunkrl.envs.registry import NO_ENV, run_env, space_dims
from chunkrl.nets.noise import GeneratorNoise
from chunkrl.train import checkpoint as ckpt
from chunkrl.train.device import resolve_device, seed_everything
from chunkrl.train.logging import RunLogger, SilentLogger
from chunkrl.train.trainer import Trainer
from chunkrl.train.units import record_normalization, report_clipped, run_normalizer


def offset_rewards(env, offset: float):
    """``env`` with ``offset`` added to every reward it returns (the training environment of a method that
    declares a ``reward_offset``)."""
    return gymnasium.wrappers.TransformReward(env, lambda reward: reward + offset)


def chunk_spec(config: TrainConfig) -> ChunkSpec:
    """The chunk transitions a run trains on: the critic's horizon and backup, batches carrying the longer of the
    critic's horizon and the actor's chunk."""
    length = max(config.critic_horizon, config.actor_chunk)
    return ChunkSpec(config.critic_horizon, config.discount, config.boundary, action_length=length)


def build_trainer(
    config: TrainConfig,
    run_dir: Path,
    checkpoint: Path | None,
    restart: bool = False,
    own_noise: bool = False,
    rank: int = 0,
) -> Trainer:
    """Everything a run needs; restores the state of ``checkpoint`` when resuming. ``restart``: the run
    directory holds a run that never wrote a checkpoint, whose log rows are dropped. ``own_noise``: the
    agent draws from a generator of its own (checkpointed) instead of torch's global one."""
    device = resolve_device(config.device)
    seed_everything(config.seed + 1000 * rank)
    offline_only = config.env == NO_ENV  # a dataset with no simulator here: no evaluation, no online phase
    env = base_env = None if offline_only else run_env(config)
    counters = ckpt.read_counters(checkpoint) if checkpoint is not None else ckpt.Counters()
    resume_step = counters.global_step if checkpoint is not None else (0 if restart else None)
    logger = RunLogger(run_dir, config.tensorboard, config.wandb, run_dict(config)) if rank == 0 else SilentLogger()
    method = METHODS[config.agent]
    on_policy = method.schedule == "on_policy"  # rollouts from the environments: no dataset
    shared = config.replay == "shared"
    store = replay = sampler = None
    if not on_policy:
        store = load_dataset(config, env, config.online_steps if shared else 0, logger.console)
    data = None if store is None else {"transitions": store.size, "sha256": store.content_digest()}
    previous = previous_summary(run_dir / "summary.json", logger.console) if checkpoint is not None else {}
    check_same_data(previous.get("data"), data, run_dir)  # before the logger opens: a refusal changes no file
    logger.open(resume_step)
    observation_dim, action_dim = space_dims(env) if env is not None else (store.observation_dim, store.action_dim)
    tokenizer = None
    initial = ckpt.resolve_checkpoint(config.init_from) if checkpoint is None and config.init_from else None
    normalizer = run_normalizer(config, store, env, checkpoint or initial, logger.console, checkpoint is not None)
    config = record_normalization(config, normalizer)
    if rank == 0 and checkpoint is None:  # the run's config records the modes auto resolved to
        save_config(config, run_dir / "config.yaml")
    if store is not None:
        report_clipped(normalizer.apply_to(store), normalizer, logger.console)
    env = None if env is None else in_agent_units(env, normalizer)
    if method.reward_offset:  # declared by the method (DQC): training rewards only, evaluations keep the task's
        if store is not None:
            store.rewards[: store.size] += method.reward_offset
        env = None if env is None else offset_rewards(env, method.reward_offset)
    # the evaluations need an environment of their own when the run steps its training one (an off-policy online
    # phase); otherwise that one is only read (spaces, a dataset's relabelling) and serves them, which spares building
    # a second simulator (a second or so for an OGBench task): a seeded reset starts them from the same state
    steps_its_env = not on_policy and config.online_steps > 0
    eval_env = None if offline_only else in_agent_units(run_env(config) if steps_its_env else base_env, normalizer)
    if method.prepare_tokenizer is not None:  # declared by the method's registry entry
        space = env.action_space if env is not None else None
        tokenizer = method.prepare_tokenizer(config, action_dim, store, checkpoint or initial, logger.console, space)
    agent = build_agent(config, observation_dim, action_dim, device, tokenizer)
    if agent.needs_initial_weights and checkpoint is None and initial is None:
        raise ValueError(
            f"{config.agent} as configured fine-tunes a frozen pre-trained policy (e.g. ppo.residual_basis over a "
            "chunk-bc one): pass --init-from RUN_DIR_OR_CHECKPOINT of the run that trained it"
        )
    if own_noise:
        agent.noise = GeneratorNoise(config.seed + 30_000, device)
    spec = chunk_spec(config)
    history = agent.history_length
    if on_policy:
        pass  # rollouts come from the environments (train/on_policy.py): no sampler, no replay
    elif shared:
        replay = store
        sampler = ChunkSampler(store, spec, seed=config.seed, history=history, dataset_steps=store.size)
    else:
        replay = Trajectories(observation_dim, action_dim, max(config.online_steps, 1))
        offline = ChunkSampler(store, spec, seed=config.seed, history=history)
        online = ChunkSampler(replay, spec, seed=config.seed + 1, history=history, dataset_steps=0)
        sampler = MixedChunkSampler(offline, online)
    trainer = Trainer(
        config=config,
        run_dir=run_dir,
        agent=agent,
        normalizer=normalizer,
        store=store,
        dataset_size=store.size if store is not None else 0,
        replay=replay,
        sampler=sampler,
        env=env,
        eval_executor=None
        if eval_env is None
        else ChunkExecutor(eval_env, config.execute_horizon, config.seed + 10_000, history, config.temporal_ensemble),
        logger=logger,
        device=device,
        warmup_policy=UniformRandomPolicy(env.action_space, seed=config.seed + 2)
        if config.warmup == "random" and not on_policy and env is not None
        else None,
        schedule=method.schedule,
        rank=rank,
        data=data,
    )
    if checkpoint is not None:
        ckpt.load_weights(agent, checkpoint)
        trainer.counters = counters
        rng = ckpt.load_training_state(checkpoint, agent.optimizers())
        restore_rng_states(rng, trainer)
        online = ckpt.load_online_steps(checkpoint)
        if online is not None:
            replay.extend(online)
        trainer.evaluations = previous.get("evaluations", {})
        wall = previous.get("wall_seconds", 0.0)
        trainer.earlier_wall_seconds = float(wall) if isinstance(wall, int | float) and wall >= 0 else 0.0
    elif initial is not None:
        ckpt.verify_checkpoint(initial)
        ckpt.load_initial_weights(agent, initial, config.allow_partial_init, logger.console)
    if torch.distributed.is_initialized():
        if not method.data_parallel:
            parallel = ", ".join(name for name, m in METHODS.items() if m.data_parallel)
            raise ValueError(f"data-parallel training (torchrun) is for {parallel}; {config.agent} runs in one process")
        agent.distribute()
    return trainer


def previous_summary(path: Path, console) -> dict:
    """A run's summary.json before a resume (its evaluations and wall time so far); a missing or unreadable
    file (it is derived and never blocks a resume) gives none."""
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict) or not isinstance(summary.get("evaluations", {}), dict):
            raise ValueError("not a chunkrl summary (a JSON object with evaluations)")
        return summary
    except (OSError, ValueError) as error:
        console.print(f"[yellow]ignoring {path}: {error}; the resumed run writes a new one[/]")
        return {}


def check_same_data(before, now: dict | None, run_dir: Path) -> None:
    """A run resumes on the data it started on: its summary's digest of the training steps (when it recorded one)
    must equal the digest of the data loaded now."""
    recorded = before.get("sha256") if isinstance(before, dict) else None
    if not isinstance(recorded, str) or now is None or recorded == now["sha256"]:
        return
    raise ValueError(
        f"{run_dir} started on other training data than this resume loads: {before.get('transitions')} steps with "
        f"sha256 {recorded[:12]}... then, {now['transitions']} steps with sha256 {now['sha256'][:12]}... now "
        "(a dataset regenerated differently, or another --dataset-path). Resume it on the file it started on, or "
        "train the new data in a new run directory."
    )


def restore_rng_states(states: dict, trainer: Trainer) -> None:
    """Put back every random state a checkpoint saved: torch (and CUDA's, where both exist), the
    sampler's and the warm-up policy's."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if trainer.sampler is not None:
        trainer.sampler.set_rng_state(states["sampler"])
    if "noise" in states and isinstance(trainer.agent.noise, GeneratorNoise):
        trainer.agent.noise.set_state(states["noise"])
    if trainer.warmup_policy is not None and "warmup" in states:
        trainer.warmup_policy.set_rng_state(states["warmup"])
