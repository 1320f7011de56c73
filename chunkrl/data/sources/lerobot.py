"""LeRobotDataset v3 folders, read and written with pyarrow (no ``lerobot`` package needed).

A v3 dataset is a folder with ``meta/info.json`` (fps, features and their shapes), frames in
``data/chunk-XXX/file-YYY.parquet`` (one row per frame: ``episode_index``, ``frame_index``, ``index``,
``timestamp`` and one column per feature, vectors as lists) and per-episode rows in
``meta/episodes/chunk-XXX/file-YYY.parquet``. Mapping to chunkrl's steps:

- observations: ``observation.state``, followed by any ``extra_keys`` (concatenated in that order);
- actions: ``action``;
- rewards: ``next.reward``; a dataset without it is refused unless ``reward_from`` says what to use:
  ``success`` (1 on a ``next.success`` frame, else 0) or ``constant`` (-1 on every frame, the sparse
  reward's shape);
- terminals: ``next.success`` where present, else ``next.done`` except where ``next.truncated``;
- ends: the last frame of each ``episode_index``;
- next observations: ``next.observation.state`` when the dataset has it (chunkrl writes it), else the
  next frame of the episode, and at an episode's last frame the frame's own observation (LeRobot keeps
  no final observation; only a cut-off episode bootstraps from it).

``write_lerobot`` writes any chunkrl store in this format (with ``next.observation.state`` so that a
round trip is exact); other readers see an ordinary v3 dataset with rewards and done flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories

INFO = Path("meta") / "info.json"
REWARD_CHOICES = ("dataset", "success", "constant")


def is_lerobot_dataset(path: Path) -> bool:
    return (Path(path) / INFO).exists()


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError('LeRobot datasets need pyarrow: pip install -e ".[lerobot]"') from None
    return pa, pq


def _column(table, name: str) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if hasattr(column, "flatten") and str(column.type).startswith(("list", "fixed_size_list", "large_list")):
        width = len(column[0]) if len(column) else 0
        return np.asarray(column.flatten().to_numpy(zero_copy_only=False)).reshape(len(column), width)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def read_lerobot(
    path: Path, extra_keys: tuple[str, ...] = (), reward_from: str = "dataset", extra_capacity: int = 0
) -> Trajectories:
    """A LeRobot v3 folder as a trajectory store (see the module docstring for the mapping)."""
    _, pq = _pyarrow()
    path = Path(path)
    if not is_lerobot_dataset(path):
        raise DatasetError(f"{path} is not a LeRobot v3 dataset: {path / INFO} is missing")
    info = json.loads((path / INFO).read_text())
    files = sorted((path / "data").glob("chunk-*/*.parquet"))
    if not files:
        raise DatasetError(f"{path / 'data'} holds no chunk-*/file-*.parquet files")
    import pyarrow as pa

    table = pa.concat_tables([pq.read_table(f) for f in files])
    names = set(table.column_names)
    features = info.get("features", {})
    for key in ("observation.state", "action", "episode_index", *extra_keys):
        if key not in names:
            known = sorted(k for k in features if k.startswith("observation"))
            raise DatasetError(f"{path}: the frames have no '{key}' column (observation features: {known})")
    order = np.argsort(_column(table, "index"), kind="stable") if "index" in names else np.arange(table.num_rows)
    get = lambda name: _column(table, name)[order]  # noqa: E731
    episodes = get("episode_index").reshape(-1)
    parts = [get(k).reshape(len(episodes), -1).astype(np.float32) for k in ("observation.state", *extra_keys)]
    observations = np.concatenate(parts, axis=1)
    actions = get("action").reshape(len(episodes), -1).astype(np.float32)
    ends = np.ones(len(episodes), dtype=bool)
    ends[:-1] = episodes[1:] != episodes[:-1]
    success = get("next.success").reshape(-1).astype(bool) if "next.success" in names else None
    if reward_from == "dataset":
        if "next.reward" not in names:
            raise DatasetError(
                f"{path} has no 'next.reward' column. Choose the reward explicitly: --reward-from success (1 on "
                "frames with next.success, else 0) or --reward-from constant (-1 on every frame)."
            )
        rewards = get("next.reward").reshape(-1).astype(np.float32)
    elif reward_from == "success":
        if success is None:
            raise DatasetError(f"--reward-from success needs a 'next.success' column, and {path} has none")
        rewards = success.astype(np.float32)
    elif reward_from == "constant":
        rewards = np.full(len(episodes), -1.0, dtype=np.float32)
    else:
        raise ValueError(f"reward_from must be one of {REWARD_CHOICES} (got {reward_from!r})")
    if success is not None:
        terminals = success
    elif "next.done" in names:
        terminals = get("next.done").reshape(-1).astype(bool)
        if "next.truncated" in names:
            terminals &= ~get("next.truncated").reshape(-1).astype(bool)
    else:
        terminals = np.zeros(len(episodes), dtype=bool)
    if "next.observation.state" in names and not extra_keys:  # written by chunkrl: exact
        next_observations = get("next.observation.state").reshape(len(episodes), -1).astype(np.float32)
    else:
        next_observations = np.empty_like(observations)
        next_observations[:-1] = observations[1:]
        next_observations[ends] = observations[ends]
    steps = StepArrays(observations, actions, rewards, terminals, ends, next_observations)
    return Trajectories.from_arrays(steps, capacity=len(rewards) + extra_capacity)


def write_lerobot(store: Trajectories, out: Path, fps: int = 50, task: str = "", overwrite: bool = False) -> Path:
    """Write a trajectory store as a LeRobot v3 folder (one data file, one episodes file)."""
    pa, pq = _pyarrow()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; chunkrl never overwrites a dataset (pass --overwrite)")
    steps = store.step_arrays()
    n = len(steps.rewards)
    starts = np.flatnonzero(np.concatenate([[True], steps.ends[:-1]]))
    episode_index = np.cumsum(np.concatenate([[0], steps.ends[:-1]])).astype(np.int64)
    frame_index = np.arange(n) - starts[episode_index]
    vectors = {
        "observation.state": steps.observations,
        "next.observation.state": steps.next_observations,
        "action": steps.actions,
    }
    scalars = {
        "next.reward": steps.rewards.astype(np.float32),
        "next.done": steps.terminals | steps.ends,
        "next.success": steps.terminals.astype(bool),
        "next.truncated": steps.ends & ~steps.terminals,
        "episode_index": episode_index,
        "frame_index": frame_index.astype(np.int64),
        "index": np.arange(n, dtype=np.int64),
        "timestamp": (frame_index / fps).astype(np.float32),
        "task_index": np.zeros(n, dtype=np.int64),
    }
    columns = {k: pa.FixedSizeListArray.from_arrays(pa.array(v.astype(np.float32).reshape(-1)), v.shape[1])
               for k, v in vectors.items()}  # fmt: skip
    columns.update({k: pa.array(v) for k, v in scalars.items()})
    data = out / "data" / "chunk-000"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), data / "file-000.parquet")
    lengths = np.diff(np.concatenate([starts, [n]]))
    episodes = pa.table({
        "episode_index": np.arange(len(starts), dtype=np.int64), "length": lengths.astype(np.int64),
        "dataset_from_index": starts.astype(np.int64), "dataset_to_index": (starts + lengths).astype(np.int64),
        "data/chunk_index": np.zeros(len(starts), np.int64), "data/file_index": np.zeros(len(starts), np.int64),
        "tasks": [[task]] * len(starts),
    })  # fmt: skip
    (out / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(episodes, out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": [task]}), out / "meta" / "tasks.parquet")

    def feature(values: np.ndarray, dtype: str) -> dict:
        return {"dtype": dtype, "shape": [values.shape[1] if values.ndim == 2 else 1], "names": None}

    features = {k: feature(v, "float32") for k, v in vectors.items()}
    features.update({k: feature(v, "bool" if v.dtype == bool else str(v.dtype)) for k, v in scalars.items()})
    info = {
        "codebase_version": "v3.0", "robot_type": None, "fps": fps, "total_episodes": int(len(starts)),
        "total_frames": int(n), "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
        "features": features, "splits": {"train": f"0:{len(starts)}"},
    }  # fmt: skip
    (out / INFO).write_text(json.dumps(info, indent=2))
    stats = {k: {"mean": v.mean(0).tolist(), "std": v.std(0).tolist(), "min": v.min(0).tolist(),
                 "max": v.max(0).tolist()} for k, v in vectors.items()}  # fmt: skip
    (out / "meta" / "stats.json").write_text(json.dumps(stats))
    return out
