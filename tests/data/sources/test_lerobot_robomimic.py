"""LeRobot v3 folders and robomimic hdf5 files: fixtures written here, mappings checked by hand, round trips."""

import json

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunkrl.data.sources.lerobot import read_lerobot, write_lerobot
from chunkrl.data.sources.robomimic import read_robomimic
from chunkrl.data.trajectories import DatasetError
from tests.conftest import make_store

# the fixture's second episode is cut off without a terminal: its last frame is dropped, with a warning that the
# tests asserting it check with pytest.warns
pytestmark = pytest.mark.filterwarnings("ignore:.*dropped the last frame:UserWarning")


def feature_of(values) -> dict:
    """A feature entry of info.json as LeRobot writes it (dtype, shape, names)."""
    values = np.asarray(values)
    dtype = "float32" if values.dtype.kind == "f" else "bool" if values.dtype == bool else str(values.dtype)
    return {"dtype": dtype, "shape": [values.shape[1] if values.ndim == 2 else 1], "names": None}


def write_frames(root, columns, features=None):
    """A minimal LeRobot v3 folder, as LeRobot writes it: info.json and one data parquet file."""
    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    features = features or {k: feature_of(v) for k, v in columns.items()}
    info = {"codebase_version": "v3.0", "fps": 10, "features": features}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    table = {}
    for key, values in columns.items():
        values = np.asarray(values)
        if values.ndim == 2:
            table[key] = pa.FixedSizeListArray.from_arrays(
                pa.array(values.reshape(-1).astype(np.float32)), values.shape[1]
            )
        else:
            table[key] = pa.array(values)
    pq.write_table(pa.table(table), root / "data" / "chunk-000" / "file-000.parquet")
    return root


def frames(**extra):
    # two episodes: 3 frames (success at its last frame) then 2 frames (cut by a time limit)
    columns = {
        "observation.state": [[0, 0], [1, 1], [2, 2], [10, 10], [11, 11]],
        "observation.gripper": [[5], [6], [7], [8], [9]],
        "action": [[0.1], [0.2], [0.3], [0.4], [0.5]],
        "episode_index": [0, 0, 0, 1, 1],
        "frame_index": [0, 1, 2, 0, 1],
        "index": [0, 1, 2, 3, 4],
        "next.done": [False, False, True, False, True],
        "next.truncated": [False, False, False, False, True],
    }
    columns.update(extra)
    return columns


def test_lerobot_frames_map_to_steps(tmp_path):
    root = write_frames(tmp_path / "ds", frames(**{"next.reward": [0.0, 0.0, 1.0, 0.0, 0.0]}))
    with pytest.warns(UserWarning, match="dropped the last frame of 1 episodes"):
        steps = read_lerobot(root, extra_keys=("observation.gripper",)).step_arrays()
    # episode 0 (frames 0-2) ends on a success: kept whole; episode 1 (frames 3-4) is cut off by a time limit:
    # its last frame has no next observation in the dataset, so it is dropped and frame 3 ends the episode
    np.testing.assert_array_equal(steps.observations[:, 2], [5, 6, 7, 8])  # extra key appended
    np.testing.assert_array_equal(steps.observations[1], [1, 1, 6])
    np.testing.assert_array_equal(steps.rewards, [0, 0, 1, 0])
    np.testing.assert_array_equal(steps.terminals, [False, False, True, False])  # done but not truncated
    np.testing.assert_array_equal(steps.ends, [False, False, True, True])  # episode boundaries
    np.testing.assert_array_equal(steps.next_observations[0], steps.observations[1])
    np.testing.assert_array_equal(steps.next_observations[2], steps.observations[2])  # terminal: never bootstrapped
    np.testing.assert_array_equal(steps.next_observations[3], [11, 11, 9])  # the dropped frame's observation


def test_lerobot_reads_only_the_columns_it_uses(tmp_path):
    columns = frames(**{"next.reward": [0.0, 0.0, 1.0, 0.0, 0.0]})
    root = write_frames(tmp_path / "ds", columns)
    # a second file whose image column has another type: reading that column would fail to concatenate
    images = {**{k: v[3:] for k, v in columns.items()}, "observation.images.top": ["a", "b"]}
    images.update(episode_index=[2, 2], index=[5, 6])  # a third episode, cut off like the second
    write_frames(tmp_path / "other", images)
    (tmp_path / "other" / "data" / "chunk-000" / "file-000.parquet").rename(
        root / "data" / "chunk-000" / "file-001.parquet"
    )
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(table.append_column("observation.images.top", pa.array([1, 2, 3, 4, 5])),
                   root / "data" / "chunk-000" / "file-000.parquet")  # fmt: skip
    with pytest.warns(UserWarning):
        assert len(read_lerobot(root)) == 5  # both files: 3 + 2 + 2 frames, each cut-off episode loses its last


def test_missing_rewards_need_an_explicit_choice(tmp_path):
    root = write_frames(tmp_path / "ds", frames(**{"next.success": [False, False, True, False, False]}))
    with pytest.raises(DatasetError, match="--reward-from success .* or --reward-from constant"):
        read_lerobot(root)
    with pytest.warns(UserWarning, match="dropped the last frame"):
        success = read_lerobot(root, reward_from="success").step_arrays().rewards
        constant = read_lerobot(root, reward_from="constant").step_arrays().rewards
    np.testing.assert_array_equal(success, [0, 0, 1, 0])  # the cut-off episode's last frame is dropped
    np.testing.assert_array_equal(constant, [-1] * 4)


def test_export_then_read_back_is_identical(tmp_path):
    store = make_store(
        rewards=[0, 1, 0, 0, 2, 0], terminals=[0, 1, 0, 0, 0, 0], ends=[0, 0, 1, 0, 0, 1], obs_dim=3, action_dim=2
    )
    out = write_lerobot(store, tmp_path / "exported", fps=20, task="a task")
    back = read_lerobot(out).step_arrays()
    original = store.step_arrays()
    for name in ("observations", "actions", "rewards", "terminals", "ends", "next_observations"):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name), err_msg=name)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 2 and info["fps"] == 20
    assert info["features"]["observation.state"]["shape"] == [3]
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert episodes["length"] == [3, 3] and episodes["dataset_from_index"] == [0, 3]
    with pytest.raises(FileExistsError):
        write_lerobot(store, out)  # never overwritten


def test_the_exported_metadata_has_what_lerobots_own_code_reads(tmp_path):
    import pandas as pd

    store = make_store(rewards=[0, 1, 0, 0], terminals=[0, 1, 0, 0], ends=[0, 1, 0, 1], obs_dim=2, action_dim=1)
    out = write_lerobot(store, tmp_path / "exported", task="stack the cubes")
    # lerobot/datasets/utils.py, load_tasks: pd.read_parquet(meta/tasks.parquet), indexed by the task text;
    # LeRobotDataset.__getitem__ turns a frame's task_index into item["task"] = tasks.iloc[task_index].name
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")
    assert tasks.index.name == "task" and list(tasks.columns) == ["task_index"]
    assert tasks.iloc[0].name == "stack the cubes" and tasks.loc["stack the cubes", "task_index"] == 0
    # lerobot/datasets/lerobot_dataset.py, _save_episode_metadata: the episode row's columns (append, merge and
    # edit tools in lerobot/datasets/dataset_tools.py and aggregate.py index them by these names)
    episodes = pd.read_parquet(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    expected = {
        "episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
        "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index",
    }  # fmt: skip
    assert expected <= set(episodes.columns)
    assert list(episodes["tasks"].iloc[0]) == ["stack the cubes"]
    # lerobot/datasets/compute_stats.py: every feature's statistics, quantiles included (q01/q99 are what
    # quantile normalisation reads), per episode as stats/<feature>/<stat> and for the dataset in stats.json
    keys = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert {f"stats/action/{k}" for k in keys} <= set(episodes.columns)
    assert list(episodes["stats/action/count"].iloc[1]) == [2]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert keys <= set(stats["action"]) and keys <= set(stats["observation.state"])
    actions = store.actions[:4, 0]
    assert stats["action"]["count"] == [4] and stats["action"]["q99"] == pytest.approx([np.quantile(actions, 0.99)])


def test_robomimic_demos_with_the_papers_reward_offset(tmp_path):
    path = tmp_path / "low_dim.hdf5"
    with h5py.File(path, "w") as file:
        for i, length in enumerate((3, 2)):
            demo = file.create_group(f"data/demo_{i}")
            demo["actions"] = np.full((length, 7), i, np.float32)
            demo["rewards"] = np.array([0.0] * (length - 1) + [1.0])
            demo["dones"] = np.array([0] * (length - 1) + [1])
            demo["obs/robot0_eef_pos"] = np.arange(length * 3, dtype=np.float32).reshape(length, 3) + 100 * i
            demo["obs/object"] = np.ones((length, 2), np.float32) * i
            demo["obs/agentview_image"] = np.zeros((length, 8, 8, 3), np.uint8)  # left out: not low-dim
    steps = read_robomimic(path).step_arrays()
    assert steps.observations.shape == (5, 5)  # object (2) then robot0_eef_pos (3): sorted keys, no image
    np.testing.assert_array_equal(steps.observations[3], [1, 1, 100, 101, 102])
    np.testing.assert_array_equal(steps.rewards, [-1, -1, 0, -1, 0])  # reward - 1
    np.testing.assert_array_equal(steps.terminals, [False, False, True, False, True])
    np.testing.assert_array_equal(steps.ends, [False, False, True, False, True])
    only = read_robomimic(path, keys=("robot0_eef_pos",)).step_arrays()
    assert only.observations.shape == (5, 3)
    with pytest.raises(DatasetError, match=r"obs has no keys \[.nope.\]"):
        read_robomimic(path, keys=("nope",))


def lerobot_with(tmp_path, edit_info=None, **changed_columns):
    """A valid two-episode folder (rewards given), then ``edit_info(info)`` and the changed columns."""
    columns = frames(**{"next.reward": [0.0, 0.0, 1.0, 0.0, 0.0]})
    features = {k: feature_of(v) for k, v in columns.items()}
    columns.update(changed_columns)
    root = write_frames(tmp_path / "ds", columns, features)
    info = json.loads((root / "meta" / "info.json").read_text())
    if edit_info is not None:
        info = edit_info(info)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


@pytest.mark.parametrize(
    ("edit_info", "columns", "message"),
    [
        (lambda info: [info], {}, "not a LeRobot info.json"),
        (lambda info: {**info, "codebase_version": "v2.1"}, {}, "codebase_version 'v2.1'.*convert_dataset_v21_to_v30"),
        (lambda info: {**info, "codebase_version": "v99"}, {}, "says codebase_version 'v99'"),
        (lambda info: {**info, "fps": 0}, {}, "fps"),
        (lambda info: {**info, "total_episodes": 7}, {}, "total_episodes 7, the data files hold 2 episodes"),
        (lambda info: {**info, "features": {**info["features"], "action": {"dtype": "float32", "shape": [3]}}}, {},
         r"'action' holds vectors of 1 numbers, meta/info.json says shape \[3\]"),
        (None, {"index": [0, 1, 1, 3, 4]}, "'index' column repeats values"),
        (None, {"frame_index": [0, 1, 1, 0, 1]}, "episode 0 has frame 1 more than once"),
        (None, {"next.reward": ["a", "b", "c", "d", "e"]}, "column 'next.reward' holds string values, not numbers"),
    ],
)  # fmt: skip
def test_a_malformed_lerobot_folder_is_refused_naming_the_file_and_field(tmp_path, edit_info, columns, message):
    root = lerobot_with(tmp_path, edit_info, **columns)
    with pytest.raises(DatasetError, match=message):
        read_lerobot(root)


def test_a_ragged_vector_column_is_named(tmp_path):
    root = lerobot_with(tmp_path)
    file = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(file)
    ragged = pa.array([[0.0, 0.0], [1.0], [2.0, 2.0], [10.0, 10.0], [11.0, 11.0]], pa.list_(pa.float32()))
    pq.write_table(table.set_column(table.column_names.index("observation.state"), "observation.state", ragged), file)
    with pytest.raises(DatasetError, match="column 'observation.state' holds vectors of lengths 1 to 2"):
        read_lerobot(root)


def test_frames_out_of_order_or_interleaved_read_as_their_episodes(tmp_path):
    ordered = read_lerobot(lerobot_with(tmp_path / "a")).step_arrays()
    shuffle = [3, 0, 4, 2, 1]  # episodes interleaved, frames out of order
    columns = {k: [v[i] for i in shuffle] for k, v in frames(**{"next.reward": [0.0, 0.0, 1.0, 0.0, 0.0]}).items()}
    shuffled = read_lerobot(write_frames(tmp_path / "b" / "ds", columns)).step_arrays()
    for name in ("observations", "actions", "rewards", "terminals", "ends", "next_observations"):
        np.testing.assert_array_equal(getattr(shuffled, name), getattr(ordered, name), err_msg=name)


def test_a_folder_that_is_not_a_lerobot_dataset_is_not_called_a_corrupt_npz(tmp_path):
    from rich.console import Console

    from chunkrl.config import TrainConfig
    from chunkrl.data.catalog import load_dataset

    (tmp_path / "videos_only" / "videos").mkdir(parents=True)
    config = TrainConfig(env="none", dataset_path=tmp_path / "videos_only", online_steps=0)
    with pytest.raises(DatasetError, match=r"is a folder but not a LeRobot v3 dataset \(it has no meta/info.json\)"):
        load_dataset(config, None, 0, Console(quiet=True))
    (tmp_path / "notes.txt").write_text("not data")
    config = TrainConfig(env="none", dataset_path=tmp_path / "notes.txt", online_steps=0)
    with pytest.raises(DatasetError, match="is neither an OGBench .npz file, a robomimic"):
        load_dataset(config, None, 0, Console(quiet=True))
    empty = lerobot_with(tmp_path / "empty")
    file = empty / "data" / "chunk-000" / "file-000.parquet"
    pq.write_table(pq.read_table(file).slice(0, 0), file)
    with pytest.raises(DatasetError, match="the data files hold no frames"):
        read_lerobot(empty)


def test_an_overwritten_export_keeps_no_stale_file_and_a_failed_one_leaves_nothing(tmp_path, monkeypatch):
    import errno

    first = make_store(rewards=[0, 1, 0], terminals=[0, 1, 0], ends=[0, 1, 1], obs_dim=2, action_dim=1)
    out = write_lerobot(first, tmp_path / "exported")
    stale = out / "data" / "chunk-000" / "file-001.parquet"
    stale.write_bytes((out / "data" / "chunk-000" / "file-000.parquet").read_bytes())  # an older, larger export
    second = make_store(rewards=[0, 0], terminals=[0, 1], ends=[0, 1], obs_dim=2, action_dim=1)
    write_lerobot(second, out, overwrite=True)
    assert not stale.exists() and len(read_lerobot(out)) == 2
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    real = pq.write_table
    monkeypatch.setattr(pq, "write_table", full_disk)
    target = tmp_path / "new_export"
    with pytest.raises(OSError, match=f"writing {target} failed .No space left on device.; nothing was left behind"):
        write_lerobot(first, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no half-written or hidden folder
    monkeypatch.setattr(pq, "write_table", real)
    assert len(read_lerobot(write_lerobot(first, target))) == 3  # the retry is not blocked


def write_demo(file, name, length=3, actions=None, **obs):
    demo = file.create_group(f"data/{name}")
    demo["actions"] = np.zeros((length, 2), np.float32) if actions is None else actions
    demo["rewards"] = np.zeros(length)
    demo["dones"] = np.array([0] * (length - 1) + [1]) if length else np.zeros(0)
    for key, values in (obs or {"state": np.zeros((length, 4), np.float32)}).items():
        demo[f"obs/{key}"] = values
    return demo


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda f: write_demo(f, "demo_0", state=np.zeros((6, 4), np.float32)), "obs/state has 6 rows for 3 actions"),
        (lambda f: write_demo(f, "demo_0", length=0), r"actions has shape \(0, 2\)"),
        (lambda f: write_demo(f, "demo_0", state=np.array([b"a", b"b", b"c"])), "obs/state holds .S1 values"),
        (lambda f: write_demo(f, "demo_0", image=np.zeros((3, 8, 8, 3), np.uint8)), "no low-dimensional keys"),
        (lambda f: f.create_group("data/demo_0").create_dataset("actions", data=np.zeros((3, 2))), "no 'obs' group"),
        (lambda f: (write_demo(f, "demo_0"), write_demo(f, "demo_1", actions=np.zeros((3, 5), np.float32))),
         "action or observation sizes differ"),
    ],
)  # fmt: skip
def test_a_malformed_robomimic_file_names_the_demo_and_what_is_wrong(tmp_path, build, message):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as file:
        build(file)
    with pytest.raises(DatasetError, match=message):
        read_robomimic(path)
