"""Choosing the dataset file of a run."""

import subprocess
import sys
import textwrap

import pytest
from rich.console import Console

from chunkrl.config import TrainConfig
from chunkrl.data import catalog
from chunkrl.data.catalog import dataset_file, generated_dataset_path
from chunkrl.data.trajectories import DatasetError
from chunkrl.envs.ogbench import parse_task

TASK = parse_task("scene-play-singletask-task2-v0")


def cached(tmp_path, episodes):
    path = generated_dataset_path("scene-play-v0", episodes, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return path


def test_without_a_size_the_largest_generated_copy_is_used(tmp_path):
    cached(tmp_path, 20)
    larger = cached(tmp_path, 50)
    config = TrainConfig(env=TASK.env_name, cache_dir=tmp_path)
    assert dataset_file(config, TASK, Console()) == larger


def test_an_explicit_size_selects_that_copy(tmp_path):
    twenty = cached(tmp_path, 20)
    cached(tmp_path, 50)
    config = TrainConfig(env=TASK.env_name, cache_dir=tmp_path, dataset_episodes=20)
    assert dataset_file(config, TASK, Console()) == twenty


def test_nothing_cached_and_no_generation_names_the_official_size(tmp_path):
    config = TrainConfig(env=TASK.env_name, cache_dir=tmp_path, generate_missing=False)
    with pytest.raises(DatasetError, match="chunkrl data generate scene-play-v0 --episodes 1000"):
        dataset_file(config, TASK, Console())


def test_explicit_path_wins(tmp_path):
    config = TrainConfig(env=TASK.env_name, dataset_path=tmp_path / "mine.npz")
    assert dataset_file(config, TASK, Console()) == tmp_path / "mine.npz"


def test_generation_progress_without_a_terminal_logs_the_first_the_last_and_at_most_every_30_seconds():
    import io

    from chunkrl.progress import generation_progress

    console = Console(file=io.StringIO(), width=120)  # a log file: not a terminal
    with generation_progress(console) as report:
        for done in (1, 2, 3):  # within 30 s of each other: the 2nd is not logged
            report(done, 3)
    lines = console.file.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["episodes 1/3", "episodes 3/3"]


def test_a_run_needing_a_dataset_another_process_is_generating_waits_and_uses_its_file(tmp_path, monkeypatch):
    path = generated_dataset_path("scene-play-v0", 20, tmp_path)
    path.parent.mkdir(parents=True)
    holder = textwrap.dedent(f"""
        import pathlib, sys, time
        import filelock
        with filelock.FileLock("{path}.lock"):
            print("holding", flush=True)
            time.sleep(1.5)
            pathlib.Path("{path}").write_bytes(b"made by the other process")
    """)
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "holding"
    generated = []
    monkeypatch.setattr(catalog, "generate_dataset", lambda *args, **kwargs: generated.append(args))
    console = Console(record=True, width=200)
    config = TrainConfig(env=TASK.env_name, cache_dir=tmp_path, dataset_episodes=20)
    assert dataset_file(config, TASK, console) == path
    assert other.wait(timeout=30) == 0
    assert path.read_bytes() == b"made by the other process" and generated == [], "generated once, by the other"
    assert "Another process is generating" in console.export_text()


def test_a_cached_dataset_is_generated_when_nobody_else_is_generating_it(tmp_path, monkeypatch):
    generated = []
    monkeypatch.setattr(catalog, "generate_dataset", lambda settings, out, **kwargs: generated.append(out))
    config = TrainConfig(env=TASK.env_name, cache_dir=tmp_path, dataset_episodes=20)
    path = dataset_file(config, TASK, Console(quiet=True))
    assert generated == [path] == [generated_dataset_path("scene-play-v0", 20, tmp_path)]
