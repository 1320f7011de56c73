"""Success-rate curves of runs, optionally beside the paper's published curves."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import yaml

PAPER_METHOD_NAMES = {"qc-fql": "QC-FQL", "fql": "FQL", "fql-n": "FQL-n"}


def paper_task_name(env_name: str) -> str:
    """``scene-play-singletask-task2-v0`` -> ``scene-play-task2`` (the reference CSV's naming)."""
    return env_name.replace("-singletask", "").removesuffix("-v0")


def read_eval(run_dir: Path) -> tuple[list[float], list[float]]:
    path = Path(run_dir) / "eval.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a chunkrl run directory with evaluations?")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [float(r["step"]) for r in rows], [float(r["success"]) for r in rows]


def read_reference(path: Path, task: str, method: str) -> tuple[list[float], list[float], list[float], list[float]]:
    curves = defaultdict(list)
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            if row["task"] == task and row["method"] == method:
                curves["step"].append(float(row["step_millions"]) * 1e6)
                curves["mean"].append(float(row["success_mean"]))
                curves["low"].append(float(row["ci95_low"]))
                curves["high"].append(float(row["ci95_high"]))
    return curves["step"], curves["mean"], curves["low"], curves["high"]


def plot_runs(runs: list[Path], out: Path | None = None, reference: Path | None = None) -> Path:
    """Plot each run's evaluation success against the global step; write a PNG and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    shown_reference = set()
    for run in runs:
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        steps, success = read_eval(run)
        ax.plot(steps, success, marker="o", label=f"{config['agent']} seed {config['seed']} ({Path(run).name})")
        key = (paper_task_name(config["env"]), PAPER_METHOD_NAMES.get(config["agent"], config["agent"]))
        if reference is not None and key not in shown_reference:
            ref_steps, mean, low, high = read_reference(reference, *key)
            if ref_steps:
                ax.plot(ref_steps, mean, linestyle="--", color="gray", label=f"paper {key[1]} on {key[0]}")
                ax.fill_between(ref_steps, low, high, color="gray", alpha=0.2)
                shown_reference.add(key)
    ax.axvline(yaml.safe_load((Path(runs[0]) / "config.yaml").read_text())["offline_steps"], color="k", lw=0.5)
    ax.set_xlabel("step (offline gradient steps, then online environment steps)")
    ax.set_ylabel("evaluation success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out) if out else Path(runs[0]) / "success.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
