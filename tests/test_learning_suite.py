"""The learning suite's plumbing (benchmarks/learning_suite.py): a tiny grid of two real trials run through the
sweeps, resumed (skipped when finished), reported into a results page whose other text is kept."""

import contextlib
import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from chunkrl.config import TrainConfig
from chunkrl.sweep import check_sweep
from chunkrl.train.checkpoint import Counters, save_checkpoint
from chunkrl.train.run_dir import RunDirectoryBusy, RunDirectoryLock, lock_holder
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def suite():
    return load_benchmark("learning_suite")


def grid_file(tmp_path, dataset, **changes):
    grid = {
        "title": "Tiny",
        "about": "Two flow-step counts.",
        "envs": ["puzzle-3x3-play-singletask-task1-v0"],
        "seeds": "0",
        "set": [f"dataset_path={dataset}", "offline_steps=3", "online_steps=0", "batch_size=8", "eval_episodes=1",
                "max_episode_steps=50", "flow.actor_hidden_dims=8", "flow.critic_hidden_dims=8", "no_tensorboard="],
        "methods": {"two": {"agent": "qc-fql", "set": ["flow.flow_steps=2"]},
                    "three": {"agent": "qc-fql", "set": ["flow.flow_steps=3"]}},
        "paper_set": ["offline_steps=5"],
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**grid, **changes}))
    return path


@pytest.mark.slow
def test_a_grid_runs_resumes_and_writes_its_section_of_the_results_page(
    suite, tiny_puzzle_dataset, tmp_path, capsys, monkeypatch
):
    grid, out, docs = grid_file(tmp_path, tiny_puzzle_dataset), tmp_path / "runs", tmp_path / "docs"
    records = tmp_path / "records"
    docs.mkdir()
    (docs / "results.md").write_text("# Measured results\n\nWritten by hand.\n")
    report = ["report", str(grid), "--out", str(out), "--docs", str(docs), "--records", str(records)]
    assert suite.main(report) == 2
    assert "no trial of tiny has finished" in capsys.readouterr().err
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(records)]) == 0
    assert capsys.readouterr().out.count(" not started\n") == 2
    methods = {"two": {"agent": "qc-fql", "set": ["flow.flow_steps=2"]},
               "three": {"agent": "qc-fql", "init_from": "two", "set": ["flow.flow_steps=3"]}}  # fmt: skip
    chained = grid_file(tmp_path, tiny_puzzle_dataset, methods=methods)  # "three" starts from "two"'s weights
    assert suite.main(["run", str(chained), "--out", str(out), "--workers", "2"]) == 0
    runs = sorted(out.glob("tiny/*/*/qc-fql/seed_0/summary.json"))
    assert [p.relative_to(out).parts[1] for p in runs] == ["three", "two"]
    source, follower = (run.parent for run in reversed(runs))
    assert yaml.safe_load((follower / "config.yaml").read_text())["init_from"] == str(source)
    (row,) = csv.DictReader((out / "tiny" / "three" / "sweep.csv").open())
    assert (row["status"], row["attempts"]) == ("finished", "1"), "it started once, after its source had finished"
    # it ran after its source finished: its first checkpoint is newer than the source's summary
    assert (
        min(p.stat().st_mtime for p in (follower / "checkpoints").iterdir()) > (source / "summary.json").stat().st_mtime
    )
    (row,) = csv.DictReader((out / "tiny" / "two" / "sweep.csv").open())  # each configuration's own table
    assert (row["agent"], row["seed"], row["status"]) == ("qc-fql", "0", "finished") and row["success"] != ""
    capsys.readouterr()
    assert suite.main(["run", str(grid), "--out", str(out)]) == 0
    assert "2 of 2 trials finished (2 of them before this launch)" in capsys.readouterr().out  # nothing ran twice

    drawn, plot = [], suite.plot_runs
    monkeypatch.setattr(suite, "plot_runs", lambda runs, *a, **kw: drawn.append((runs, kw)) or plot(runs, *a, **kw))
    for _ in range(2):  # a second report replaces the section
        assert suite.main(report) == 0
    page = (docs / "results.md").read_text()
    # "two", which "three" starts from, is drawn as a level (its final success), "three" as a curve
    assert [(runs, kw["baselines"]) for runs, kw in drawn[-1:]] == [([follower], [source])]
    assert "bootstrap band); two, which the others start from, as a dotted level: its runs' final success" in page
    assert page.startswith("# Measured results\n\nWritten by hand.\n") and page.count("## Learning suite") == 1
    assert page.count("<!-- learning-suite: tiny -->") == 1 and page.count("<!-- /learning-suite: tiny -->") == 1
    # every grid's standing, first under the heading, replaced by each report: the tiny grid's and the suites' own
    assert page.count("<!-- learning-suite: status -->") == 1 and page.count("<!-- /learning-suite: status -->") == 1
    assert "## Learning suite\n\n<!-- learning-suite: status -->\nWhere the grids stand (written by `report`, " in page
    assert "\n| tiny | Tiny | 2 of 2 | - |\n" in page and "\n| chunking | The chunking gain: " in page
    assert "1 of 1" not in page and "2 of 2 trials finished" in page
    assert "| two: qc-fql (flow.flow_steps=2) | puzzle-3x3-play-task1 | 1 |" in page
    assert "| three: qc-fql (flow.flow_steps=3) | puzzle-3x3-play-task1 | 1 |" in page
    assert "Measured on: " in page and "Two flow-step counts." in page
    each_run = page[page.index('<details markdown="1"><summary>Each run') : page.index("</details>")]
    assert (
        "| two: qc-fql (flow.flow_steps=2) | 0 | " in each_run
        and "| three: qc-fql (flow.flow_steps=3) | 0 | " in each_run
    )
    assert (docs / "perf" / "suite_tiny.png").stat().st_size > 0
    # the finished trials' records are kept: with the run directories gone (another machine), the page is the same
    kept = sorted(p.relative_to(records) for p in records.rglob("*") if p.is_file())
    trial = Path("tiny/two/puzzle-3x3-play-singletask-task1-v0/qc-fql/seed_0")
    assert [p for p in kept if p.parent == trial] == [trial / "config.yaml", trial / "eval.csv", trial / "summary.json"]
    assert len(kept) == 6 and (records / trial / "eval.csv").read_text() == (out / trial / "eval.csv").read_text()
    out.rename(tmp_path / "elsewhere")
    assert suite.main(report) == 0
    again = (docs / "results.md").read_text()
    assert "2 of 2 trials finished, 2 of them from the records kept in " in again
    assert again.replace(", 2 of them from the records kept in " + str(records), "") == page
    capsys.readouterr()
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(records)]) == 0
    *listed, left = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and all(" recorded (success " in line and ", 3 steps, " in line for line in listed)
    assert left == "tiny: every trial finished"
    assert listed[1].startswith(str(trial))
    (tmp_path / "elsewhere").rename(out)
    # a record differs from its trial's finished run (a run made again): the run replaces it, and says so
    (records / trial / "eval.csv").write_text("step,phase,success\n")
    capsys.readouterr()
    assert suite.main(report) == 0
    assert f"{trial}: this run replaces the kept record of an earlier run" in capsys.readouterr().out
    assert (records / trial / "eval.csv").read_text() == (out / trial / "eval.csv").read_text()

    # official: the grid's method "two" again with the official code, on the data its chunkrl trial trained on
    official = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset, seeds="0-1", official=["two"])))
    notes = []
    ((run_dir, command),) = suite.official_jobs(official, out, False, Path("/venv/python"), warn=notes.append)
    assert run_dir == out / "tiny" / "two-official" / "puzzle-3x3-play-singletask-task1-v0" / "qc-fql" / "seed_0"
    waiting = run_dir.parent.relative_to(out) / "seed_1"
    assert notes == [f"  {waiting}: waits for its chunkrl trial (run the grid first)"]
    data = run_dir.parent / "data"
    assert command[:4] == ["/venv/python", str(suite.PEER_SCRIPT), "train", str(data)]
    assert command[4:] == ["--seed", "0", "--out", str(run_dir)]
    settings = json.loads((data / "settings.json").read_text())
    assert (settings["official"]["flow_steps"], settings["offline_steps"]) == (2, 3), "the trial's own settings"
    # what peer_learning.py train leaves behind (its JAX environment is not part of the test suite)
    run_dir.mkdir()
    config = yaml.safe_load((data / "chunkrl_config.yaml").read_text()) | {"agent": "qc-fql (official code)"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "eval.csv").write_text("step,phase,success,return,length,episodes\n3,offline,0.5,-30.0,50.0,1\n")
    final = {"offline_final": {"success": 0.5, "return": -30.0, "step": 3}}
    summary = {"status": "finished", "counters": {"offline_step": 3}, "evaluations": final, "wall_seconds": 6.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    assert suite.official_jobs(official, out, False, Path("/venv/python"), warn=notes.append) == []  # finished
    # counted as the page counts them: two and three at seed 0, and the official run of two at seed 0, of 6
    assert suite.finished_count(official, out, False, records) == (3, 6)

    def left_to_run(grid):
        return suite.left_to_run(grid, suite.standing(grid, out, False, records))

    # by method in the grid's order (safe_dump sorted "three" first)
    assert left_to_run(official) == "three: seed 1; two: seed 1; two-official: seed 1"
    twice = dataclasses.replace(official, envs=[*official.envs, "cube-double-play-singletask-task2-v0"])
    assert left_to_run(twice).startswith("three: 3 trials, seeds 0, 1 on 2 tasks; two: 3 trials, ")
    first_seed = suite.some_seeds(twice, [0])  # seed 0 finished on puzzle only: its other task is named
    assert left_to_run(first_seed) == (
        "three: seed 0 on cube-double-play-task2; two: seed 0 on cube-double-play-task2; "
        "two-official: seed 0 on cube-double-play-task2"
    )
    fresh = dataclasses.replace(official, envs=["cube-double-play-singletask-task2-v0"])
    assert left_to_run(fresh) == "all 6"  # nothing finished on that task
    more = dataclasses.replace(twice, methods=[*twice.methods, dataclasses.replace(twice.methods[0], name="four")])
    assert "; four: all 4; two-official: " in left_to_run(more)  # none of four finished
    assert suite.main(report) == 0
    page = (docs / "results.md").read_text()
    # the faked official run names no machine, the trained ones do: wall times per machine, lettered
    assert "| qc-fql (official code) | puzzle-3x3-play-task1 | 1 | 0.50 [0.50, 0.50] | 3 | 0.1 (b) |" in page
    assert "\n(b) Measured on: not recorded (a run older than the record) (1 run)." in page

    # the grid's budget raised afterwards: its runs (and their records) are of other settings, not its trials now
    longer = grid_file(tmp_path, tiny_puzzle_dataset, set=[s.replace("offline_steps=3", "offline_steps=5") for s in
                                                          yaml.safe_load(grid.read_text())["set"]])  # fmt: skip
    capsys.readouterr()
    assert suite.main(["list", str(longer), "--out", str(out), "--records", str(records)]) == 0
    *lines, _ = capsys.readouterr().out.splitlines()  # the trials, then the hours left
    said = "; started with offline_steps=3, but the sweep now asks offline_steps=5 (`run` refuses it)"
    assert len(lines) == 2 and all(line.endswith(said) for line in lines)
    assert suite.main(["run", str(longer), "--out", str(out)]) == 2
    assert "was started with offline_steps=3, but the sweep now asks offline_steps=5" in capsys.readouterr().err
    kept_before = {p: p.read_bytes() for p in records.rglob("*") if p.is_file()}
    assert suite.main(["report", str(longer), "--out", str(out), "--docs", str(docs), "--records", str(records)]) == 2
    printed = capsys.readouterr()
    assert printed.out.count("left out: ") == 2 and "no trial of tiny has finished" in printed.err
    assert {p: p.read_bytes() for p in records.rglob("*") if p.is_file()} == kept_before  # no record replaced

    # a grid with nothing finished beside one with finished trials: said so, the other's section and the table written
    grid_file(tmp_path, tiny_puzzle_dataset)  # the tiny grid's settings again
    (tmp_path / "later").mkdir()
    empty = tmp_path / "later" / "empty.yaml"
    empty.write_text(grid.read_text().replace("Tiny", "Later"))
    (docs / "results.md").write_text("# Measured results\n\n## Learning suite\n")
    assert suite.main(["report", str(empty), str(grid), "--out", str(out), "--docs", str(docs),
                       "--records", str(records)]) == 2  # fmt: skip
    printed, page = capsys.readouterr(), (docs / "results.md").read_text()
    assert "no trial of empty has finished" in printed.err and printed.out.startswith("tiny: ")
    assert "<!-- learning-suite: tiny -->" in page and "<!-- learning-suite: empty -->" not in page
    assert "\n| empty | Later | 0 of 2 | all 2 |\n" in page and "\n| tiny | Tiny | 2 of 2 | - |\n" in page


def test_a_chained_trial_waits_for_the_trial_it_starts_from(tmp_path):
    from chunkrl.sweep import Sweep, run_sweeps

    imitation = Sweep(["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], [0, 1], tmp_path / "imitation")
    rl = Sweep(["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], [0], tmp_path / "rl", init_from=imitation)
    seen = []
    (trial,) = run_sweeps([rl], report=seen.append)  # its source never ran: nothing starts
    assert trial.status == f"waits for {imitation.trials()[0].run_dir} to finish" and seen == [trial]
    assert not trial.run_dir.exists()
    assert rl.command(trial)[-4:] == [
        "--init-from",
        str(imitation.trials()[0].run_dir),
        "--run-dir",
        str(trial.run_dir),
    ]
    bigger = Sweep(["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], [2], tmp_path / "rl", init_from=imitation)
    with pytest.raises(ValueError, match=r"missing \[\('puzzle-3x3-play-singletask-task1-v0', 2\)\]"):
        check_sweep(bigger)


def test_grids_are_checked_before_anything_runs(suite, tiny_puzzle_dataset, tmp_path, capsys):
    def error_of(options, **changes):
        grid = str(grid_file(tmp_path, tiny_puzzle_dataset, **changes))
        assert suite.main(["run", grid, "--out", str(tmp_path), *options]) == 2
        return capsys.readouterr().err

    def error(**changes):
        return error_of([], **changes)

    assert "unknown key(s) method" in error(method={})
    assert "method 'x' takes agent (required)" in error(methods={"x": {"agnt": "qc"}})
    assert "the preset" in error(methods={"x": {"agent": "qc", "config": "configs/nope.yaml"}})
    assert "Did you mean: qc-fql" in error(methods={"x": {"agent": "qc-fq"}})
    assert "official lists method names of this grid (three, two)" in error(official=["four"])
    assert "tiny has no method four; its methods: three, two" in error_of(["--methods", "four"])
    assert "tiny has no seed 1, 2; its seeds: 0 (a seed outside" in error_of(["--seeds", "0-2"])
    grid = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset, seeds="0-2")))
    assert [t.seed for t in suite.trials(suite.some_seeds(grid, [1, 2]), tmp_path, False)] == [1, 2, 1, 2]
    assert "tiny has no task cube-double-play-singletask-task1-v0; its tasks: puzzle-3x3" in error_of(
        ["--envs", "cube-double-play-singletask-task1-v0"]
    )
    two_tasks = ["scene-play-singletask-task4-v0", "puzzle-3x3-play-singletask-task1-v0"]
    grid = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset, envs=two_tasks)))
    kept = suite.some_envs(grid, ["puzzle-3x3-play-singletask-task1-v0"])
    assert {t.env for t in suite.trials(kept, tmp_path, False)} == {"puzzle-3x3-play-singletask-task1-v0"}
    chained = {"bc": {"agent": "qc"}, "rl": {"agent": "qc", "init_from": "bc"}, "other": {"agent": "qc"}}
    grid = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset, methods=chained, official=["rl", "other"])))
    kept = suite.only(grid, ["rl"])  # with the method it starts from
    assert [m.name for m in kept.methods] == ["bc", "rl"] and kept.official == ["rl"]
    looped = {"a": {"agent": "qc", "init_from": "b"}, "b": {"agent": "qc", "init_from": "a"}}
    assert "init_from goes round in a circle: a -> b -> a" in error(methods=looped)
    assert "init_from names a method of this grid (a); got 'z'" in error(
        methods={"a": {"agent": "qc", "init_from": "z"}}
    )
    assert suite.main(["run", "dqx"]) == 2 and "Did you mean: dqc" in capsys.readouterr().err
    assert not any(tmp_path.glob("tiny"))  # nothing was made
    grid = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset)))
    (paper,) = {tuple(s.settings) for s in grid.sweeps(tmp_path, paper=True)[:1]}
    assert "offline_steps=5" in paper and "offline_steps=3" not in paper  # the paper scale replaces the setting
    for name in suite.grid_names():  # every grid that ships is valid, at both scales where it has two
        shipped = suite.load_grid(name)
        for sweep in shipped.sweeps(tmp_path) + (shipped.sweeps(tmp_path, True) if shipped.paper_settings else []):
            check_sweep(sweep)


def listed_two(capsys) -> str:
    """The listing's line of method "two"'s trial."""
    return next(line for line in capsys.readouterr().out.splitlines() if "/two/" in line)


def test_a_running_trial_is_listed_as_running_with_its_progress(suite, tmp_path, capsys):
    grid = grid_file(tmp_path, tmp_path / "unused.npz", set=["offline_steps=100", "online_steps=500"])  # the run's
    out = tmp_path / "runs"
    run = out / "tiny" / "two" / "puzzle-3x3-play-singletask-task1-v0" / "qc-fql" / "seed_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"agent": "qc-fql", "offline_steps": 100, "online_steps": 500}))
    (run / "summary.json").write_text(json.dumps({"status": "interrupted", "counters": {"offline_step": 40}}))
    rows = "".join(f"{step},offline,{1 / (step + 1):.100f},9.0\n" for step in range(100))  # 12 kB: read the end
    rows += "100,offline,0.5,2.5\n105,online,0.6,4.0\n110,online,0.4,0.5\n"  # 0.5: an evaluation in its interval
    (run / "train.csv").write_text("step,phase,critic/loss,steps_per_second\n" + rows + "115,onl")  # a row begun
    (run / ".lock").write_text(f"process {os.getpid()} on {socket.gethostname()} since 2026-12-04 04:37:56")
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(tmp_path / "records")]) == 0
    two = listed_two(capsys)
    # the median rate of the last 5 rows (9, 9, 2.5, 4, 0.5) is 4 steps/s; 490 steps left at 4 steps/s: 2 min
    assert two.endswith(
        f"running (process {os.getpid()} on {socket.gethostname()} since 2026-12-04 04:37:56): "
        "step 110 of 600, 4.0 steps/s, about 2 min of steps left"
    )
    # online, the first start_training steps only act: their fast rows give no rate
    config = {"agent": "qc-rlpd", "offline_steps": 0, "online_steps": 50_000, "start_training": 5000}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    grid = grid_file(tmp_path, tmp_path / "unused.npz", set=["offline_steps=0", "online_steps=50000"])  # the same
    warm_up = "".join(f"{step},online,0.1,300.0\n" for step in range(1000, 6000, 1000))
    (run / "train.csv").write_text("step,phase,critic/loss,steps_per_second\n" + warm_up)
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(tmp_path / "records")]) == 0
    assert listed_two(capsys).endswith(": step 5,000 of 50,000, no updates before step 5,000 (no rate yet)")
    with (run / "train.csv").open("a") as file:
        file.write("6000,online,0.1,10.0\n7000,online,0.1,8.0\n")  # 43,000 steps left at 9 steps/s: 80 min
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(tmp_path / "records")]) == 0
    assert listed_two(capsys).endswith(": step 7,000 of 50,000, 9.0 steps/s, about 80 min of steps left")
    (run / ".lock").write_text("")  # the run stopped: its last stop is what the listing says
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(tmp_path / "records")]) == 0
    assert "interrupted at 40 steps" in capsys.readouterr().out


def test_the_listing_says_how_many_core_hours_a_grid_has_left(suite, tmp_path, capsys):
    tasks = ["puzzle-3x3-play-singletask-task1-v0", "puzzle-3x3-play-singletask-task2-v0"]
    grid = grid_file(tmp_path, tmp_path / "unused.npz", envs=tasks, seeds="0-2", set=["offline_steps=100"])
    out, records = tmp_path / "runs", tmp_path / "records"

    def trial(root, method, task, seed, summary=None, csv_step=None, rate=None):
        run = root / "tiny" / method / tasks[task] / "qc-fql" / f"seed_{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({"agent": "qc-fql", "offline_steps": 100, "online_steps": 0}))
        if summary:
            (run / "summary.json").write_text(json.dumps(summary))
        if csv_step is not None:  # a train.csv without a rate column (an older run's) or with one
            header, row = (
                ("step,phase", f"{csv_step},offline")
                if rate is None
                else ("step,phase,steps_per_second", f"{csv_step},offline,{rate}")
            )
            (run / "train.csv").write_text(f"{header}\n{row}\n")
        return run

    # method "two" on task 1: seeds 0 and 1 finished (1 h here, 2 h in a record), seed 2 stopped at step 25 and
    # then ran on to step 40 before it was killed (its train.csv, with no rate); on task 2 one finished run of 10 h;
    # method "three" has finished nowhere, but its seed 0 on task 1 has run 20 steps at 0.01 steps/s
    trial(out, "two", 0, 0, {"status": "finished", "wall_seconds": 3600})
    trial(records, "two", 0, 1, {"status": "finished", "wall_seconds": 7200})
    stopped = trial(out, "two", 0, 2, {"status": "interrupted", "counters": {"offline_step": 25}}, csv_step=40)
    trial(out, "two", 1, 0, {"status": "finished", "wall_seconds": 36000})
    trial(out, "three", 0, 0, {"status": "interrupted", "counters": {"offline_step": 20}}, csv_step=20, rate=0.01)
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(records)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    # task 1's seed 2: the median of 1 h and 2 h, 60% left: 0.9 h; task 2's seeds 1 and 2: 10 h each (its own
    # task's run, not task 1's); three's seed 0: 80 steps at 0.01 steps/s, 2.2 h; its 5 others have nothing to go by
    assert last == (
        "tiny: 9 trials left: about 23.1 h of one core for 4 of them (a started trial's steps left at its own recent "
        "rate, evaluations not counted; any other at the median wall time of the finished trials of the same method, "
        "on the same task where one has finished, less what each has done); none finished to go by: three (5 trials)"
    )
    # the same trial with a rate of its own: 60 steps left at 0.01 steps/s, 1.7 h instead of 0.9 h
    (stopped / "train.csv").write_text("step,phase,steps_per_second\n40,offline,0.01\n")
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(records)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("tiny: 9 trials left: about 23.9 h of one core for 4")
    (stopped / "train.csv").write_text("step,phase\n40,offline\n")
    for seed in (1, 2):  # with task 2 all finished, only task 1's trial is left of "two"
        trial(out, "two", 1, seed, {"status": "finished", "wall_seconds": 1})
    assert suite.main(["list", str(grid), "--out", str(out), "--records", str(records)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("tiny: 7 trials left: about 3.1 h of one core for 2 of")


def test_a_trial_killed_outright_is_listed_with_the_checkpoint_it_resumes_from(suite, tmp_path, capsys):
    grid = grid_file(tmp_path, tmp_path / "unused.npz", set=["offline_steps=100", "online_steps=500"])  # the run's
    out = tmp_path / "runs"
    run = out / "tiny" / "two" / "puzzle-3x3-play-singletask-task1-v0" / "qc-fql" / "seed_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"agent": "qc-fql", "offline_steps": 100, "online_steps": 500}))

    def listed() -> str:
        assert suite.main(["list", str(grid), "--out", str(out), "--records", str(tmp_path / "records")]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if "/two/" in line)

    assert listed().endswith("started, no checkpoint yet")
    for step in (250, 1000):  # SIGKILL writes no summary and leaves no holder: the newest checkpoint is the news
        save_checkpoint(run, torch.nn.Linear(2, 2), {}, Counters(offline_step=step), TrainConfig(), {}, None)
    assert listed().endswith("stopped without a summary (killed?); resumes from its checkpoint at step 1,000")
    # a resume takes the newest checkpoint whose files match their checksums, and so does the listing
    (run / "checkpoints" / "step_000001000" / "model.safetensors").write_bytes(b"torn")
    assert listed().endswith("resumes from its checkpoint at step 250 (newer ones are damaged)")
    (run / "checkpoints" / "step_000000250" / "state.json").unlink()
    assert "cannot resume: no usable checkpoint in " in listed()
    # the official code writes a "running" summary at each checkpoint: with nobody holding the run, it was killed
    (run / "summary.json").write_text(json.dumps({"status": "running", "counters": {"offline_step": 250}}))
    assert listed().endswith("stopped without a word at 250 steps, 0 min, its last checkpoint (killed?; resumes)")


def official_child(lock: Path, seen: Path, then: str = "") -> str:
    """A stand-in for the official code: it waits until the lock names it, writes its number and the lock's line
    to ``seen``, then runs ``then``."""
    return (
        f"import os, pathlib, time\nlock, seen = pathlib.Path({str(lock)!r}), pathlib.Path({str(seen)!r})\n"
        "for _ in range(200):\n"
        "    if lock.read_text().startswith(f'process {os.getpid()} '): break\n"
        "    time.sleep(0.05)\n"
        f"seen.write_text(f'{{os.getpid()}}\\n' + lock.read_text())\n{then}"
    )


def test_an_official_run_of_a_trial_that_ran_elsewhere_exports_from_its_kept_record(
    suite, tiny_puzzle_dataset, tmp_path, monkeypatch
):
    grid = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset, official=["two"])))
    out, records, peer = tmp_path / "runs", tmp_path / "records", Path("/venv/python")
    ((trial, official),) = grid.official_runs(out)
    where, data = official.run_dir.relative_to(out), official.run_dir.parent / "data"
    notes, exported = [], []
    assert suite.official_jobs(grid, out, False, peer, warn=notes.append, records=records) == []
    assert notes == [f"  {where}: waits for its chunkrl trial (run the grid first)"]
    kept = suite.record_of(trial.run_dir, out, records) / "config.yaml"  # the trial finished on another machine
    kept.parent.mkdir(parents=True)
    kept.write_text("agent: qc-fql\n")
    done = lambda command, **kwargs: exported.append(command) or subprocess.CompletedProcess(command, 0, "", "")  # noqa: E731
    monkeypatch.setattr(suite.subprocess, "run", done)
    notes.clear()
    ((run_dir, command),) = suite.official_jobs(grid, out, False, peer, warn=notes.append, records=records)
    assert run_dir == official.run_dir and command[:4] == [str(peer), str(suite.PEER_SCRIPT), "train", str(data)]
    assert exported == [[sys.executable, str(suite.PEER_SCRIPT), "export", str(kept), str(data)]]
    assert notes == [f"  {where}: from the kept record {kept} (its chunkrl trial ran elsewhere)"]
    trial.run_dir.mkdir(parents=True)  # a run of the trial here is exported rather than its record
    (trial.run_dir / "config.yaml").write_text("agent: qc-fql\n")
    exported.clear()
    suite.official_jobs(grid, out, False, peer, warn=notes.append, records=records)
    assert [command[3] for command in exported] == [str(trial.run_dir / "config.yaml")]


def test_an_official_run_holds_its_run_directory_while_it_runs(suite, tmp_path, capsys):
    run_dir, seen = tmp_path / "qc-fql-official" / "seed_0", tmp_path / "seen.txt"
    lock = run_dir / ".lock"  # the official code cannot import chunkrl: its launcher holds the lock for it
    child = official_child(lock, seen)
    assert suite.run_official([(run_dir, [sys.executable, "-c", child])], tmp_path, workers=1) == 0
    pid, line = seen.read_text().split("\n")
    assert line.startswith(f"process {pid} on {socket.gethostname()} since "), "the lock names the official run"
    assert lock_holder(run_dir) is None, "released when the official run ends"
    seen.unlink()
    with RunDirectoryLock(run_dir):  # another launcher runs it: this one starts nothing
        assert suite.run_official([(run_dir, [sys.executable, "-c", child])], tmp_path, workers=1) == 1
    assert not seen.exists()
    assert f"{run_dir}: not started: The run directory {run_dir} is in use by process" in capsys.readouterr().out


def test_official_runs_side_by_side_are_pinned_to_cpus_of_their_own(suite, tmp_path, monkeypatch):
    """JAX ignores XLA's one-thread flags, so each official run gets ``--cpus`` with a CPU no other running one has."""
    monkeypatch.setattr(suite.os, "sched_getaffinity", lambda pid: {3, 5})
    started, jobs = tmp_path / "started", []
    started.mkdir()
    for seed in range(4):  # two at a time: each waits until its neighbour has started, so the two overlap
        child = (
            f"import pathlib, sys, time\nroot = pathlib.Path({str(started)!r})\n"
            f"(root / '{seed}').write_text(sys.argv[-1])\n"
            f"for _ in range(1000):  # at most 20 s\n"
            f"    if len(list(root.iterdir())) >= {2 * (seed // 2 + 1)}: break\n"
            "    time.sleep(0.02)\n"
        )
        jobs.append((tmp_path / f"seed_{seed}", [sys.executable, "-c", child]))
    assert suite.run_official(jobs, tmp_path, workers=2) == 0
    cpus = [(started / str(seed)).read_text() for seed in range(4)]
    assert sorted(cpus[:2]) == ["3", "5"] and sorted(cpus[2:]) == ["3", "5"]


def test_a_killed_launcher_leaves_the_lock_with_its_official_run(tmp_path):
    """SIGKILL to the launcher (no handler runs) must not leave its official run going in a directory nobody holds,
    where a second launcher would start another run beside it."""
    run_dir, seen = tmp_path / "qc-fql-official" / "seed_0", tmp_path / "seen.txt"
    child = official_child(run_dir / ".lock", seen, then="time.sleep(60)")
    launcher = (
        "import sys; from pathlib import Path; from tests.conftest import load_benchmark\n"
        f"load_benchmark('learning_suite').run_official([(Path({str(run_dir)!r}), sys.argv[1:])], Path('.'), 1)"
    )
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", launcher, sys.executable, "-c", child], cwd=root)
    try:
        for _ in range(400):
            if seen.exists() and seen.read_text().count("\n"):
                break
            time.sleep(0.05)
        pid = int(seen.read_text().split("\n")[0])
        process.kill()
        process.wait()
        with pytest.raises(RunDirectoryBusy, match=f"in use by process {pid} on"):
            RunDirectoryLock(run_dir).__enter__()
        assert lock_holder(run_dir).startswith(f"process {pid} on "), "`list` shows the official run running"
    finally:
        process.kill()
        if seen.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(seen.read_text().split("\n")[0]), signal.SIGKILL)
    for _ in range(200):  # the lock goes with the child's end
        try:
            RunDirectoryLock(run_dir).__enter__().__exit__()
            break
        except RunDirectoryBusy:
            time.sleep(0.05)
    else:
        raise AssertionError("the official run's end did not release its run directory")


def test_a_second_sigterm_lets_the_official_runs_finish_their_checkpoints(tmp_path):
    """`timeout` signals its whole process group: the launcher gets SIGTERM again while its runs write their
    checkpoints. It must wait for them and end with 130, not with a traceback."""
    run_dir, ready, done = tmp_path / "seed_0", tmp_path / "ready", tmp_path / "done"
    child = (
        "import pathlib, signal, sys, time\n"
        "def checkpoint(*args):\n"
        "    time.sleep(1.0)  # writing the checkpoint\n"
        f"    pathlib.Path({str(done)!r}).write_text('written')\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, checkpoint)\n"
        f"pathlib.Path({str(ready)!r}).write_text('up')\n"
        "time.sleep(60)\n"
    )
    launcher = (
        "import sys; from pathlib import Path; from tests.conftest import load_benchmark\n"
        f"jobs = [(Path({str(run_dir)!r}), sys.argv[1:])]\n"
        "sys.exit(load_benchmark('learning_suite').run_official(jobs, Path('.'), 1))"
    )
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, sys.executable, "-c", child], cwd=root, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(400):
            if ready.exists():
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the launcher has passed SIGTERM on and waits for its run's checkpoint
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in errors, errors
    assert done.read_text() == "written"


def test_list_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`list GRID | head -1`: the reader closes the pipe after one line; the suite stops without a traceback."""
    grid = tmp_path / "wide.yaml"
    methods = {f"m{i}": {"agent": "qc-fql"} for i in range(4)}
    grid.write_text(yaml.safe_dump({"title": "Wide", "envs": ["puzzle-3x3-play-singletask-task1-v0"], "seeds": "0-499",
                                    "methods": methods}))  # fmt: skip
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_suite.py"
    command = [sys.executable, str(script), "list", str(grid), "--out", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = process.stdout.readline()
    process.stdout.close()  # what `head -1` does after its line
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and first.decode().rstrip().endswith("not started")
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
