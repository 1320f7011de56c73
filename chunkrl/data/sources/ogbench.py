"""OGBench manipulation datasets: reading the npz files and single-task relabelling.

Rewards and task-completion flags come from OGBench's own relabelling (``ogbench.relabel_utils``) for
the chosen ``...-singletask-taskN-v0`` environment, exactly as OGBench and the paper's code use them.
Both sides describe a step by the state *before* its action: relabelling scores stored step ``t`` by
its own ``qpos`` / button states (recorded as ``prev_*`` before the action), and OGBench registers its
single-task environments with ``success_timing='pre'``, so the reward and ``terminated`` returned by
``step(a_t)`` are computed on ``s_t``. There is no one-step shift between offline and online steps
(``tests/data/test_ogbench_source.py`` checks it on a real environment, step by step).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories
from chunkrl.envs.ogbench import OGBenchTask

REQUIRED_KEYS = ("observations", "actions", "terminals", "qpos")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an OGBench-layout npz file fully, turning low-level failures into a clear error."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(
            f"Dataset file {path} does not exist. Generate it with `chunkrl data generate <dataset> --out {path}` "
            "or point --dataset-path at an existing OGBench file."
        )
    try:
        with np.load(path) as file:
            missing = [k for k in REQUIRED_KEYS if k not in file.files]
            if missing:
                raise DatasetError(
                    f"Dataset file {path} lacks the arrays {missing}; it is not an OGBench dataset "
                    "(expected observations, actions, terminals, qpos, qvel[, button_states])."
                )
            return {k: file[k] for k in file.files}
    except DatasetError:
        raise  # already says what is wrong with the file
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise DatasetError(
            f"Dataset file {path} is corrupt or truncated ({type(error).__name__}: {error}). Delete it and "
            "generate it again with `chunkrl data generate`, or download the official file again."
        ) from error


def load_single_task(path: Path, task: OGBenchTask, env, sparse: bool, extra_capacity: int = 0) -> Trajectories:
    """Load an OGBench npz file as single-task trajectories for ``task``.

    Args:
        path: the npz file (OGBench layout; official or generated).
        task: the single-task environment whose reward the steps are relabelled with.
        env: that environment (OGBench reads the task's goal from it).
        sparse: the paper's sparse reward: -1 on every step that is not a full success, else 0.
        extra_capacity: room for more steps (an online replay buffer seeded with this data).
    """
    from ogbench.relabel_utils import relabel_dataset

    raw = read_npz(path)
    observation_dim = int(np.prod(env.observation_space.shape))
    action_dim = int(np.prod(env.action_space.shape))
    if raw["observations"].shape[-1] != observation_dim or raw["actions"].shape[-1] != action_dim:
        raise DatasetError(
            f"Dataset {path} has observations of size {raw['observations'].shape[-1]} and actions of size "
            f"{raw['actions'].shape[-1]}, but {task.env_name} expects {observation_dim} and {action_dim}. "
            f"Use the dataset of that environment ({task.dataset_name})."
        )
    rows = len(raw["observations"])
    short = {k: len(raw[k]) for k in REQUIRED_KEYS if len(raw[k]) != rows}
    if short:
        raise DatasetError(
            f"Dataset {path} has {rows} observations but {short} rows of other arrays; every array of an "
            "OGBench file has one row per stored step (the final observation of each trajectory included)."
        )
    ends_raw = raw["terminals"].astype(bool)
    if len(ends_raw) == 0 or not ends_raw[-1]:
        raise DatasetError(f"Dataset {path} does not end with a complete trajectory; it looks truncated.")
    # OGBench stores the final observation of each trajectory as an extra row without an action.
    keep = ~ends_raw
    next_keep = np.concatenate([[False], keep[:-1]])
    steps = {k: raw[k][keep] for k in ("observations", "actions", "qpos") if k in raw}
    if "button_states" in raw:
        steps["button_states"] = raw["button_states"][keep]
    env.reset()
    relabel_dataset(task.gym_id, env, steps)
    rewards = steps["rewards"]
    if sparse:
        rewards = -(rewards != 0.0).astype(np.float32)
    trajectory_ends = np.concatenate([ends_raw[1:], [True]])[keep]
    arrays = StepArrays(
        observations=steps["observations"].astype(np.float32),
        actions=steps["actions"].astype(np.float32),
        rewards=rewards.astype(np.float32),
        terminals=steps["masks"] == 0.0,
        ends=trajectory_ends,
        next_observations=raw["observations"][next_keep].astype(np.float32),
    )
    return Trajectories.from_arrays(arrays, capacity=len(arrays.rewards) + extra_capacity)
