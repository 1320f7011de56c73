"""benchmarks/training_diagnostics.py: chunkrl's and the official code's training logs read side by side."""

import pytest
import yaml

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def diagnostics():
    return load_benchmark("training_diagnostics")


def write_run(folder, agent, header, rows):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"agent": agent}))
    (folder / "train.csv").write_text(header + "\n" + "".join(row + "\n" for row in rows))


def test_each_codes_own_column_is_read_under_one_diagnostic(diagnostics, tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write_run(ours, "qc-rlpd", "step,phase,actor/temperature,actor/alpha,steps_per_second", ["6000,online,0.75,9,10"])
    # the official run: its temperature is actor/alpha; a row before the first update has blank info
    header = "step,phase,actor/alpha,actor/temperature,steps_per_second"
    write_run(theirs, "qc-rlpd (official code)", header, ["5000,online,,,300", "6000,online,0.123456,7,12"])
    table = diagnostics.tables([ours, theirs], [5000, 6000], ["temperature"])
    assert table.splitlines()[2:6] == [
        "| run | 5,000 | 6,000 |",
        "|---|---|---|",
        f"| qc-rlpd ({ours}) | - | 0.75 |",
        f"| qc-rlpd (official code) ({theirs}) | - | 0.1235 |",
    ]


def test_an_unknown_diagnostic_or_a_folder_without_a_log_is_named(diagnostics, tmp_path):
    with pytest.raises(SystemExit, match="unknown diagnostic.*alpha; choose from: critic_loss, q, entropy"):
        diagnostics.tables([tmp_path], [1000], ["alpha"])
    with pytest.raises(SystemExit, match="has no train.csv"):
        diagnostics.tables([tmp_path], [1000], ["q"])


def test_by_default_only_the_diagnostics_the_runs_logged_are_shown(diagnostics, tmp_path):
    """A flow agent's runs (chunkrl's and the official acfql's) log no temperature: their tables are the critic's and
    the flow losses only."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    write_run(ours, "qc-fql", "step,phase,critic/loss,critic/q_mean,actor/bc_flow_loss,actor/distill_loss",
              ["1000,offline,0.5,-29.4,0.34,0.02"])  # fmt: skip
    header = "step,phase,critic/critic_loss,critic/q_mean,actor/bc_flow_loss,actor/distill_loss,actor/alpha"
    write_run(theirs, "qc-fql (official code)", header, ["1000,offline,0.4,-28.1,0.33,0.03,"])
    shown = [line for line in diagnostics.tables([ours, theirs], [1000]).splitlines() if line.endswith(":")]
    assert shown == ["critic_loss:", "q:", "bc_flow_loss:", "distill_loss:"]
