"""benchmarks/peer_learning.py's export: the official code gets exactly the data and settings a chunkrl run trains
with. (Its ``train`` step runs in the official code's own JAX environment, which the test suite does not have.)"""

import argparse
import csv
import json
import os

import numpy as np
import pytest
import yaml

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def peer():
    return load_benchmark("peer_learning")


def run_config(tmp_path, dataset, **changes):
    values = {
        "agent": "qc-fql",
        "env": "puzzle-3x3-play-singletask-task1-v0",
        "dataset_path": str(dataset),
        "sparse": True,
        "offline_steps": 40,
        "online_steps": 0,
        "eval_interval": 20,
        "eval_episodes": 3,
        "batch_size": 16,
        "flow": {"actor_hidden_dims": [16], "critic_hidden_dims": [16, 16]},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**values, **changes}))
    return path


def test_export_writes_the_runs_transitions_under_the_official_names(peer, tiny_puzzle_dataset, tmp_path):
    out = tmp_path / "peer"
    peer.export(run_config(tmp_path, tiny_puzzle_dataset), out)
    data = np.load(out / "data.npz")
    source = np.load(tiny_puzzle_dataset)  # OGBench's layout: 2 episodes of 201 stored steps, the last one ending
    steps = np.r_[0:200, 201:401]  # each episode's 200 transitions: step t, its action, and step t + 1
    n = len(steps)
    np.testing.assert_array_equal(data["observations"], source["observations"][steps])
    np.testing.assert_array_equal(data["next_observations"], source["observations"][steps + 1])
    np.testing.assert_array_equal(data["actions"], source["actions"][steps])
    assert set(np.unique(data["rewards"])) <= {-1.0, 0.0}, "--sparse: -1 until solved, 0 then"
    assert data["terminals"].sum() == 2 and data["terminals"][-1] == 1.0, "the official 'terminals': episode ends"
    assert data["terminals"].shape == data["masks"].shape == (n,)
    # the official 'masks': 0 only where the task is solved (no bootstrap), i.e. where the sparse reward is 0
    np.testing.assert_array_equal(data["masks"] == 0.0, data["rewards"] == 0.0)
    # the official run's summary records these steps as chunkrl's summary records what it trains on
    from rich.console import Console

    from chunkrl.config import TrainConfig
    from chunkrl.data.catalog import load_dataset
    from chunkrl.envs.registry import make_env

    env = "puzzle-3x3-play-singletask-task1-v0"
    config = TrainConfig(env=env, dataset_path=tiny_puzzle_dataset, sparse=True)
    store = load_dataset(config, make_env(env, True), 0, Console(quiet=True))
    assert peer.data_record(dict(data)) == {"transitions": n, "sha256": store.content_digest()}

    assert yaml.safe_load((out / "chunkrl_config.yaml").read_text())["flow"]["alpha"] == 300  # resolved, as run
    settings = json.loads((out / "settings.json").read_text())
    official = settings["official"]
    assert official["alpha"] == 300, "the paper's QC-FQL alpha on puzzle-3x3, as chunkrl resolves it"
    assert (official["actor_hidden_dims"], official["value_hidden_dims"]) == ([16], [16, 16])
    assert (official["horizon_length"], official["batch_size"], official["actor_type"]) == (5, 16, "distill-ddpg")
    assert (settings["offline_steps"], settings["eval_interval"], settings["eval_episodes"]) == (40, 20, 3)


def test_export_maps_an_rlpd_run_onto_the_official_acrlpd_and_its_online_script(peer, tiny_puzzle_dataset, tmp_path):
    changes = {"agent": "qc-rlpd", "online_steps": 30, "start_training": 10, "utd_ratio": 2, "flow": {}}
    changes["sac"] = {"actor_hidden_dims": [16], "critic_hidden_dims": [16, 16], "num_critics": 3, "networks": "rlpd"}
    peer.export(run_config(tmp_path, tiny_puzzle_dataset, **changes), tmp_path / "peer")
    settings = json.loads((tmp_path / "peer" / "settings.json").read_text())
    assert settings["official_agent"] == "acrlpd"
    official = settings["official"]
    assert official["bc_alpha"] == 0.01, "QC-RLPD's behaviour-cloning weight, as chunkrl resolves it"
    assert (official["num_qs"], official["q_agg"], official["horizon_length"]) == (3, "mean", 5)
    assert (official["actor_hidden_dims"], official["value_hidden_dims"]) == ([16], [16, 16])
    assert official["action_chunking"] and official["target_entropy_multiplier"] == 0.5
    # the RLPD family's run defaults: main_online.py's half-dataset batches and random warm-up
    assert (settings["replay"], settings["warmup"], settings["start_training"]) == ("symmetric", "random", 10)
    assert (settings["offline_steps"], settings["online_steps"], settings["utd_ratio"]) == (40, 30, 2)


def test_export_refuses_what_the_official_code_cannot_run_and_a_used_folder(peer, tiny_puzzle_dataset, tmp_path):
    with pytest.raises(SystemExit, match="official code covers"):
        peer.export(run_config(tmp_path, tiny_puzzle_dataset, agent="diffusion-ql"), tmp_path / "a")
    act = {"agent": "qc-rlpd", "horizon": 3, "actor_chunk": 8, "sac": {"actor": "act", "rho": 0.5}}
    with pytest.raises(SystemExit, match="decoupled horizons.*sac.actor 'act'.*sac.networks 'fql'.*sac.rho") as refused:
        peer.export(run_config(tmp_path, tiny_puzzle_dataset, **act), tmp_path / "b")
    assert "Nothing was written" in str(refused.value) and not (tmp_path / "b").exists()
    with pytest.raises(SystemExit, match="executing part of each chunk"):
        peer.export(run_config(tmp_path, tiny_puzzle_dataset, execute_horizon=2), tmp_path / "c")
    used = tmp_path / "used"
    used.mkdir()
    (used / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not empty"):
        peer.export(run_config(tmp_path, tiny_puzzle_dataset), used)
    assert (used / "mine.txt").read_text() == "keep"


def test_a_resumed_official_run_keeps_the_progress_rows_of_the_steps_it_resumes_from(peer, tmp_path):
    progress = tmp_path / "train.csv"
    peer.keep_progress_through(progress, 0)  # a new run: the header alone
    assert progress.read_text().splitlines() == ["step,phase,steps_per_second"]
    rows = "1000,offline,20.5\n2000,offline,19.0\n3000,online,8.0\n4000,onl"  # the last row torn by a kill
    progress.write_text("step,phase,steps_per_second\n" + rows)
    peer.keep_progress_through(progress, 2500)  # its checkpoint was at step 2,500: 3,000 is logged again
    kept = ["step,phase,steps_per_second", "1000,offline,20.5", "2000,offline,19.0"]
    assert progress.read_text().splitlines() == kept
    episodes = tmp_path / "episodes.csv"  # the training episodes' log the same way, with its own columns
    episodes.write_text("step,phase,return,length,success\n500,online,-500.0,500,0.0\n3000,online,-20.0,21,1.0\n")
    peer.keep_progress_through(episodes, 2500, peer.EPISODE_COLUMNS)
    assert episodes.read_text().splitlines() == ["step,phase,return,length,success", "500,online,-500.0,500,0.0"]


def test_an_official_run_names_its_budget_from_the_start_so_its_progress_can_be_listed(peer, tmp_path):
    folder, out = tmp_path / "export", tmp_path / "run"
    folder.mkdir()
    out.mkdir()
    trial = {"agent": "qc-rlpd", "seed": 0, "offline_steps": 0, "online_steps": 50_000, "start_training": 5000}
    (folder / "chunkrl_config.yaml").write_text(yaml.safe_dump(trial))
    peer.write_config(folder, out, seed=2)
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written == {**trial, "agent": "qc-rlpd (official code)", "seed": 2, "tensorboard": False}
    rows = "".join(f"{step},online,{rate}\n" for step, rate in ((5000, 300.0), (6000, 9.0), (7000, 11.0)))
    (out / "train.csv").write_text("step,phase,steps_per_second\n" + rows)
    # the suite's listing of a running trial: 43,000 steps left at the median 10 steps/s of the updating rows
    suite = load_benchmark("learning_suite")
    assert suite.progress(out) == ": step 7,000 of 50,000, 10.0 steps/s, about 72 min of steps left"


def test_an_official_runs_progress_rows_carry_its_update_info_under_the_official_names(peer, tmp_path):
    metrics = ["actor/alpha", "critic/critic_loss"]
    columns = peer.progress_columns(metrics)
    assert columns == ["step", "phase", "actor/alpha", "critic/critic_loss", "steps_per_second"]
    out = tmp_path / "run"
    out.mkdir()
    progress = out / "train.csv"
    progress.write_text("step,phase,steps_per_second\n1000,online,400.0\n2000,online,390.0\n")  # begun without info
    peer.keep_progress_through(progress, 2000, columns)  # resumed: its rows kept, their info blank
    info = {"actor/alpha": np.float32(0.75), "critic/critic_loss": 0.0123456789, "actor/entropy": 3.0}
    with progress.open("a", newline="") as f:
        csv.writer(f).writerow(peer.progress_row(3000, "online", 350.0, metrics, None))  # acting, no update yet
        csv.writer(f).writerow(peer.progress_row(6000, "online", 9.5, metrics, info))
    header = "step,phase,actor/alpha,critic/critic_loss,steps_per_second"
    rows = ["1000,online,,,400.0", "2000,online,,,390.0", "3000,online,,,350.000", "6000,online,0.75,0.0123457,9.500"]
    assert progress.read_text().splitlines() == [header, *rows]
    # the suite's listing still finds the step and the rate among the info columns
    budget = {"offline_steps": 0, "online_steps": 10_000, "start_training": 5000}
    (out / "config.yaml").write_text(yaml.safe_dump(budget))
    suite = load_benchmark("learning_suite")
    assert suite.progress(out) == ": step 6,000 of 10,000, 9.5 steps/s, about 7 min of steps left"


def test_an_official_runs_online_evaluations_are_drawn_at_their_online_steps(peer, tmp_path):
    """The official scripts count the online phase from 0; an official run's eval.csv counts on from the offline
    steps, as chunkrl's does, so ``chunkrl plot`` draws its online points where chunkrl's are (not 100 before)."""
    from chunkrl.report.plot import curve, load_run

    scores = {"success": 0.25, "return": -30.0, "length": 40.0}
    rows = [peer.evaluation_row("offline", 100, 100, scores, 4), peer.evaluation_row("online", 50, 100, scores, 4)]
    assert [(row["phase"], row["step"], row["episodes"]) for row in rows] == [("offline", 100, 4), ("online", 150, 4)]
    config = {"agent": "qc-fql (official code)", "env": "puzzle-3x3-play-singletask-task4-v0", "offline_steps": 100}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "eval_interval": 50}))
    with open(tmp_path / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=peer.EVAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    record = load_run(tmp_path, evaluations=True)
    assert [point[0] for point in curve([record], "offline")] == [100]
    assert [point[:2] for point in curve([record], "online")] == [(50, 0.25)]


def test_export_gives_a_best_of_n_run_a_number_for_the_unused_alpha(peer, tiny_puzzle_dataset, tmp_path):
    # BFN-n has no distillation term (chunkrl leaves alpha unset); the official loss still computes
    # alpha * 0, which fails on None, so the export must write a number there
    peer.export(run_config(tmp_path, tiny_puzzle_dataset, agent="bfn-n"), tmp_path / "peer")
    assert yaml.safe_load((tmp_path / "peer" / "chunkrl_config.yaml").read_text())["flow"]["alpha"] is None
    official = json.loads((tmp_path / "peer" / "settings.json").read_text())["official"]
    assert official["alpha"] == 0.0
    chosen = (official["actor_type"], official["action_chunking"], official["actor_num_samples"])
    assert chosen == ("best-of-n", False, 4), "BFN-n: the best of 4 single actions"


def test_cpus_names_cpus_this_process_may_use(peer):
    allowed = sorted(os.sched_getaffinity(0))
    assert peer.cpu_list(str(allowed[0])) == {allowed[0]}
    assert peer.cpu_list(",".join(map(str, allowed))) == set(allowed)
    with pytest.raises(argparse.ArgumentTypeError, match="expected CPU numbers such as 0 or 0,1, got 'one'"):
        peer.cpu_list("one")
    with pytest.raises(argparse.ArgumentTypeError, match=f"CPU \\[{max(allowed) + 1}\\] is not one this process"):
        peer.cpu_list(str(max(allowed) + 1))
