"""The training diagnostics of runs side by side: chunkrl's and the official code's ``train.csv`` at chosen steps.

    python benchmarks/training_diagnostics.py RUN_DIR [RUN_DIR ...] [--steps 6000 10000 20000] [--metrics entropy q]

Prints one Markdown table per diagnostic (a row per run, a column per step) from each run's ``train.csv``: the
latest update's values that the run logged at that step. chunkrl's SAC family and the official ``acrlpd`` agent
(benchmarks/peer_learning.py logs its update info under the official names) report the same quantities under
different names; this maps them:

- ``critic_loss``: chunkrl ``critic/loss`` (the mean over the chunks the TD loss keeps), official
  ``critic/critic_loss`` (the mean over every row, the masked ones counted as 0: lower by the masked fraction);
- ``q``: the critics' mean value on the batch's chunks, ``critic/q_mean`` in both;
- ``entropy``: minus the mean joint log-probability of the actor's sampled chunks, ``actor/entropy`` in both;
- ``temperature``: chunkrl ``actor/temperature``, official ``actor/alpha``;
- ``bc_loss``: the weighted behaviour-cloning term, ``actor/bc_loss`` in both.

The flow agents (QC-FQL and its baselines; the official ``acfql`` agent) log the critic's loss and Q under the same
names as above, and:

- ``bc_flow_loss``: the behaviour flow policy's flow-matching error, ``actor/bc_flow_loss`` in both (chunkrl's is
  the mean over the valid actions, the official one over every action, the padded ones counted as 0);
- ``distill_loss``: the one-step policy's squared distance to the flow policy's chunk from the same noise
  (unweighted by alpha), ``actor/distill_loss`` in both.

A run that did not log a step (or a diagnostic) shows ``-``. Where a run came from is named by its config.yaml's
agent (the official code's runs say so) and its directory.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml

DIAGNOSTICS = {
    "critic_loss": ("critic/loss", "critic/critic_loss"),
    "q": ("critic/q_mean", "critic/q_mean"),
    "entropy": ("actor/entropy", "actor/entropy"),
    "temperature": ("actor/temperature", "actor/alpha"),
    "bc_loss": ("actor/bc_loss", "actor/bc_loss"),
    "bc_flow_loss": ("actor/bc_flow_loss", "actor/bc_flow_loss"),
    "distill_loss": ("actor/distill_loss", "actor/distill_loss"),
}
"""A diagnostic's name -> (chunkrl's column, the official code's column)."""

OFFICIAL = "(official code)"


def read_run(run_dir: Path) -> tuple[str, dict[int, dict[str, str]]]:
    """The run's label (its agent and directory) and its ``train.csv`` rows by step."""
    config_path, progress = run_dir / "config.yaml", run_dir / "train.csv"
    if not progress.is_file():
        raise SystemExit(f"{run_dir} has no train.csv: give the directory of a chunkrl run or an official run")
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    label = f"{config.get('agent', '?')} ({run_dir})"
    with progress.open(newline="") as f:
        rows = {int(row["step"]): row for row in csv.DictReader(f) if (row.get("step") or "").isdigit()}
    return label, rows


def value(rows: dict[int, dict[str, str]], step: int, column: str) -> str:
    """The logged value at ``step`` (4 significant digits), ``-`` when the run has none."""
    text = (rows.get(step) or {}).get(column) or ""
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return "-"


def tables(run_dirs: list[Path], steps: list[int], names: list[str] | None = None) -> str:
    """The Markdown tables of ``names`` (keys of ``DIAGNOSTICS``; None: each that some run logged) at ``steps`` for
    the runs."""
    unknown = [name for name in names or [] if name not in DIAGNOSTICS]
    if unknown:
        raise SystemExit(f"unknown diagnostic(s) {', '.join(unknown)}; choose from: {', '.join(DIAGNOSTICS)}")
    runs = [read_run(run_dir) for run_dir in run_dirs]
    if names is None:  # a flow agent logs no temperature, the SAC family no distillation
        names = [name for name in DIAGNOSTICS if any(logged(label, rows, name) for label, rows in runs)]
    out = []
    for name in names:
        out += [f"{name}:", "", "| run | " + " | ".join(f"{step:,}" for step in steps) + " |"]
        out.append("|---|" + "---|" * len(steps))
        for label, rows in runs:
            out.append(f"| {label} | " + " | ".join(value(rows, step, column(label, name)) for step in steps) + " |")
        out.append("")
    return "\n".join(out)


def column(label: str, name: str) -> str:
    """The ``train.csv`` column of the diagnostic ``name`` in the code that made the run labelled ``label``."""
    ours, official = DIAGNOSTICS[name]
    return official if OFFICIAL in label else ours


def logged(label: str, rows: dict[int, dict[str, str]], name: str) -> bool:
    """Whether the run logged the diagnostic ``name`` (its code's column holds a value in some row)."""
    return any(row.get(column(label, name)) for row in rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (chunkrl's or the official code's)")
    parser.add_argument("--steps", nargs="+", type=int, default=[6000, 10000, 20000, 30000, 40000, 50000])
    parser.add_argument(
        "--metrics", nargs="+", default=None, help=f"of: {', '.join(DIAGNOSTICS)} (default: those the runs logged)"
    )
    args = parser.parse_args()
    print(tables(args.runs, args.steps, args.metrics))


if __name__ == "__main__":
    main()
