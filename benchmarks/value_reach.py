"""How far back from the task's successes a run's critic values reach: the critic's mean value of the dataset's chunks
that start k steps before the data reach a success, beside the discounted return of the data's own path from there.

    python benchmarks/value_reach.py RUN_OR_CHECKPOINT [RUN_OR_CHECKPOINT ...] [--steps-before 1 5 10 25 50 100]
        [--plot reach.png]

On a sparse task (-1 a step until the task is solved, 0 and the episode's end then) a critic that knows nothing of
the goal values every state at about -1 / (1 - discount): -100 at 0.99. Offline, the goal's value can only enter
from the successes the data hold, and it spreads back from them one backup at a time, as far as the policy that
the backup follows knows the way. A run whose evaluations stay at 0 can therefore still be learning: this says how
far back its values have reached. Q(s, chunk) counts the agent's own policy after the chunk, so it lies above the
data path's return where the policy knows a shorter way and below it where it does not know the way.

Each run (or checkpoint) is read with its saved config and normalisation, and with the data it trained on (the
same file `chunkrl train` would load: the cache's generated copy or its ``dataset_path``). The values come from the
agent's own critic loss code (``critic/q_mean``, ``critic/target_mean``: the mean over the critic ensemble and the
chunks), so every family with a chunk critic (flow, best-of-N, SAC, diffusion) is read the same way. A row's chunks
start k steps before each entry into a success (the step the data reach it, with no success in between, in the
same trajectory); the last row is chunks from uniformly random dataset steps.
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from rich.console import Console

from chunkrl.agents.registry import METHODS
from chunkrl.config import TrainConfig, load_config
from chunkrl.data.catalog import load_dataset
from chunkrl.data.chunks import ChunkSampler
from chunkrl.envs.registry import run_env, space_dims
from chunkrl.train.build import chunk_spec
from chunkrl.train.checkpoint import agent_from_checkpoint, checkpoint_normalizer, read_counters, resolve_checkpoint
from chunkrl.train.device import resolve_device

STEPS_BEFORE = (1, 5, 10, 25, 50, 100, 200, 400)
RANDOM_CHUNKS = 2000


def success_entries(terminals: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The steps at which a trajectory enters a success: terminal steps (a success ends the task) whose previous step
    is no terminal of the same trajectory. ``ends`` marks each trajectory's last step."""
    starts_trajectory = np.concatenate([[True], ends[:-1]])
    previous_terminal = np.concatenate([[False], terminals[:-1]]) & ~starts_trajectory
    return np.flatnonzero(terminals & ~previous_terminal)


def steps_before(terminals: np.ndarray, ends: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, entries): the steps ``k`` before each success entry from which the data reach that entry with no
    success on the way and within one trajectory, and those entries."""
    entries = success_entries(terminals, ends)
    starts = entries - k
    trajectory = np.concatenate([[0], np.cumsum(ends[:-1])])
    successes_before = np.concatenate([[0], np.cumsum(terminals[:-1])])  # terminal steps before each step
    safe = np.maximum(starts, 0)
    keep = (
        (starts >= 0)
        & (trajectory[safe] == trajectory[entries])
        & (successes_before[safe] == successes_before[entries])  # no success in [start, entry)
    )
    return starts[keep], entries[keep]


def path_returns(rewards: np.ndarray, starts: np.ndarray, entries: np.ndarray, discount: float) -> np.ndarray:
    """The discounted return of the data's path from each start up to and including its success entry (where the
    task ends): ``sum_{i=0}^{entry-start} discount^i * reward[start + i]``."""
    length = int((entries - starts).max(initial=0)) + 1
    offsets = np.arange(length)
    positions = starts[:, None] + offsets
    counted = offsets[None, :] <= (entries - starts)[:, None]
    step_rewards = np.where(counted, rewards[np.minimum(positions, len(rewards) - 1)], 0.0)
    return (step_rewards * discount**offsets).sum(axis=1)


def critic_values(agent, sampler: ChunkSampler, starts: np.ndarray) -> tuple[float, float]:
    """The critic's mean value of the chunks at ``starts`` and the mean of its TD targets, from the agent's critic
    loss code (the ensemble's and the chunks' mean)."""
    batch = sampler.gather(starts).to_torch(agent.device)
    with torch.no_grad():
        _, metrics = agent.critic_loss(batch)
    return float(metrics["critic/q_mean"]), float(metrics["critic/target_mean"])


def read_checkpoint(path: Path, console: Console, device: torch.device, loaded: dict | None = None):
    """(label, config, agent on ``device``, sampler over the run's normalised data) for a run or checkpoint
    directory. ``loaded`` keeps each data setting's store as read (before normalisation) and its simulator's
    observation and action sizes: a later checkpoint of the same data normalises a copy of it instead of reading
    the file again (10 s for the 1,000-episode scene data) and building another simulator."""
    checkpoint = resolve_checkpoint(path)
    config: TrainConfig = load_config(checkpoint / "config.yaml")
    method = METHODS[config.agent]
    if method.schedule == "on_policy":
        raise SystemExit(f"{path}: {config.agent} learns from its own rollouts: it has no chunk critic of the data")
    loaded = {} if loaded is None else loaded
    where = (DataSettings.of(config), config.cache_dir)  # everything the read depends on
    if where not in loaded:  # the simulator relabels the data with its task and gives the spaces (1 s to build)
        env = run_env(config)
        loaded[where] = load_dataset(config, env, 0, console), space_dims(env)
        env.close()
    read, (observation_dim, action_dim) = loaded[where]
    store = copy.deepcopy(read)
    checkpoint_normalizer(checkpoint, observation_dim, action_dim).apply_to(store)
    if method.reward_offset:  # the training rewards, as build_trainer shifts them
        store.rewards[: store.size] += method.reward_offset
    agent = agent_from_checkpoint(checkpoint, config, observation_dim, action_dim, device)
    if not hasattr(agent, "critic_loss"):
        raise SystemExit(f"{path}: {config.agent} has no critic loss to read its values from")
    sampler = ChunkSampler(store, chunk_spec(config), seed=config.seed, history=agent.history_length)
    step = read_counters(checkpoint).global_step
    return f"{config.agent} at step {step:,}", config, agent, sampler


class DataSettings(NamedTuple):
    """What a run's critic values are values of: its task, discount, reward and data (and the data's observation
    keys and reward source, for LeRobot and robomimic data)."""

    env: str
    discount: float
    sparse: bool
    dataset_path: Path | None
    dataset_dir: Path | None
    dataset_episodes: int | None
    state_keys: tuple[str, ...]
    reward_from: str

    @classmethod
    def of(cls, config: TrainConfig) -> DataSettings:
        return cls(
            config.env,
            config.discount,
            config.sparse,
            config.dataset_path,
            config.dataset_dir,
            config.dataset_episodes,
            tuple(config.state_keys),
            config.reward_from,
        )

    def __str__(self) -> str:
        reward = "the sparse reward" if self.sparse else "the task's own reward"
        data = (self.dataset_path, self.dataset_dir, self.dataset_episodes)
        keys = f" with state keys {', '.join(self.state_keys)}" if self.state_keys else ""
        source = f" (LeRobot rewards from: {self.reward_from})" if self.reward_from != "dataset" else ""
        return f"{self.env} at discount {self.discount} with {reward} on data {data}{keys}{source}"


@dataclass
class Reach:
    """The values of each checkpoint (``columns``) k steps before the data's success entries; every checkpoint reads
    the same data, so the chunks and the data path's return of a distance are one."""

    data: DataSettings
    """the settings every checkpoint shares"""
    reward_offset: float
    """and the offset of the rewards they trained on (DQC's)"""
    starts: dict[int, np.ndarray]
    """k -> the dataset steps k before a success entry, where every checkpoint's chunks start"""
    columns: list[str]
    paths: dict[int, tuple[int, float] | None]
    """k -> (chunks, the data path's mean return), None where no chunk starts k before a success entry"""
    q: dict[int, list[float]]
    """k -> each checkpoint's mean Q of those chunks"""
    random: list[float]
    """per checkpoint, the mean Q of random dataset chunks"""

    @property
    def env(self) -> str:
        return self.data.env

    @property
    def discount(self) -> float:
        return self.data.discount


def first_reach(store, data: DataSettings, offset: float, steps: list[int], path: Path) -> Reach:
    """An empty Reach on the first checkpoint's data: for each k, where the chunks start and the data path's
    mean discounted return from there."""
    n = store.size
    terminals, ends, rewards = store.terminals[:n], store.ends[:n], store.rewards[:n]
    if not terminals.any():
        raise SystemExit(f"{path}: the data of {data.env} hold no success (no terminal step): nothing to reach")
    starts = {k: steps_before(terminals, ends, k) for k in steps}
    returns = {k: path_returns(rewards, *starts[k], data.discount) for k in steps}
    paths = {k: (len(r), float(r.mean())) if len(r) else None for k, r in returns.items()}
    return Reach(data, offset, {k: s for k, (s, _) in starts.items()}, [], paths, {k: [] for k in steps}, [])


def told_apart(labels: list[str], runs: list[Path]) -> list[str]:
    """The labels, each one that repeats followed by the part of its run's path that differs from the other runs of
    that label: ``qc-fql at step 50,000 (chunking/qc-fql)`` beside ``... (networks/qc-fql-4x512)``."""
    named = list(labels)
    for label in set(labels):
        same = [i for i, other in enumerate(labels) if other == label]
        parts = [runs[i].resolve().parts for i in same]
        if len(same) < 2 or len(set(parts)) < 2:  # one run, or one run's checkpoint given twice
            continue
        prefix = len(os.path.commonprefix(parts))
        suffix = min(len(os.path.commonprefix([p[::-1] for p in parts])), min(map(len, parts)) - prefix)
        for i, part in zip(same, parts, strict=True):
            named[i] = f"{label} ({'/'.join(part[prefix : len(part) - suffix]) or part[-1]})"
    return named


def check_comparable(paths: list[Path]) -> None:
    """Refuse, from the runs' configs alone (before any data is read), runs whose values are values of other
    settings than the first run's: another task, discount, reward or data, or rewards offset otherwise."""
    first = None
    for path in paths:
        config = load_config(resolve_checkpoint(path) / "config.yaml")
        data, offset = DataSettings.of(config), METHODS[config.agent].reward_offset  # offset: the rewards it trains on
        if first is None:
            first = data, offset
        elif data != first[0]:
            raise SystemExit(
                f"{path}: {data}, but the first run is {first[0]}: compare runs of one task, reward and data"
            )
        elif offset != first[1]:
            raise SystemExit(
                f"{path}: {config.agent} trains on rewards offset by {offset}, the first run by {first[1]}: "
                "their data paths' returns differ; compare runs of one reward"
            )


def measure(paths: list[Path], steps: list[int], console: Console, device: torch.device) -> Reach:
    """Each checkpoint's mean Q of the chunks k steps before the data's success entries (and of random chunks)."""
    check_comparable(paths)
    reach, loaded = None, {}
    for path in paths:
        label, config, agent, sampler = read_checkpoint(path, console, device, loaded)
        if reach is None:  # the first checkpoint's data give the chunks and data-path returns of every one
            offset = METHODS[config.agent].reward_offset  # the rewards it trained on: the data path's return
            reach = first_reach(sampler.trajectories, DataSettings.of(config), offset, steps, path)
        reach.columns.append(label)
        for k in steps:
            if reach.paths[k] is not None:
                reach.q[k].append(critic_values(agent, sampler, reach.starts[k])[0])
        random_starts = np.random.default_rng(0).integers(0, sampler.trajectories.size, RANDOM_CHUNKS)
        reach.random.append(critic_values(agent, sampler, random_starts)[0])
    reach.columns = told_apart(reach.columns, [resolve_checkpoint(path).parent.parent for path in paths])
    return reach


def reach_table(reach: Reach) -> str:
    """The Markdown table: a row per distance k, the data path's return and each checkpoint's mean Q."""
    lines = [
        f"Mean Q of dataset chunks k steps before the data enter a success ({reach.env}, discount {reach.discount})",
        "",
        "| k | chunks | data path's return | " + " | ".join(reach.columns) + " |",
        "|---|---|---|" + "---|" * len(reach.columns),
    ]
    for k, path in reach.paths.items():
        if path is None:
            lines.append(f"| {k} | 0 | - | " + " | ".join("-" for _ in reach.columns) + " |")
            continue
        lines.append(f"| {k} | {path[0]} | {path[1]:.2f} | " + " | ".join(f"{q:.2f}" for q in reach.q[k]) + " |")
    lines.append(f"| random | {RANDOM_CHUNKS} | - | " + " | ".join(f"{q:.2f}" for q in reach.random) + " |")
    return "\n".join(lines)


def plot_reach(reach: Reach, path: Path) -> None:
    """Mean Q against the distance to a success (log axis), a line per checkpoint, the data path's return dashed and
    the value of never succeeding dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    distances = [k for k, path in reach.paths.items() if k > 0 and path is not None]
    if distances:
        for index, label in enumerate(reach.columns):
            values = [reach.q[k][index] for k in distances]
            ax.plot(distances, values, marker="o", color=f"C{index % 10}", label=label)
        ax.plot(distances, [reach.paths[k][1] for k in distances], "k--", label="the data path's return")
    ax.axhline(-1 / (1 - reach.discount), color="grey", linestyle=":", label="never succeeding (-1 a step)")
    ax.set_xscale("log")
    ax.set_xlabel("steps before the data enter a success")
    ax.set_ylabel("critic's mean Q of the data's chunk")
    ax.set_title(reach.env, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (their latest checkpoint) or checkpoints")
    parser.add_argument(
        "--steps-before", nargs="+", type=int, default=list(STEPS_BEFORE), help="distances k to a success entry"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--plot", type=Path, default=None, help="also draw Q against the distance into this image")
    args = parser.parse_args(argv)
    if any(k < 0 for k in args.steps_before):
        parser.error("--steps-before takes distances >= 0 (0: chunks that start at the success)")
    reach = measure(args.runs, args.steps_before, Console(stderr=True), resolve_device(args.device))
    print(reach_table(reach))
    if args.plot is not None:
        plot_reach(reach, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
