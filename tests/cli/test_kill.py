"""A run killed with SIGKILL at random moments (mid-checkpoint included, if it falls there) resumes to the
same end state: counters, one CSV row per logged step, and every online step in the replay."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from chunkrl.train.checkpoint import resolve_checkpoint

pytestmark = pytest.mark.slow

ONLINE_STEPS = 120
ARGS = [
    "--agent", "qc-rlpd", "--env", "puzzle-3x3-play-singletask-task1-v0", "--online-steps", str(ONLINE_STEPS),
    "--start-training", "10", "--batch-size", "16", "--log-interval", "5", "--checkpoint-interval", "10",
    "--eval-interval", "0", "--eval-episodes", "1", "--max-episode-steps", "50", "--no-tensorboard",
    "--sac.actor-hidden-dims", "16", "--sac.critic-hidden-dims", "16", "--sac.num-critics", "2",
]  # fmt: skip


def start(*args):
    command = [sys.executable, "-m", "chunkrl.cli", "train", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_at(process, run, delay):
    """SIGKILL ``process`` ``delay`` seconds after its first log row (or at once if it ends sooner)."""
    deadline = time.time() + 120
    while not (run / "train.csv").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_sigkill_at_random_moments_then_resume_reaches_the_same_end_state(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    rng = random.Random(0)
    process = start(*ARGS, "--dataset-path", tiny_puzzle_dataset, "--run-dir", run)
    kill_at(process, run, rng.uniform(0.0, 1.5))
    for _ in range(3):  # resume, kill again at another random moment
        kill_at(start("--resume", run), run, rng.uniform(0.5, 3.0))
    final = subprocess.run(
        [sys.executable, "-m", "chunkrl.cli", "train", "--resume", str(run)], capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr
    checkpoint = resolve_checkpoint(run)
    counters = yaml.safe_load((checkpoint / "state.json").read_text())["counters"]
    assert counters["online_step"] == ONLINE_STEPS
    assert counters["online_updates"] == ONLINE_STEPS - 10 + 1
    with (run / "train.csv").open(newline="") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file)]
    assert steps == list(range(10, ONLINE_STEPS + 1, 5)), "one row per logged step, none lost or repeated"
    with np.load(checkpoint / "replay_online.npz") as replay:
        assert len(replay["rewards"]) == ONLINE_STEPS
    assert not list((run / "checkpoints").glob(".*.partial")), "no half-written checkpoint is left behind"
