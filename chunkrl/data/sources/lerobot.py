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
  next frame of the episode. LeRobot keeps no observation after an episode's last frame: where that
  frame ends the task (a terminal) nothing is bootstrapped from it and it stays; where the episode was
  cut off (no terminal) its last frame is dropped, so that every chunk bootstraps from a real next
  state (one frame of each cut-off episode is lost; the reader says how many).

Only the columns used are read (a dataset's image columns can be gigabytes).

``write_lerobot`` writes any chunkrl store in this format (with ``next.observation.state`` so that a
round trip is exact), with the metadata LeRobot's own tools read: ``meta/tasks.parquet`` indexed by the
task text, per-episode rows with their file indices and ``stats/<feature>/<stat>`` columns, and
``meta/stats.json`` with mean, std, min, max, count and the quantiles LeRobot normalises with.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydantic

from chunkrl.data.normalize import feature_stats
from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories

SCALAR_COLUMNS = ("episode_index", "frame_index", "index", "next.reward", "next.success", "next.done", "next.truncated")

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


def _column(table, name: str, path: Path, numeric: bool = True) -> np.ndarray:
    """A column as a numpy array ([rows] or [rows, width] for vectors); a ragged, empty-vector, null or (with
    ``numeric``) non-numeric column is a ``DatasetError`` naming the folder and the column."""
    column = table.column(name).combine_chunks()
    if column.null_count:
        raise DatasetError(f"{path}: column '{name}' has {column.null_count} missing values")
    if str(column.type).startswith(("list", "fixed_size_list", "large_list")):
        lengths = np.asarray(column.value_lengths().to_numpy(zero_copy_only=False)) if len(column) else np.zeros(0)
        if len(lengths) and (lengths.min() != lengths.max() or lengths.max() == 0):
            raise DatasetError(
                f"{path}: column '{name}' holds vectors of lengths {lengths.min()} to {lengths.max()}; every frame "
                "needs the same non-zero length"
            )
        values = np.asarray(column.flatten().to_numpy(zero_copy_only=False))
        values = values.reshape(len(column), int(lengths[0]) if len(lengths) else 0)
    else:
        values = np.asarray(column.to_numpy(zero_copy_only=False))
    if numeric and not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise DatasetError(f"{path}: column '{name}' holds {column.type} values, not numbers")
    return values


class _Feature(pydantic.BaseModel):
    """A feature of ``meta/info.json`` (LeRobot's ``features`` entries: dtype, shape, names)."""

    model_config = pydantic.ConfigDict(extra="allow")
    dtype: str
    shape: list[int] | None = None


class _Info(pydantic.BaseModel):
    """What chunkrl reads of ``meta/info.json`` (``lerobot/datasets/utils.py``, ``create_empty_dataset_info``)."""

    model_config = pydantic.ConfigDict(extra="allow")
    codebase_version: str
    fps: float = pydantic.Field(gt=0)
    features: dict[str, _Feature]
    total_episodes: int | None = pydantic.Field(default=None, ge=0)


def read_info(path: Path) -> _Info:
    """``meta/info.json``, checked: a v3 dataset with positive fps and typed features."""
    file = path / INFO
    try:
        info = _Info.model_validate_json(file.read_bytes())
    except OSError as error:
        raise DatasetError(f"{file} cannot be read ({error})") from None
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}" for e in error.errors()[:5])
        raise DatasetError(f"{file} is not a LeRobot info.json ({problems})") from None
    if not info.codebase_version.startswith("v3."):
        raise DatasetError(
            f"{file} says codebase_version {info.codebase_version!r}; chunkrl reads LeRobot v3 datasets. Convert it "
            "with LeRobot's converter (python -m lerobot.datasets.v30.convert_dataset_v21_to_v30)."
        )
    return info


def read_lerobot(
    path: Path, extra_keys: tuple[str, ...] = (), reward_from: str = "dataset", extra_capacity: int = 0
) -> Trajectories:
    """A LeRobot v3 folder as a trajectory store (see the module docstring for the mapping)."""
    _, pq = _pyarrow()
    path = Path(path)
    if not is_lerobot_dataset(path):
        raise DatasetError(f"{path} is not a LeRobot v3 dataset: {path / INFO} is missing")
    info = read_info(path)
    table = _frames(path, {"observation.state", "action", "next.observation.state", *SCALAR_COLUMNS, *extra_keys})
    names = set(table.column_names)
    for key in ("observation.state", "action", "episode_index", *extra_keys):
        if key not in names:
            known = sorted(k for k in info.features if k.startswith("observation"))
            raise DatasetError(f"{path}: the frames have no '{key}' column (observation features: {known})")
    columns = {name: _column(table, name, path) for name in names}
    order = _frame_order(columns, path)
    get = lambda name: columns[name][order]  # noqa: E731
    episodes = get("episode_index").reshape(-1)
    _check_against_info(info, columns, episodes, path)
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
        steps = StepArrays(observations, actions, rewards, terminals, ends, next_observations)
    else:
        steps = _without_unknown_next(observations, actions, rewards, terminals, ends, path)
    return Trajectories.from_arrays(steps, capacity=len(steps.rewards) + extra_capacity)


def _frames(path: Path, wanted: set[str]):
    """The frame table of every data file, only the ``wanted`` columns that exist (image columns can be
    gigabytes); files whose columns disagree are named."""
    pa, pq = _pyarrow()
    files = sorted((path / "data").glob("chunk-*/*.parquet"))
    if not files:
        raise DatasetError(f"{path / 'data'} holds no chunk-*/file-*.parquet files")
    tables = []
    for file in files:
        try:
            present = set(pq.read_schema(file).names)
            tables.append(pq.read_table(file, columns=sorted(wanted & present)))
        except (OSError, pa.ArrowException) as error:
            raise DatasetError(f"{file} cannot be read as parquet ({error})") from None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as error:
        raise DatasetError(f"{path}: the data files' columns disagree ({error})") from None
    if table.num_rows == 0:
        raise DatasetError(f"{path}: the data files hold no frames")
    return table


def _frame_order(columns: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """Frames in episode order: by episode, then frame_index (or the global index); a frame that appears
    twice is refused (it would reorder or repeat steps)."""
    episodes = columns["episode_index"].reshape(-1)
    within = columns.get("frame_index", columns.get("index"))
    if within is None:
        within = np.arange(len(episodes))
    within = within.reshape(-1)
    order = np.lexsort((within, episodes))
    pairs = np.stack([episodes[order], within[order]], axis=1)
    repeated = np.flatnonzero((pairs[1:] == pairs[:-1]).all(axis=1))
    if len(repeated):
        episode, frame = pairs[repeated[0]]
        raise DatasetError(f"{path}: episode {episode} has frame {frame} more than once; the data files overlap")
    if "index" in columns and len(np.unique(columns["index"])) != len(episodes):
        raise DatasetError(f"{path}: the 'index' column repeats values; each frame needs its own index")
    return order


def _check_against_info(info: _Info, columns: dict[str, np.ndarray], episodes: np.ndarray, path: Path) -> None:
    """The frames agree with ``meta/info.json``: the episode count and every vector feature's shape."""
    count = len(np.unique(episodes))
    if info.total_episodes is not None and info.total_episodes != count:
        raise DatasetError(
            f"{path / INFO} says total_episodes {info.total_episodes}, the data files hold {count} episodes; "
            "files are missing or the metadata is stale"
        )
    for name, values in columns.items():
        feature = info.features.get(name)
        if feature is None or feature.shape is None or values.ndim != 2:
            continue
        if int(np.prod(feature.shape)) != values.shape[1]:
            raise DatasetError(
                f"{path}: column '{name}' holds vectors of {values.shape[1]} numbers, {INFO} says shape {feature.shape}"
            )


def _without_unknown_next(observations, actions, rewards, terminals, ends, path: Path) -> StepArrays:
    """Steps whose next observation is the episode's next frame; the last frame of an episode cut off
    without a terminal has no next observation in the dataset and is dropped (see the module docstring)."""
    next_observations = np.empty_like(observations)
    next_observations[:-1] = observations[1:]
    next_observations[ends] = observations[ends]  # only terminal last frames keep this: nothing bootstraps
    keep = ~(ends & ~terminals)
    new_ends = ends.copy()
    before_dropped = np.flatnonzero(~keep) - 1
    before_dropped = before_dropped[(before_dropped >= 0) & ~ends[np.maximum(before_dropped, 0)]]
    new_ends[before_dropped] = True  # the frame before a dropped last frame now ends its episode
    if not keep.any():
        raise DatasetError(f"{path}: every episode is a single frame cut off without a next state; nothing to train on")
    steps = StepArrays(*(a[keep] for a in (observations, actions, rewards, terminals, new_ends, next_observations)))
    dropped = int((~keep).sum())
    if dropped:
        import warnings

        warnings.warn(
            f"{path}: dropped the last frame of {dropped} episodes that end without a terminal (LeRobot stores no "
            "observation after it, so a chunk ending there could not bootstrap from the right state)",
            stacklevel=3,
        )
    return steps


def write_lerobot(store: Trajectories, out: Path, fps: int = 50, task: str = "", overwrite: bool = False) -> Path:
    """Write a trajectory store as a LeRobot v3 folder (one data file, one episodes file).

    The folder is written beside ``out`` and moved into place when whole: a failure (a full disk) leaves
    nothing behind, and ``overwrite`` replaces the old folder entirely (no stale data file survives)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; pass the path of a folder to write the dataset into")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; chunkrl never overwrites a dataset (pass --overwrite)")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_folder(store, partial, fps, task)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(
            error.errno, f"writing {out} failed ({error.strerror or error}); nothing was left behind"
        ) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(out)
    return out


def _write_folder(store: Trajectories, out: Path, fps: int, task: str) -> None:
    pa, pq = _pyarrow()
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
    zeros = np.zeros(len(starts), np.int64)
    episodes = {
        "episode_index": np.arange(len(starts), dtype=np.int64), "tasks": [[task]] * len(starts),
        "length": lengths.astype(np.int64), "data/chunk_index": zeros, "data/file_index": zeros,
        "dataset_from_index": starts.astype(np.int64), "dataset_to_index": (starts + lengths).astype(np.int64),
        "meta/episodes/chunk_index": zeros, "meta/episodes/file_index": zeros,
    }  # fmt: skip
    for name, values in vectors.items():  # per-episode statistics, as LeRobot's episode metadata holds them
        per_episode = [feature_stats(values[a:b]) for a, b in zip(starts, starts + lengths, strict=True)]
        for stat in per_episode[0]:
            episodes[f"stats/{name}/{stat}"] = [s[stat] for s in per_episode]
    (out / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(episodes), out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    write_tasks([task], out)

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
    stats = {k: feature_stats(v) for k, v in vectors.items()}
    (out / "meta" / "stats.json").write_text(json.dumps(stats))


def write_tasks(tasks: list[str], out: Path) -> None:
    """``meta/tasks.parquet`` as LeRobot writes it: a pandas table indexed by the task text with a
    ``task_index`` column (``lerobot/datasets/utils.py`` ``write_tasks`` / ``load_tasks``), so that a frame's
    ``task_index`` looks up the text."""
    try:
        import pandas as pd
    except ImportError:
        raise DatasetError('writing LeRobot datasets needs pandas: pip install -e ".[lerobot]"') from None
    table = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)}, index=pd.Index(tasks, name="task"))
    table.to_parquet(out / "meta" / "tasks.parquet")
