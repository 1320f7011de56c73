"""Building the pieces of a run from its config: device, run directory, dataset, agent."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from chunkrl.agents import METHODS, Agent, PerDomain, agent_config
from chunkrl.config import TrainConfig
from chunkrl.data.generate import generate_dataset, official_settings
from chunkrl.data.normalize import FILE as NORMALIZATION_FILE
from chunkrl.data.normalize import UNIT_TOLERANCE, Normalizer, finite_bounds, fit_normalizer, reach, unit_bounds
from chunkrl.data.sources.ogbench import (
    OGBenchTask,
    cached_episode_counts,
    close_matches_hint,
    generated_dataset_path,
    load_single_task,
    parse_task,
)
from chunkrl.data.trajectories import DatasetError, Trajectories
from chunkrl.envs.registry import NO_ENV, env_domain, is_aloha, make_env, space_dims
from chunkrl.train.logging import generation_progress


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but PyTorch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_method(config: TrainConfig) -> TrainConfig:
    """Apply the method's defining settings (e.g. FQL is h = 1 without chunking) and its defaults for
    options left at None: the paper's per-domain values (QC-FQL's alpha, QC's N) for the task's domain,
    and run defaults (e.g. the RLPD family: no offline phase, symmetric replay, random warm-up; the offline
    diffusion methods: no online phase, truncate boundaries)."""
    if config.agent not in METHODS:
        raise ValueError(
            f"Unknown agent '{config.agent}'.{close_matches_hint(config.agent, tuple(METHODS))} "
            f"Available: {', '.join(METHODS)}."
        )
    method = METHODS[config.agent]
    domain = env_domain(config.env)
    section = agent_config(config)
    unset = {
        k: v.for_domain(domain) if isinstance(v, PerDomain) else v
        for k, v in method.defaults.items()
        if getattr(section, k) is None
    }
    settings = dataclasses.replace(section, **method.overrides, **unset)
    resolved = {method.section: settings}
    if method.horizon is not None:
        resolved["horizon"] = method.horizon
    if config.execute_horizon is None:  # e.g. a first-action critic re-plans every step
        resolved["execute_horizon"] = settings.execute_horizon_default()
    resolved.update({k: v for k, v in method.run_defaults.items() if getattr(config, k) is None})
    return dataclasses.replace(config, **resolved)


def new_run_dir(config: TrainConfig, run_dir: Path | None, runs_root: Path = Path("runs")) -> Path:
    """Create a fresh run directory; never reuse one that already holds something."""
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        seeds = f"seeds{'-'.join(map(str, config.seeds))}" if config.seeds else f"seed{config.seed}"
        run_dir = runs_root / config.env / f"{config.agent}-{seeds}-{stamp}"
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--run-dir {run_dir} is a file, not a directory; pass the path of a new directory.")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"The run directory {run_dir} already exists and is not empty; chunkrl never overwrites a run. "
            f"Continue it with `chunkrl train --resume {run_dir}`, or pass another --run-dir."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_run(run_dir)
    return run_dir


RUN_MARKER = ".chunkrl-run"
"""The file by which chunkrl knows a directory as a run it created (and so may resume and append to)."""


def mark_run(run_dir: Path) -> None:
    """Mark a directory chunkrl just created as its run."""
    marker = {"created_by": "chunkrl", "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (Path(run_dir) / RUN_MARKER).write_text(json.dumps(marker) + "\n")


def check_own_run(path: Path) -> None:
    """Refuse to resume (and so append to, truncate or replace files in) a directory chunkrl did not create:
    it must hold the run marker, or be a run from before markers, recognised by its checkpoints (its own, or
    its seeds' for a run of several seeds)."""
    path = Path(path)
    if (path / RUN_MARKER).is_file():
        return
    checkpoints = [
        *path.glob("checkpoints/step_*/model.safetensors"),
        *path.glob("seed_*/checkpoints/step_*/model.safetensors"),
    ]
    if checkpoints:
        mark_run(path)  # a run written before runs were marked: recognised by its checkpoints
        return
    raise ValueError(
        f"{path} is not a run directory chunkrl created (it has no {RUN_MARKER} marker and no checkpoints), so "
        "`--resume` will not train there: resuming appends to and truncates the logs in a run directory, and "
        f"the files in {path} may be yours. Start a new run instead, e.g. `chunkrl train --config "
        f"{path / 'config.yaml'} --run-dir NEW_DIR`."
    )


class RunDirectoryBusy(RuntimeError):
    """Another process is using the run directory."""


class RunDirectoryLock:
    """An exclusive lock on a run directory for as long as a process trains in it.

    ``<run>/.lock`` is locked with ``flock`` (released by the OS when the process dies, so a killed run
    never leaves a stale lock) and names its holder, so that a second ``train`` or ``train --resume``
    on the same directory stops with a clear error instead of interleaving logs and checkpoints.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.file = None

    def __enter__(self) -> RunDirectoryLock:
        import fcntl

        file = self.path.open("a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise RunDirectoryBusy(
                f"The run directory {self.path.parent} is in use by {holder}. Wait for that run to finish "
                "(or stop it with Ctrl-C, which writes a resumable checkpoint), then resume it."
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        file.flush()
        self.file = file
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the flock
            self.file = None


def dataset_file(config: TrainConfig, task: OGBenchTask, console: Console) -> Path:
    """The npz file to train on: explicit path, official directory, or the generated cache."""
    if config.dataset_path is not None:
        return Path(config.dataset_path).expanduser()
    if config.dataset_dir is not None:
        path = Path(config.dataset_dir).expanduser() / f"{task.dataset_name}.npz"
        if not path.exists():
            raise DatasetError(
                f"{path} does not exist: --dataset-dir must hold the official file {task.dataset_name}.npz. "
                f"Generate it with `chunkrl data generate {task.dataset_name} --out {path}`."
            )
        return path
    episodes = config.dataset_episodes
    cached = cached_episode_counts(task.dataset_name, config.cache_dir)
    if episodes is None:
        episodes = cached[-1] if cached else official_settings(task.dataset_name).episodes
    path = generated_dataset_path(task.dataset_name, episodes, config.cache_dir)
    if path.exists():
        return path
    if not config.generate_missing:
        raise DatasetError(
            f"The dataset {task.dataset_name} ({episodes} episodes) is not in the cache ({path}). "
            f"Generate it with `chunkrl data generate {task.dataset_name} --episodes {episodes}`, "
            "or pass --dataset-path / --dataset-dir to use existing files."
        )
    other_sizes = f" (cached sizes: {cached}; select one with --dataset-episodes)" if cached else ""
    console.print(
        f"[bold]Generating {task.dataset_name}[/] ({episodes} episodes, OGBench oracles) "
        f"into {path}; this happens once{other_sizes}."
    )
    settings = official_settings(task.dataset_name, episodes=episodes)
    with generation_progress(console) as report:
        generate_dataset(settings, path, workers=config.generate_workers, progress=report)
    return path


def load_dataset(config: TrainConfig, env, extra_capacity: int, console: Console) -> Trajectories:
    """The training dataset as single-task trajectories, with room for ``extra_capacity`` online steps:
    a LeRobot v3 folder or robomimic hdf5 file given with --dataset-path, the task's OGBench dataset, or
    for ALOHA the scripted demonstrations (generated on first use)."""
    from chunkrl.data.sources.lerobot import is_lerobot_dataset, read_lerobot
    from chunkrl.data.sources.robomimic import SUFFIXES as ROBOMIMIC_SUFFIXES
    from chunkrl.data.sources.robomimic import is_robomimic_file, read_robomimic

    given = Path(config.dataset_path).expanduser() if config.dataset_path is not None else None
    if given is not None and not given.exists():
        raise DatasetError(
            f"--dataset-path {given} does not exist. Pass an existing OGBench .npz, robomimic .hdf5 or LeRobot v3 "
            "folder, or make the OGBench file with `chunkrl data generate DATASET --out FILE`."
        )
    if given is not None and given.is_dir() and not is_lerobot_dataset(given):
        raise DatasetError(
            f"--dataset-path {given} is a folder but not a LeRobot v3 dataset (it has no meta/info.json). Pass a "
            "LeRobot v3 folder, an OGBench .npz file or a robomimic .hdf5 file."
        )
    if given is not None and given.is_file() and given.suffix not in (".npz", *ROBOMIMIC_SUFFIXES):
        raise DatasetError(
            f"--dataset-path {given} is neither an OGBench .npz file, a robomimic .hdf5/.h5 file nor a LeRobot v3 "
            "folder (the folder that holds meta/info.json)"
        )
    if given is not None and is_lerobot_dataset(given):
        path, store = given, read_lerobot(given, config.state_keys, config.reward_from, extra_capacity)
    elif given is not None and is_robomimic_file(given):
        path, store = given, read_robomimic(given, config.state_keys, extra_capacity)
    elif env is None:
        raise DatasetError(f"--env none trains on a LeRobot folder or a robomimic file; {given} is neither")
    elif is_aloha(config.env):
        from chunkrl.data.aloha_scripted import load_scripted

        path = aloha_dataset_file(config, console)
        store = load_scripted(path, extra_capacity)
    else:
        task = parse_task(config.env)
        path = dataset_file(config, task, console)
        store = load_single_task(path, task, env, config.sparse, extra_capacity=extra_capacity)
    console.print(f"dataset {path}: {store.size} transitions in {store.num_trajectories} trajectories")
    if env is not None:
        check_dimensions(store, env, path)
    check_lengths(store, config, path, console)
    return store


def check_lengths(store: Trajectories, config: TrainConfig, path: Path, console) -> None:
    """Trajectories shorter than the chunk give chunks cut short: said, and refused where no chunk would be a
    TD sample (``mask`` leaves every cut chunk out of the TD loss)."""
    if config.boundary is None:  # not a training run (e.g. `chunkrl data export`): no chunks are cut
        return
    ends = np.flatnonzero(store.ends[: store.size])
    lengths = np.diff(np.concatenate([[-1], ends]))
    short = int((lengths < config.horizon).sum())
    if not short:
        return
    if short == len(lengths) and config.boundary == "mask":
        raise DatasetError(
            f"{path}: every trajectory is shorter than the horizon {config.horizon} (longest {lengths.max()} steps), "
            "so with --boundary mask no chunk is a TD sample. Use a smaller --horizon or --boundary truncate."
        )
    console.print(
        f"[yellow]{path}: {short} of {len(lengths)} trajectories are shorter than the horizon {config.horizon} "
        f"(shortest {lengths.min()} steps); their chunks are cut short ({config.boundary} mode)[/]"
    )


def check_dimensions(store: Trajectories, env, path: Path) -> None:
    """The dataset's observation and action sizes must be the environment's."""
    observation, action = space_dims(env)
    if (store.observation_dim, store.action_dim) != (observation, action):
        raise DatasetError(
            f"{path} has observations of {store.observation_dim} and actions of {store.action_dim} numbers, the "
            f"environment {observation} and {action}. Pick the matching --env (or --env none to train offline "
            "without one), or --state-keys to choose the observation features."
        )


ALOHA_EPISODES = 50
"""Scripted episodes generated by default (the ACT paper's dataset size)."""


def aloha_dataset_file(config: TrainConfig, console: Console) -> Path:
    """The scripted demonstrations of an ALOHA task: explicit path, or the cache (generated if missing)."""
    from chunkrl.data.aloha_scripted import DATASETS

    if config.dataset_path is not None:
        return Path(config.dataset_path).expanduser()
    names = [name for name, env in DATASETS.items() if env == config.env]
    if not names:
        raise DatasetError(
            f"chunkrl has no scripted demonstrations for {config.env}; pass --dataset-path, or train chunk-ppo, "
            "which needs no dataset"
        )
    episodes = config.dataset_episodes or ALOHA_EPISODES
    path = generated_dataset_path(names[0], episodes, config.cache_dir)
    if path.exists():
        return path
    if not config.generate_missing:
        raise DatasetError(
            f"{path} is not in the cache; generate it with `chunkrl data generate {names[0]} --episodes {episodes}`"
        )
    console.print(f"[bold]Generating {names[0]}[/] into the cache; this happens once.")
    generate_scripted_dataset(names[0], path, episodes, console)
    return path


def generate_scripted_dataset(
    name: str, out: Path, episodes: int, console: Console, seed: int = 0, overwrite: bool = False
) -> dict:
    """Scripted ALOHA demonstrations into ``out`` with a progress bar; says the script's success rate."""
    from chunkrl.data.aloha_scripted import generate_scripted

    console.print(f"Generating {name}: {episodes} successful scripted episodes -> {out}")
    with generation_progress(console) as report:
        counts = generate_scripted(
            name, out, episodes, seed, overwrite=overwrite, progress=lambda ok, _: report(ok, episodes)
        )
    console.print(
        f"[green]wrote[/] {out}: {counts['episodes']} episodes, {counts['steps']} steps; the script succeeded in "
        f"{counts['episodes']} of {counts['attempts']} attempts ({counts['success_rate']:.0%})"
    )
    return counts


def build_agent(
    config: TrainConfig, observation_dim: int, action_dim: int, device: torch.device, tokenizer=None
) -> Agent:
    """The agent of ``config.agent`` (after ``resolve_method``) on ``device``; agents that declare
    ``needs_tokenizer`` get ``tokenizer``."""
    method = METHODS[config.agent]
    extra = {"tokenizer": tokenizer} if getattr(method.agent, "needs_tokenizer", False) else {}
    agent = method.agent(
        observation_dim, action_dim, config.horizon, agent_config(config), boundary=config.boundary, **extra
    )
    agent.precision = config.precision
    return agent.to(device)


def agent_from_checkpoint(
    checkpoint: Path, config: TrainConfig, observation_dim: int, action_dim: int, device: torch.device
) -> Agent:
    """The agent a checkpoint holds (with its tokenizer, if the method needs one), weights loaded from
    ``model.safetensors``, in evaluation mode."""
    from chunkrl.train.checkpoint import load_weights

    tokenizer = None
    if getattr(METHODS[config.agent].agent, "needs_tokenizer", False):
        tokenizer = prepare_tokenizer(config, action_dim, None, checkpoint, Console(stderr=True, quiet=True))
    agent = build_agent(config, observation_dim, action_dim, device, tokenizer)
    load_weights(agent, checkpoint)
    return agent.eval()


def prepare_tokenizer(
    config: TrainConfig,
    action_dim: int,
    store: Trajectories | None,
    source: Path | None,
    console: Console,
    action_space=None,
):
    """The chunk tokenizer of a token-policy run: the checkpoint's (resume, --init-from, eval); else fitted
    on the dataset's whole chunks (quantiles, BPE); else, for an on-policy run without a dataset, from
    the bounds of ``action_space``, without BPE (said on the console)."""
    from chunkrl.agents.ppo import TOKENIZER_FILE
    from chunkrl.data.chunks import ChunkSampler, ChunkSpec
    from chunkrl.nets.tokenizer import ChunkTokenizer, TokenizerError
    from chunkrl.train.checkpoint import CheckpointError

    if source is not None:
        path = Path(source) / TOKENIZER_FILE
        if not path.exists():
            raise CheckpointError(f"{source} has no {TOKENIZER_FILE}: it was not written by chunk-bc or chunk-ppo")
        try:
            tokenizer = ChunkTokenizer.from_json(path.read_text())
        except (TokenizerError, OSError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path} cannot be used: {error}. The checkpoint's tokenizer was damaged") from None
        if tokenizer.action_dim != action_dim:
            raise CheckpointError(
                f"{path} tokenizes actions of {tokenizer.action_dim} numbers, and {config.env} has {action_dim}: the "
                "checkpoint was trained on another task; pass a checkpoint of this task (or the matching --env)"
            )
        if tokenizer.horizon != config.horizon:
            raise CheckpointError(
                f"{path} tokenizes chunks of {tokenizer.horizon} actions, this run has horizon {config.horizon}; "
                f"use --horizon {tokenizer.horizon}"
            )
        return tokenizer
    settings = config.ppo.tokenizer
    if store is not None:
        sampler = ChunkSampler(store, ChunkSpec(config.horizon, config.discount, "mask"), seed=config.seed)
        batch = sampler.sample(min(20_000, 4 * store.size))
        whole = batch.valid.all(axis=1)
        tokenizer = ChunkTokenizer.fit(batch.actions[whole], settings)
        console.print(
            f"tokenizer fitted on {int(whole.sum())} dataset chunks: {tokenizer.vocab_size} tokens, at most "
            f"{tokenizer.max_tokens} per chunk ({'BPE' if tokenizer.bpe else 'no BPE'})"
        )
        return tokenizer
    low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError("the action space is unbounded: fit the tokenizer on demonstrations (chunk-bc, --init-from)")
    console.print(
        f"tokenizer from the action bounds (no dataset, no BPE): {config.horizon * action_dim} tokens per chunk. "
        "Start from a chunk-bc checkpoint (--init-from) for the BPE tokenizer fitted on demonstrations."
    )
    return ChunkTokenizer.for_bounds(config.horizon, low, high, settings.scale)


def run_env(config: TrainConfig):
    """A fresh environment of the run in its own units (``in_agent_units`` maps it to the agent's)."""
    return make_env(config.env, config.sparse, config.obs_mode, config.max_episode_steps)


def checkpoint_normalizer(checkpoint: Path, observation_dim: int, action_dim: int) -> Normalizer:
    """The statistics a checkpoint saved (``normalization.json``); none (identity) for checkpoints written
    before runs normalised their data, which all trained in the data's own units."""
    path = Path(checkpoint) / NORMALIZATION_FILE
    if not path.exists():
        return Normalizer.identity(observation_dim, action_dim)
    normalizer = Normalizer.from_json(path.read_text(), str(path))
    sizes = (len(normalizer.observation_center), len(normalizer.action_center))
    if sizes != (observation_dim, action_dim):
        raise DatasetError(
            f"{path} normalises observations of {sizes[0]} and actions of {sizes[1]} numbers, this run has "
            f"{observation_dim} and {action_dim}: the checkpoint belongs to another task"
        )
    return normalizer


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
