"""chunkrl sweep (process pool and local Ray), bootstrap confidence intervals, plot and report."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from chunkrl.report.plot import bootstrap_ci, plot_runs, report_table
from chunkrl.sweep import Sweep, parse_seeds, run_sweep, setting_flags


def test_seed_ranges_and_settings():
    assert parse_seeds(["0-2", "5", "1"]) == [0, 1, 2, 5]
    assert setting_flags(["flow.alpha=300", "flow.actor_hidden_dims=16 16"]) == [
        "--flow.alpha", "300", "--flow.actor-hidden-dims", "16", "16"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="key=value"):
        setting_flags(["alpha"])
    with pytest.raises(ValueError, match="5-1 is an empty range; write it lowest first: 1-5"):
        parse_seeds(["5-1"])
    from chunkrl.sweep import settings_dict

    assert settings_dict(["flow.actor_hidden_dims=8", "flow.alpha=300", "sparse=", "no_tensorboard="]) == {
        "flow": {"actor_hidden_dims": [8], "alpha": 300}, "sparse": True, "tensorboard": False
    }  # fmt: skip


@pytest.mark.parametrize(
    ("agents", "envs", "settings", "message"),
    [
        (["qc-fq"], ["puzzle-3x3-play-singletask-task1-v0"], [], "Unknown agent 'qc-fq'"),
        (["qc-fql"], ["puzzle-3x3-play-singletask-task9-v0"], [], "task9"),
        (["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], ["flow.alpah=3"], r"unknown option\(s\) \['alpah'\]"),
        (["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], ["batch_size=big"], "batch_size: 'big' is not a valid"),
        (["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], ["batch_size=0"], "batch_size must be >= 1"),
    ],
)
def test_a_sweep_checks_every_trial_before_it_starts_one(tmp_path, agents, envs, settings, message):
    sweep = Sweep(agents, envs, [0, 1], tmp_path / "sweep", settings)
    with pytest.raises(ValueError, match=message):
        run_sweep(sweep)
    assert not (tmp_path / "sweep").exists()  # no trial ran, no folder was made


def test_a_sweep_refuses_to_resume_a_trial_started_with_other_settings(tmp_path):
    from chunkrl.config import TrainConfig, from_dict, save_config, to_dict

    env = "puzzle-3x3-play-singletask-task1-v0"
    started = Sweep(["qc-fql"], [env], [0, 1], tmp_path / "sweep", ["offline_steps=25", "flow.actor_hidden_dims=8 8"])
    run_dir = started.trials()[1].run_dir
    run_dir.mkdir(parents=True)
    config = from_dict(TrainConfig, {**to_dict(TrainConfig()), "agent": "qc-fql", "env": env, "seed": 1}, "test")
    config = from_dict(TrainConfig, {**to_dict(config), "offline_steps": 25, "flow": {"actor_hidden_dims": [8, 8]}})
    save_config(config, run_dir / "config.yaml")  # as a run of that sweep wrote it when it started
    from chunkrl.sweep import check_sweep

    check_sweep(started)  # the same settings: it resumes
    longer = Sweep(["qc-fql"], [env], [0, 1], tmp_path / "sweep", ["offline_steps=100", "flow.actor_hidden_dims=8 8"])
    with pytest.raises(ValueError, match=r"seed_1 was started with offline_steps=25, but the sweep now asks "
                                         r"offline_steps=100; .* move that run directory aside"):  # fmt: skip
        run_sweep(longer)
    wider = Sweep(["qc-fql"], [env], [0, 1], tmp_path / "sweep", ["offline_steps=100", "flow.actor_hidden_dims=16"])
    with pytest.raises(ValueError, match=r"\(and 1 more setting\(s\)\)"):
        check_sweep(wider)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]  # nothing ran, nothing was touched
    # how the run is logged and checkpointed changes nothing it trains: it resumes as it started
    kept = ["offline_steps=25", "flow.actor_hidden_dims=8 8", "keep_checkpoints=10", "log_interval=7", "device=cpu"]
    check_sweep(Sweep(["qc-fql"], [env], [0, 1], tmp_path / "sweep", kept))


def test_bootstrap_ci_by_hand():
    assert bootstrap_ci([0.2, 0.2, 0.2]) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2))
    # two seeds 0 and 1: resampled means are 0, 0.5 or 1 with probability 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are 0 and 1
    mean, low, high = bootstrap_ci([0.0, 1.0])
    assert (mean, low, high) == (0.5, 0.0, 1.0)
    mean, low, high = bootstrap_ci(np.linspace(0, 1, 50))
    assert low < mean < high and high - low < 0.4


def tiny_sweep(tmp_path, dataset, seeds):
    settings = [f"dataset_path={dataset}", "offline_steps=3", "online_steps=0", "batch_size=8",
                "flow.actor_hidden_dims=8", "flow.critic_hidden_dims=8", "flow.flow_steps=2",
                "eval_episodes=1", "max_episode_steps=50", "no_tensorboard="]  # fmt: skip
    return Sweep(["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], seeds, tmp_path / "sweep", settings)


def test_a_failing_trial_is_retried_once_and_reported(tmp_path):
    """(Finished trials, skipped when a sweep is launched again, and the report over them: the learning suite's
    test, tests/test_learning_suite.py, runs two real trials through the same pool.)"""
    missing = tmp_path / "missing.npz"  # valid settings, but the trial fails when it runs
    broken = Sweep(
        ["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], [7], tmp_path / "bad", [f"dataset_path={missing}"]
    )
    (failed,) = run_sweep(broken)
    assert failed.status == "failed" and failed.attempts == 2 and "missing.npz" in failed.error
    (row,) = csv.DictReader((broken.out / "sweep.csv").open())
    assert (row["seed"], row["status"], row["attempts"], row["success"]) == ("7", "failed", "2", "")


@pytest.mark.slow
def test_sweep_on_a_local_ray_instance(tiny_puzzle_dataset, tmp_path):
    import ray

    sweep = tiny_sweep(tmp_path, tiny_puzzle_dataset, [0])
    try:
        trials = run_sweep(sweep, ray_address="local")
    finally:
        ray.shutdown()
    assert [t.status for t in trials] == ["finished"]
    config = yaml.safe_load((trials[0].run_dir / "config.yaml").read_text())
    assert config["agent"] == "qc-fql" and config["offline_steps"] == 3


def test_report_and_plot_name_each_run_they_cannot_read_and_go_on_with_the_others(tiny_puzzle_dataset, tmp_path):
    from chunkrl.train.run import train
    from tests.conftest import tiny_config

    good = tmp_path / "good"
    train(tiny_config(tiny_puzzle_dataset), run_dir=good)
    listed = tmp_path / "listed"
    shutil.copytree(good, listed)
    (listed / "summary.json").write_text("[1, 2]")
    (listed / "eval.csv").write_text("garbage\n1\n")
    missing = tmp_path / "missing"
    missing.mkdir()
    warnings = []
    table = report_table([good, listed, missing], warn=warnings.append)
    assert "| qc-fql | puzzle-3x3-play-task1 | 1 |" in table
    assert any("listed/summary.json is not a chunkrl summary" in w for w in warnings)
    assert any("missing/config.yaml cannot be read" in w for w in warnings)
    warnings.clear()
    assert plot_runs([good, listed], tmp_path / "curves.png", warn=warnings.append).exists()
    assert len(warnings) == 1 and "listed/eval.csv is not an evaluation log" in warnings[0]
    with pytest.raises(ValueError, match="no run could be read"):
        report_table([missing], warn=warnings.append)


def test_a_ctrl_c_during_a_sweep_says_how_to_finish_it(monkeypatch, tmp_path, capsys):
    from chunkrl import cli, sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    code = cli.main(
        ["sweep", "--agents", "qc-fql", "--envs", "puzzle-3x3-play-singletask-task1-v0", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 130 and "sweep interrupted" in err and "second Ctrl-C" not in err


def test_sigterm_to_a_sweep_reaches_its_running_trial_and_starts_no_queued_one(monkeypatch, tmp_path):
    import os
    import signal
    import sys
    import threading
    import time

    from chunkrl import cli, sweep

    marker = tmp_path / "stopped"
    trial = [  # a stand-in for `chunkrl train`: on SIGTERM it records it and exits
        sys.executable, "-c",
        "import pathlib, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(marker)!r}).write_text('term'), sys.exit(3)))\n"
        "print('ready', flush=True)\ntime.sleep(60)",
    ]  # fmt: skip
    first, second = tmp_path / "first.log", tmp_path / "second.log"

    def two_trials_on_one_worker(settings, workers, ray_address, report):
        return list(sweep._pool_launcher(settings, 1)([(trial, str(first)), (trial, str(second))]))

    def terminate_once_the_first_runs():
        while not (first.exists() and "ready" in first.read_text()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` does: the sweep's process alone

    monkeypatch.setattr(sweep, "run_sweep", two_trials_on_one_worker)
    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_once_the_first_runs, daemon=True).start()
    try:
        code = cli.main(
            ["sweep", "--agents", "qc-fql", "--envs", "puzzle-3x3-play-singletask-task1-v0", "--out", str(tmp_path)]
        )
    finally:
        sweep._stopping.clear()
    assert code == 130 and marker.read_text() == "term"  # the running trial got the signal
    assert not second.exists() or "ready" not in second.read_text()  # the queued one never started
    assert signal.getsignal(signal.SIGTERM) is before and not sweep._running


def test_curves_and_baseline_levels_read_success_or_return_by_hand(tmp_path):
    from chunkrl.report.plot import curve, final_level, load_run, plotted_phases

    def run(name, offline_steps, rows, interval=0):
        path = tmp_path / name
        path.mkdir()
        config = f"agent: chunk-ppo\nenv: aloha-transfer-cube\noffline_steps: {offline_steps}\n"
        (path / "config.yaml").write_text(config + f"eval_interval: {interval}\n")
        lines = ["step,phase,success,return,length,episodes"]
        lines += [f"{step},{phase},{success},{ret},100,50" for step, phase, success, ret in rows]
        (path / "eval.csv").write_text("\n".join(lines) + "\n")
        return load_run(path, evaluations=True)

    seeds = [
        run("s0", 10, [(10, "offline", 0.1, 5.0), (30, "online", 0.2, 40.0), (60, "online", 0.6, 80.0)]),
        run("s1", 10, [(30, "online", 0.4, 60.0), (50, "online", 0.9, 90.0), (60, "online", 0.8, 100.0)]),
    ]
    # online steps count from the phase's start (offline_steps 10); 40 is missing for s1, so only 20 and 50
    online = curve(seeds, "online")
    assert [point[0] for point in online] == [20.0, 50.0]
    assert online[0][1] == pytest.approx(0.3) and online[1][1] == pytest.approx(0.7)
    assert online[0][2] == pytest.approx(0.2) and online[0][3] == pytest.approx(0.4)  # two seeds: CI spans them
    assert [point[1] for point in curve(seeds, "online", "return")] == [pytest.approx(50.0), pytest.approx(90.0)]
    assert final_level(seeds) == pytest.approx((0.7, 0.6, 0.8))  # the last rows: 0.6 and 0.8
    assert final_level(seeds, "return")[0] == pytest.approx(90.0)
    out = plot_runs([seeds[0].path], tmp_path / "r.png", metric="return", baselines=[seeds[1].path])
    assert out.exists() and out.with_suffix(".svg").exists()
    assert plotted_phases([seeds[:1]]) == ["offline", "online"] and plotted_phases([seeds[1:]]) == ["online"]
    with pytest.raises(ValueError, match="metric must be one of success, return"):
        plot_runs([seeds[0].path], tmp_path / "x.png", metric="length")
    # on-policy seeds evaluate a little past each multiple of eval_interval, each differently: drawn at the multiple
    ppo = [
        run("p0", 0, [(1021, "online", 0.5, 1.0), (2043, "online", 0.7, 1.0), (2500, "online", 0.9, 1.0)], 1000),
        run("p1", 0, [(1017, "online", 0.3, 1.0), (2001, "online", 0.5, 1.0), (2500, "online", 0.7, 1.0)], 1000),
    ]
    assert [(step, mean) for step, mean, _, _ in curve(ppo, "online")] == [
        (1000.0, pytest.approx(0.4)),
        (2000.0, pytest.approx(0.6)),
        (2500.0, pytest.approx(0.8)),
    ]  # 2,500 (the end, half an interval past 2,000) stays where it is


def test_runs_are_seeds_of_one_method_only_when_their_settings_agree(tmp_path):
    """Two configurations of one agent on one task are two groups named by what differs; the seed, the run a
    fine-tuning started from and a setting an older config lacks are no difference; unfinished runs enter no
    figure of the report."""
    from chunkrl.report.plot import Group, group_runs, load_run

    def run(name, status="finished", success=0.5, wall_seconds=60, **settings):
        path = tmp_path / name
        path.mkdir()
        config = {"agent": "qc-rlpd", "env": "puzzle-3x3-play-singletask-task1-v0", "offline_steps": 0}
        config.update({"seed": int(name[-1]), "init_from": f"/bc/{name}", "sac": {"width": [128, 128]}}, **settings)
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        evaluations = {"online_final": {"success": success}} if status == "finished" else {}
        summary = {"status": status, "evaluations": evaluations, "counters": {"online_step": 100}}
        summary["wall_seconds"] = wall_seconds
        summary |= {"machine": "CPU X; torch 2, 1 threads"} if name != "a1" else {}
        (path / "summary.json").write_text(json.dumps(summary))
        return path

    eight = [
        run("a0", actor_chunk=8, critic_horizon=3),
        run("a1", actor_chunk=8, critic_horizon=3, new_key=1, wall_seconds=120),
    ]
    three = [run("b0", actor_chunk=3, critic_horizon=3), run("b1", "interrupted", actor_chunk=3, critic_horizon=3)]
    wider = [run("c0", success=0.9, actor_chunk=3, critic_horizon=3, sac={"width": [256, 256]})]
    groups = group_runs([load_run(p) for p in [*eight, *three, *wider]])
    task = ("qc-rlpd", "puzzle-3x3-play-singletask-task1-v0")
    assert {group: [r.path.name for r in members] for group, members in groups.items()} == {
        Group(*task, "actor_chunk=8, sac.width=[128, 128]"): ["a0", "a1"],
        Group(*task, "actor_chunk=3, sac.width=[128, 128]"): ["b0", "b1"],
        Group(*task, "actor_chunk=3, sac.width=[256, 256]"): ["c0"],
    }  # each group shows its value of every setting that varies among them
    table = report_table([*eight, *three])
    # a0 on CPU X, a1 on a machine it did not record: a wall time per machine, each lettered, never their mean
    eight_row, three_row = "| qc-rlpd (actor_chunk=8) | puzzle-3x3-play-task1 | 2 |", "| qc-rlpd (actor_chunk=3) |"
    assert f"{eight_row} 0.50 [0.50, 0.50] | 100 | 1.0 (a) / 2.0 (b) |" in table
    assert f"{three_row} puzzle-3x3-play-task1 | 1 (+1 not finished) | 0.50 [0.50, 0.50] | 100 | 1.0 (a) |" in table
    # b1, not finished beside its finished seed b0, shows nothing in the table: the machines count a0 and b0
    assert "\n(a) Measured on: CPU X; torch 2, 1 threads (2 runs)." in table
    assert "\n(b) Measured on: not recorded (a run older than the record) (1 run)." in table
    one_machine = report_table([run("e0", wall_seconds=120), run("e1", wall_seconds=240)])
    assert "| qc-rlpd | puzzle-3x3-play-task1 | 2 | 0.50 [0.50, 0.50] | 100 | 3.0 |" in one_machine  # (2 + 4) / 2
    assert "\nMeasured on: CPU X; torch 2, 1 threads (2 runs)." in one_machine
    lone = report_table([three[1]])
    assert "| qc-rlpd | puzzle-3x3-play-task1 | 0 (+1 not finished) | no final evaluation | 100 | 1.0 |" in lone
    # named (a grid's methods): runs of two names are two methods even with the same settings, each shown by name
    twins = report_table([*eight, run("d0", actor_chunk=8, critic_horizon=3)], names={p: "long" for p in eight})
    assert "| long: qc-rlpd | puzzle-3x3-play-task1 | 2 | 0.50 [0.50, 0.50] |" in twins
    assert "| qc-rlpd | puzzle-3x3-play-task1 | 1 | 0.50 [0.50, 0.50] |" in twins


def test_a_setting_an_older_config_lacks_takes_its_default(tmp_path):
    """A run saved before ``sac.networks`` existed trained the default (fql) layers: it is a seed of the runs that
    say fql and apart from those that say rlpd; the same for a top-level setting (``action_norm``)."""
    from chunkrl.report.plot import Group, group_runs, load_run

    def run(name, top=None, **sac):
        path = tmp_path / name
        path.mkdir()
        config = {"agent": "qc-rlpd", "env": "puzzle-3x3-play-singletask-task4-v0", "seed": int(name[-1])}
        config |= {"sac": {"actor_hidden_dims": [256, 256, 256], **sac}, **(top or {})}
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        return load_run(path)

    old, fql, rlpd = run("old0"), run("fql1", networks="fql"), run("rlpd2", networks="rlpd")
    task = ("qc-rlpd", "puzzle-3x3-play-singletask-task4-v0")
    assert {g: [r.path.name for r in m] for g, m in group_runs([old, fql, rlpd]).items()} == {
        Group(*task, "sac.networks=fql"): ["old0", "fql1"],
        Group(*task, "sac.networks=rlpd"): ["rlpd2"],
    }
    units = run("units3", {"action_norm": "none"})
    assert {g.variant: [r.path.name for r in m] for g, m in group_runs([old, units]).items()} == {
        "action_norm=auto": ["old0"],
        "action_norm=none": ["units3"],
    }


def test_sweeps_on_one_pool_run_seed_by_seed_and_keep_their_own_tables(monkeypatch, tmp_path):
    from chunkrl import sweep as sweeps

    launched = []

    def pool(first, workers):
        def launch(jobs):
            launched.extend(command[command.index("--run-dir") + 1] for command, _ in jobs)
            return [(1, "trial failed\n")] * len(jobs)

        return launch

    monkeypatch.setattr(sweeps, "_pool_launcher", pool)
    env = "puzzle-3x3-play-singletask-task1-v0"
    one = Sweep(["qc-fql"], [env], [0, 1], tmp_path / "one")
    two = Sweep(["qc"], [env], [0, 1], tmp_path / "two", ["critic_horizon=5"])
    trials = sweeps.run_sweeps([one, two], workers=2)
    order = [str(Path(p).relative_to(tmp_path)).replace(f"/{env}", "") for p in launched]
    first_round = ["one/qc-fql/seed_0", "two/qc/seed_0", "one/qc-fql/seed_1", "two/qc/seed_1"]
    assert order == first_round * 2  # seed 0 of both configurations first; each failed trial retried once
    assert [t.status for t in trials] == ["failed"] * 4 and all(t.attempts == 2 for t in trials)
    assert len(list(csv.DictReader((tmp_path / "one" / "sweep.csv").open()))) == 2
    assert {row["agent"] for row in csv.DictReader((tmp_path / "two" / "sweep.csv").open())} == {"qc"}
    with pytest.raises(ValueError, match="same CPU and GPU share"):
        sweeps.run_sweeps([one, Sweep(["qc"], [env], [0], tmp_path / "three", cpus_per_trial=2)])


def test_a_trial_is_reported_when_it_ends_not_when_the_whole_pool_has(tmp_path):
    """The pool hands back each trial's outcome as soon as it (and those launched before it) ended: here the second
    trial waits for the first one's report, which could never come if outcomes were handed back all at once."""
    import sys

    from chunkrl import sweep

    released = tmp_path / "released"
    first = [sys.executable, "-c", "print('first')"]
    second = [  # exits 0 once released, 1 if nothing released it within 60 s
        sys.executable, "-c",
        "import pathlib, sys, time\n"
        f"deadline = time.time() + 60\n"
        f"while not pathlib.Path({str(released)!r}).exists() and time.time() < deadline: time.sleep(0.05)\n"
        f"sys.exit(0 if pathlib.Path({str(released)!r}).exists() else 1)",
    ]  # fmt: skip
    settings = Sweep(["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], [0], tmp_path)
    outcomes = sweep._pool_launcher(settings, 2)([(first, str(tmp_path / "1.log")), (second, str(tmp_path / "2.log"))])
    code, tail = next(outcomes)
    assert (code, tail.strip()) == (0, "first")
    released.write_text("reported")  # what the sweep's report does, while the second trial still runs
    assert next(outcomes)[0] == 0
    outcomes.close()  # a reader that stops reading stops no sweep: a later trial still starts
    assert sweep.run_command(first, 1, str(tmp_path / "3.log")) == (0, "first\n")


def test_a_sweep_started_after_a_stopped_one_runs_its_trials(monkeypatch, tmp_path):
    import sys

    from chunkrl import sweep

    sweep.stop_trials(None)  # what a sweep stopped by Ctrl-C leaves in its process (a notebook's kernel)
    monkeypatch.setattr(Sweep, "command", lambda self, trial: [sys.executable, "-c", "print('ran')"])
    (trial,) = sweep.run_sweeps([Sweep(["qc-fql"], ["puzzle-3x3-play-singletask-task1-v0"], [0], tmp_path)])
    log = (trial.run_dir.parent / "seed_0.log").read_text()
    assert log == "ran\nran\n" and trial.attempts == 2  # it ran (no summary: failed, so retried once)


def test_each_task_gets_a_row_and_each_method_one_colour_with_its_papers_curve(monkeypatch, tmp_path):
    """Runs on two tasks: a row of panels per task; a method keeps its colour in every row, and the paper's curve
    of a method on a task is drawn in that colour on that task's panel (not in one grey for all, which left two
    published curves told apart by their end points only)."""
    from matplotlib.axes import Axes

    from chunkrl.report.plot import PAPER_CURVES, plot_runs

    runs = []
    for agent, env in [("qc-fql", "puzzle-3x3"), ("fql", "puzzle-3x3"), ("qc-fql", "scene")]:
        path = tmp_path / f"{agent}-{env}"
        path.mkdir()
        config = {"agent": agent, "env": f"{env}-play-singletask-task4-v0", "offline_steps": 100000}
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        (path / "eval.csv").write_text("step,phase,success,return,length,episodes\n100000,offline,0.1,-400,500,50\n")
        runs.append(path)
    drawn, plot = {}, Axes.plot

    def recorded(ax, *args, **kwargs):
        drawn[kwargs["label"]] = (ax, kwargs["color"])
        return plot(ax, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recorded)
    plot_runs(runs, tmp_path / "curves.png", reference=PAPER_CURVES)
    seen = {label.split(",")[0] if label.startswith("paper ") else label.split(" (1")[0]: (ax.get_title(), color)
            for label, (ax, color) in drawn.items()}  # fmt: skip
    puzzle, scene = "puzzle-3x3-play-task4, offline", "scene-play-task4, offline"
    qc_fql, fql = seen["qc-fql on puzzle-3x3-play-task4"][1], seen["fql on puzzle-3x3-play-task4"][1]
    assert qc_fql != fql
    assert seen == {
        "qc-fql on puzzle-3x3-play-task4": (puzzle, qc_fql),
        "fql on puzzle-3x3-play-task4": (puzzle, fql),
        "qc-fql on scene-play-task4": (scene, qc_fql),
        "paper QC-FQL (puzzle-3x3-play-task4": (puzzle, qc_fql),
        "paper QC-FQL (scene-play-task4": (scene, qc_fql),
        "paper FQL (puzzle-3x3-play-task4": (puzzle, fql),  # no FQL run on scene: no paper FQL there
    }
    assert {ax.get_title() for ax, _ in drawn.values()} == {puzzle, scene}
    # online, the paper's curve of a method with an offline phase starts after its 1M offline steps: it says so
    for path in runs:
        (path / "eval.csv").write_text("step,phase,success,return,length,episodes\n150000,online,0.1,-400,500,50\n")
    online = tmp_path / "rlpd"
    online.mkdir()
    (online / "config.yaml").write_text(yaml.safe_dump({"agent": "rlpd", "env": "puzzle-3x3-play-singletask-task4-v0"}))
    (online / "eval.csv").write_text("step,phase,success,return,length,episodes\n50000,online,0.0,-500,500,50\n")
    drawn.clear()
    plot_runs([*runs, online], tmp_path / "online.png", reference=PAPER_CURVES)
    papers = sorted(label for label in drawn if label.startswith("paper ") and "puzzle" in label)
    assert papers == [
        "paper FQL (puzzle-3x3-play-task4, after its 1M offline steps, a point every 100k)",
        "paper QC-FQL (puzzle-3x3-play-task4, after its 1M offline steps, a point every 100k)",
        "paper RLPD (puzzle-3x3-play-task4, a point every 100k)",  # online only in the paper too
    ]


def test_a_published_curve_says_how_far_apart_its_points_are():
    from chunkrl.report.plot import reference_spacing

    assert reference_spacing([0.0, 100_000.0, 200_000.0]) == ", a point every 100k"  # the paper's 0.1M grid
    assert reference_spacing([0.0, 25_000.0, 100_000.0]) == ", a point every 25k"  # the closest two
    assert reference_spacing([0.0, 500.0]) == ", a point every 500"
    assert reference_spacing([100_000.0]) == ""


def test_each_panels_legend_lies_below_it_and_hides_no_curve(monkeypatch, tmp_path):
    """Inside a panel the legend covered points wherever matplotlib put it (chunking grid, scene online: QC-FQL's
    first two points hidden); below the panel, it covers nothing, however many curves it names."""
    from matplotlib.figure import Figure

    from chunkrl.report.plot import PAPER_CURVES, plot_runs

    runs = []
    for agent in ("qc-fql", "fql-n", "fql", "bfn-n", "bfn"):
        path = tmp_path / agent
        path.mkdir()
        config = {"agent": agent, "env": "scene-play-singletask-task4-v0", "offline_steps": 100000}
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        rows = "100000,offline,0.1,-400,500,50\n150000,online,0.9,-40,50,50\n"
        (path / "eval.csv").write_text("step,phase,success,return,length,episodes\n" + rows)
        runs.append(path)
    checked, save = [], Figure.savefig

    def inspected(fig, *args, **kwargs):
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend, panel = ax.get_legend(), ax.get_window_extent(renderer)
            box = legend.get_window_extent(renderer)
            checked.append((len(legend.get_texts()), box.y1 <= panel.y0, box.y0 >= 0))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", inspected)
    plot_runs(runs, tmp_path / "curves.png", reference=PAPER_CURVES)
    # offline and online panels, each naming 5 runs and 5 published curves, below the panel and inside the figure
    assert checked[:2] == [(10, True, True), (10, True, True)]


def test_the_report_says_whether_each_tasks_runs_trained_on_the_same_data(tmp_path):
    def run(name, env="task1", data="absent"):
        path = tmp_path / name
        path.mkdir()
        config = {"agent": "qc-fql", "env": f"puzzle-3x3-play-singletask-{env}-v0", "seed": int(name[-1])}
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        summary = {"status": "finished", "evaluations": {"offline_final": {"success": 0.5}}, "counters": {}}
        summary |= {} if data == "absent" else {"data": data}
        (path / "summary.json").write_text(json.dumps(summary))
        return path

    digest = {"transitions": 10, "sha256": "ab" * 32}
    other = {"transitions": 10, "sha256": "cd" * 32}
    same = report_table([run("a0", data=digest), run("a1", data=digest), run("a2")])
    line = "Training data, puzzle-3x3-play-task1: the same data: sha256 abababababab... (2 runs), not recorded"
    assert f"\n{line} (1 run)." in same
    apart = report_table([run("b0", "task2", digest), run("b1", "task2", other), run("b2", "task2", None)])
    assert (
        "\nTraining data, puzzle-3x3-play-task2: **2 different data sets**: sha256 abababababab... (1 run), "
        "sha256 cdcdcdcdcdcd... (1 run).\n" in apart
    )  # b2, an on-policy run, trained on no data set: not an older run
    assert "Training data" not in report_table([run("c0")])  # nothing recorded, nothing claimed
    # a run not finished beside finished seeds shows nothing in the table, so its data are not counted there
    stopped = run("d1", "task3", "absent")
    summary = json.loads((stopped / "summary.json").read_text()) | {"status": "interrupted"}
    (stopped / "summary.json").write_text(json.dumps(summary))
    beside = report_table([run("d0", "task3", digest), stopped])
    assert "\nTraining data, puzzle-3x3-play-task3: the same data: sha256 abababababab... (1 run).\n" in beside


def test_each_seed_is_shown_with_its_evaluations_wall_time_machine_and_data(tmp_path):
    """The per-seed table: online evaluations counted from the online phase's start (the first, one step in, at 0),
    an evaluation a run lacks as a dash, an unfinished run's status beside its wall time, the machine's name,
    family and model, the data digest's first characters."""
    from chunkrl.report.plot import seed_table, short_machine

    def run(name, seed, evaluations, status="finished", machine=None, digest=None, **settings):
        path = tmp_path / name
        path.mkdir()
        config = {"agent": "fql", "env": "scene-play-singletask-task4-v0", "offline_steps": 100, "seed": seed}
        (path / "config.yaml").write_text(yaml.safe_dump({**config, "eval_interval": 50, **settings}))
        summary = {"status": status, "evaluations": {}, "counters": {}, "wall_seconds": 150.0}
        summary |= ({"machine": machine} if machine else {}) | ({"data": {"sha256": digest}} if digest else {})
        (path / "summary.json").write_text(json.dumps(summary))
        rows = "".join(f"{step},{phase},{success},-1.0,10,50\n" for step, phase, success in evaluations)
        (path / "eval.csv").write_text("step,phase,success,return,length,episodes\n" + rows)
        return path

    xeon = "Intel(R) Xeon(R) Processor (family 6 model 207, 2 cores; SIMD: avx2); torch 2.13.0+cpu, 1 threads"
    steps = [(50, "offline", 0.0), (100, "offline", 0.25), (101, "online", 0.5), (150, "online", 0.75)]
    one = run("a-seed-1", 1, steps, machine=xeon, digest="1856e3888d76abcdef")  # paths in the other order than seeds
    zero = run("b-seed-0", 0, [(50, "offline", 0.125)], status="interrupted")
    other = run("b0", 0, [(100, "offline", 1.0)], agent="bfn", env="puzzle-3x3-play-singletask-task4-v0")
    table = seed_table([one, zero, other])
    scene = table[table.index("**scene-play-task4**") :]
    assert "| method | seed | 50 | 100 | online 0 | online 50 | wall time (min) | machine | data |" in scene
    assert "| fql | 0 | 0.12 | - | - | - | 2 (interrupted) | not recorded (a run older than the record) | - |" in scene
    assert "| fql | 1 | 0.00 | 0.25 | 0.50 | 0.75 | 2 | Intel Xeon 6/207 | 1856e388... |" in scene
    assert scene.index("| fql | 0 |") < scene.index("| fql | 1 |")  # by seed
    ten, nine = run("c-seed-10", 10, [(50, "offline", 0.0)]), run("d-seed-9", 9, [(50, "offline", 0.0)])
    by_number = seed_table([ten, nine])
    assert by_number.index("| fql | 9 |") < by_number.index("| fql | 10 |")  # seeds as numbers
    assert "| bfn | 0 | 1.00 | 2 | not recorded" in table[table.index("**puzzle-3x3-play-task4**") :]
    # a long phase shows one evaluation in k (at most 10 columns), counted back from its last: 26 -> every 3rd
    ppo = run(
        "p0",
        0,
        [(step, "online", 0.5) for step in range(40, 1041, 40)],
        agent="chunk-ppo",
        offline_steps=0,
        eval_interval=40,
    )
    title, _, header = seed_table([ppo]).splitlines()[:3]
    assert "(one in 3 of the online phase's, up to its last)" in title
    assert (
        header
        == "| method | seed | 80 | 200 | 320 | 440 | 560 | 680 | 800 | 920 | 1,040 | wall time (min) | machine | data |"
    )
    assert short_machine("AMD EPYC (family 25 model 1), 2 CPUs; jax 0.6.0 on cpu") == "AMD EPYC 25/1"
    from chunkrl.cli import main  # `chunkrl report --each-run`: the summary table, then this one

    assert main(["report", str(one), str(zero), "--each-run", "--out", str(tmp_path / "table.md")]) == 0
    written = (tmp_path / "table.md").read_text()
    assert written.index("| fql | scene-play-task4 | 1 (+1 not finished) |") < written.index(
        "| fql | 1 | 0.00 | 0.25 |"
    )
    assert short_machine("NVIDIA H200; torch 2.13.0") == "NVIDIA H200"
