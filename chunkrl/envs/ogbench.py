"""OGBench's manipulation tasks by name: domains, datasets, single-task environments, and file naming."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

DOMAINS = (
    "cube-single",
    "cube-double",
    "cube-triple",
    "cube-quadruple",
    "scene",
    "puzzle-3x3",
    "puzzle-4x4",
    "puzzle-4x5",
    "puzzle-4x6",
)
DATASET_TYPES = ("play", "noisy")
DATASETS = tuple(f"{d}-{t}-v0" for d in DOMAINS for t in DATASET_TYPES)
SINGLE_TASK_ENVS = tuple(
    f"{d}-{t}-singletask{suffix}-v0"
    for d in DOMAINS
    for t in DATASET_TYPES
    for suffix in ("", "-task1", "-task2", "-task3", "-task4", "-task5")
)

_ENV_PATTERN = re.compile(r"^(?P<domain>.+)-(?P<type>play|noisy)-singletask(?P<task>-task[1-5])?-(?P<version>v\d+)$")


@dataclass(frozen=True)
class OGBenchTask:
    """A single-task OGBench environment and the dataset it trains on."""

    env_name: str  # e.g. puzzle-3x3-play-singletask-task1-v0 (the name users type)
    dataset_name: str  # e.g. puzzle-3x3-play-v0 (the file name stem)
    gym_id: str  # e.g. puzzle-3x3-singletask-task1-v0 (the gymnasium id, without the dataset type)
    domain: str


def close_matches_hint(name: str, known: tuple[str, ...]) -> str:
    """' Did you mean: a, b?' for a mistyped name, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def parse_task(env_name: str) -> OGBenchTask:
    """Split a single-task environment name into its dataset and gymnasium id, or explain the mistake."""
    match = _ENV_PATTERN.match(env_name)
    if match is None or env_name not in SINGLE_TASK_ENVS:
        raise ValueError(
            f"Unknown environment '{env_name}'.{close_matches_hint(env_name, SINGLE_TASK_ENVS)} "
            "chunkrl trains on OGBench single-task manipulation environments named "
            "'<domain>-<play|noisy>-singletask-task<1-5>-v0', e.g. 'puzzle-3x3-play-singletask-task1-v0'; "
            f"domains: {', '.join(DOMAINS)}."
        )
    domain, version, task = match["domain"], match["version"], match["task"] or ""
    return OGBenchTask(
        env_name=env_name,
        dataset_name=f"{domain}-{match['type']}-{version}",
        gym_id=f"{domain}-singletask{task}-{version}",
        domain=domain,
    )


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a known OGBench manipulation dataset, else raise with close matches."""
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset '{name}'.{close_matches_hint(name, DATASETS)} Known datasets: {', '.join(DATASETS)}."
        )
    return name


def validation_path(train_path: Path) -> Path:
    """OGBench's naming: ``name.npz`` has its validation split in ``name-val.npz``."""
    return train_path.with_name(train_path.name.replace(".npz", "-val.npz"))
