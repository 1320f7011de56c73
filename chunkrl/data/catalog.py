"""Which dataset file a run trains on, and reading it: an explicit path (OGBench npz, LeRobot v3 folder, robomimic
hdf5), a directory of official OGBench files, or the generated copy in the cache (made on first use by the
simulators' scripted generation, ``chunkrl.envs.scripted``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import filelock
import numpy as np
from rich.console import Console

from chunkrl.data.sources.ogbench import load_single_task
from chunkrl.data.trajectories import DatasetError, Trajectories
from chunkrl.envs.ogbench import OGBenchTask, parse_task
from chunkrl.envs.registry import is_aloha, space_dims
from chunkrl.envs.scripted.ogbench import generate_dataset, official_settings
from chunkrl.progress import generation_notice, generation_progress

if TYPE_CHECKING:  # the run config sits above this layer: for type hints only
    from chunkrl.config import TrainConfig


def default_cache_dir() -> Path:
    """``$CHUNKRL_CACHE``, else ``$XDG_CACHE_HOME/chunkrl``, else ``~/.cache/chunkrl``."""
    if os.environ.get("CHUNKRL_CACHE"):
        return Path(os.environ["CHUNKRL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "chunkrl"


def generated_dataset_path(dataset_name: str, episodes: int, cache_dir: Path | None = None) -> Path:
    """Where ``chunkrl data generate`` caches a dataset of ``episodes`` training episodes."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "ogbench" / f"{episodes}ep" / f"{dataset_name}.npz"


def cached_episode_counts(dataset_name: str, cache_dir: Path | None = None) -> list[int]:
    """Sizes (training episodes) of the generated copies of ``dataset_name`` in the cache."""
    root = (Path(cache_dir) if cache_dir else default_cache_dir()) / "ogbench"
    counts = []
    for path in root.glob(f"*ep/{dataset_name}.npz"):
        prefix = path.parent.name.removesuffix("ep")
        if prefix.isdigit():
            counts.append(int(prefix))
    return sorted(counts)


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
    with generation_lock(path, console):
        if path.exists():  # made by the process this one waited for
            return path
        console.print(
            f"[bold]Generating {task.dataset_name}[/] ({episodes} episodes, OGBench oracles) "
            f"into {path}; this happens once{other_sizes}."
        )
        settings = official_settings(task.dataset_name, episodes=episodes)
        with generation_progress(console) as report:
            generate_dataset(
                settings, path, workers=config.generate_workers, progress=report, notice=generation_notice(console)
            )
    return path


@contextlib.contextmanager
def generation_lock(path: Path, console: Console) -> Iterator[None]:
    """Within it, this process alone generates the cached dataset ``path``: a second run (a sweep's other trial)
    that needs the same file waits here, then finds it made. The lock is the operating system's, on
    ``path.lock``: it is released when its holder ends, however it ends, so a crashed generator never blocks."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(
            f"cannot create the cache folder {path.parent} ({error}); choose another --cache-dir"
        ) from None
    lock = filelock.FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        console.print(f"Another process is generating {path}; waiting for it to finish (as long as generating takes).")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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
        from chunkrl.data.sources.aloha_scripted import load_scripted

        path = aloha_dataset_file(config, console)
        store = load_scripted(path, extra_capacity, config.state_keys)
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
    horizon = config.critic_horizon or config.horizon  # the backup's length decides TD samples
    ends = np.flatnonzero(store.ends[: store.size])
    lengths = np.diff(np.concatenate([[-1], ends]))
    short = int((lengths < horizon).sum())
    if not short:
        return
    if short == len(lengths) and config.boundary == "mask":
        raise DatasetError(
            f"{path}: every trajectory is shorter than the horizon {horizon} (longest {lengths.max()} steps), "
            "so with --boundary mask no chunk is a TD sample. Use a smaller --horizon or --boundary truncate."
        )
    console.print(
        f"[yellow]{path}: {short} of {len(lengths)} trajectories are shorter than the horizon {horizon} "
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
    from chunkrl.envs.scripted.aloha import DATASETS

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
    with generation_lock(path, console):
        if not path.exists():  # else made by the process this one waited for
            console.print(f"[bold]Generating {names[0]}[/] into the cache; this happens once.")
            generate_scripted_dataset(names[0], path, episodes, console)
    return path


def generate_scripted_dataset(
    name: str, out: Path, episodes: int, console: Console, seed: int = 0, overwrite: bool = False
) -> dict:
    """Scripted ALOHA demonstrations into ``out`` with a progress bar; says the script's success rate."""
    from chunkrl.envs.scripted.aloha import generate_scripted

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
