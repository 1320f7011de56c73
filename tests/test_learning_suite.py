"""The learning suite's plumbing (benchmarks/learning_suite.py): a tiny grid of two real trials run through the
sweeps, resumed (skipped when finished), reported into a results page whose other text is kept."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from chunkrl.sweep import check_sweep

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("learning_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["learning_suite"] = module
    spec.loader.exec_module(module)
    return module


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
def test_a_grid_runs_resumes_and_writes_its_section_of_the_results_page(suite, tiny_puzzle_dataset, tmp_path, capsys):
    grid, out, docs = grid_file(tmp_path, tiny_puzzle_dataset), tmp_path / "runs", tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Measured results\n\nWritten by hand.\n")
    assert suite.main(["report", str(grid), "--out", str(out), "--docs", str(docs)]) == 2
    assert "no trial of tiny has finished" in capsys.readouterr().err
    assert suite.main(["run", str(grid), "--out", str(out), "--workers", "2"]) == 0
    runs = sorted(out.glob("tiny/*/*/qc-fql/seed_0/summary.json"))
    assert [p.relative_to(out).parts[1] for p in runs] == ["three", "two"]
    (row,) = csv.DictReader((out / "tiny" / "two" / "sweep.csv").open())  # each configuration's own table
    assert (row["agent"], row["seed"], row["status"]) == ("qc-fql", "0", "finished") and row["success"] != ""
    capsys.readouterr()
    assert suite.main(["run", str(grid), "--out", str(out)]) == 0
    assert "2 of 2 trials finished (2 of them before this launch)" in capsys.readouterr().out  # nothing ran twice

    for _ in range(2):  # a second report replaces the section
        assert suite.main(["report", str(grid), "--out", str(out), "--docs", str(docs)]) == 0
    page = (docs / "results.md").read_text()
    assert page.startswith("# Measured results\n\nWritten by hand.\n") and page.count("## Learning suite") == 1
    assert page.count("<!-- learning-suite: tiny -->") == 1 and page.count("<!-- /learning-suite: tiny -->") == 1
    assert "1 of 1" not in page and "2 of 2 trials finished" in page
    assert "| qc-fql (flow.flow_steps=2) | puzzle-3x3-play-task1 | 1 |" in page
    assert "| qc-fql (flow.flow_steps=3) | puzzle-3x3-play-task1 | 1 |" in page
    assert "Measured on: " in page and "Two flow-step counts." in page
    assert (docs / "perf" / "suite_tiny.png").stat().st_size > 0


def test_grids_are_checked_before_anything_runs(suite, tiny_puzzle_dataset, tmp_path, capsys):
    def error(**changes):
        assert (
            suite.main(["run", str(grid_file(tmp_path, tiny_puzzle_dataset, **changes)), "--out", str(tmp_path)]) == 2
        )
        return capsys.readouterr().err

    assert "unknown key(s) method" in error(method={})
    assert "method 'x' takes agent (required)" in error(methods={"x": {"agnt": "qc"}})
    assert "the preset" in error(methods={"x": {"agent": "qc", "config": "configs/nope.yaml"}})
    assert "Did you mean: qc-fql" in error(methods={"x": {"agent": "qc-fq"}})
    assert suite.main(["run", "dqx"]) == 2 and "Did you mean: dqc" in capsys.readouterr().err
    assert not any(tmp_path.glob("tiny"))  # nothing was made
    grid = suite.load_grid(str(grid_file(tmp_path, tiny_puzzle_dataset)))
    (paper,) = {tuple(s.settings) for s in grid.sweeps(tmp_path, paper=True)[:1]}
    assert "offline_steps=5" in paper and "offline_steps=3" not in paper  # the paper scale replaces the setting
    for name in suite.grid_names():  # every grid that ships is valid, at both scales where it has two
        shipped = suite.load_grid(name)
        for sweep in shipped.sweeps(tmp_path) + (shipped.sweeps(tmp_path, True) if shipped.paper_settings else []):
            check_sweep(sweep)
