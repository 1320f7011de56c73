"""Run configuration: typed dataclasses, loaded from YAML/JSON, overridden on the command line, and
saved (resolved) with every run."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from chunkrl.agents.configs import FlowAgentConfig, SACAgentConfig


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the paper (arXiv 2507.07969)."""

    agent: str = "qc-fql"
    """Method name: qc-fql, fql-n, fql, qc, bfn-n, bfn, qc-rlpd, rlpd-ac or rlpd (see the README's table)."""
    env: str = "puzzle-3x3-play-singletask-task1-v0"
    """OGBench single-task environment; its dataset is the matching play/noisy dataset."""
    sparse: bool = False
    """The paper's sparse reward (-1 unless the task is fully solved), offline and online alike."""
    dataset_path: Path | None = None
    """An OGBench npz file (official or generated). Default: the generated dataset in the cache."""
    dataset_dir: Path | None = None
    """A directory of official OGBench files (<dataset>.npz), e.g. ~/.ogbench/data."""
    dataset_episodes: int | None = None
    """Size (training episodes) of the generated dataset used when no path or directory is given.
    None: the largest copy already generated in the cache, else OGBench's official size (generated)."""
    generate_missing: bool = True
    """Generate the cached dataset with OGBench's oracles on first use if it is missing."""
    generate_workers: int = 2
    """Worker processes for that generation."""
    cache_dir: Path | None = None
    """Dataset cache (default: $CHUNKRL_CACHE or ~/.cache/chunkrl)."""
    horizon: int = 5
    """Chunk length h."""
    discount: float = 0.99
    """Per-step discount γ."""
    boundary: Literal["mask", "truncate"] = "mask"
    """How chunks cut by a trajectory's end are treated: mask (the paper's: padded chunks leave the TD loss) or
    truncate (semi-Markov: they bootstrap with γ^τ and the chunk critic reads the validity mask)."""
    batch_size: int = 256
    """Chunk transitions per gradient step."""
    offline_steps: int | None = None
    """Gradient steps on the dataset before online fine-tuning (0 skips the phase). None: the method's
    default, 1M for the flow agents and 0 for the RLPD family (online learning with prior data)."""
    online_steps: int = 1_000_000
    """Environment steps of online fine-tuning (0 skips the phase)."""
    replay: Literal["shared", "symmetric"] | None = None
    """Where online steps go. shared: appended to the dataset, batches uniform over both (the paper's
    offline-to-online setting). symmetric: a separate online replay, every batch half dataset, half online
    (RLPD). None: the method's default (flow agents shared, RLPD family symmetric)."""
    utd_ratio: int = 1
    """Gradient steps per online environment step."""
    start_training: int = 5000
    """Online steps collected before online updates start."""
    warmup: Literal["random", "policy"] | None = None
    """How the online steps before start_training are acted: random (uniform actions within the action
    bounds, one per step, as the paper's RLPD code) or policy (the agent's chunks, as the paper's
    offline-to-online code, whose policy was pre-trained). None: the method's default (RLPD family random,
    flow agents policy)."""
    execute_horizon: int | None = None
    """Actions of each chunk executed open loop before re-planning (None: the whole chunk)."""
    eval_interval: int = 100_000
    """Steps between evaluations (0: only at the end of each phase)."""
    eval_episodes: int = 50
    """Episodes per evaluation."""
    log_interval: int = 5000
    """Steps between metric logs."""
    checkpoint_interval: int = 100_000
    """Steps between checkpoints (one is always written at the end and on interruption)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    seed: int = 0
    """Seed of networks, sampling and environments."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto picks CUDA when available."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    wandb: bool = False
    """Also log to Weights & Biases (pip install chunkrl[wandb])."""
    init_from: Path | None = None
    """Start from the agent weights of this checkpoint (a checkpoint directory or run directory)."""
    flow: FlowAgentConfig = field(default_factory=FlowAgentConfig)
    """Settings of the flow agents (qc-fql, fql-n, fql, qc, bfn-n, bfn)."""
    sac: SACAgentConfig = field(default_factory=SACAgentConfig)
    """Settings of the chunked SAC family (qc-rlpd, rlpd-ac, rlpd)."""


def to_dict(config) -> dict:
    """A plain, YAML/JSON-ready dictionary (paths as strings, tuples as lists)."""

    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        return value

    return convert(config)


def from_dict(cls, data: dict, source: str = "config"):
    """Build dataclass ``cls`` from a dictionary, rejecting unknown keys with a clear message."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; valid options of {cls.__name__}: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{source}.{name}")
    return cls(**kwargs)


def _coerce(hint, value, where: str):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(options[0], value, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if hint is Path:
        return Path(value)
    if origin is tuple:
        return tuple(value)
    return value


def load_config(path: Path) -> TrainConfig:
    """Read a TrainConfig from YAML or JSON."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return from_dict(TrainConfig, data or {}, str(path))


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
