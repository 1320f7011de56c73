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


def read_eval(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "eval.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a chunkrl run directory with evaluations?")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no evaluations yet: nothing to plot for {run_dir}")
    return rows


def read_reference(path: Path, task: str, method: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """The paper's curve split by phase: (phase step, mean, ci low, ci high) for offline and online."""
    curves = defaultdict(list)
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            if row["task"] != task or row["method"] != method:
                continue
            millions = float(row["step_millions"])
            values = (float(row["success_mean"]), float(row["ci95_low"]), float(row["ci95_high"]))
            if millions <= 1.0:
                curves["offline"].append((millions * 1e6, *values))
            if millions >= 1.0:
                curves["online"].append(((millions - 1.0) * 1e6, *values))
    return curves


def plot_runs(runs: list[Path], out: Path | None = None, reference: Path | None = None) -> Path:
    """Evaluation success of each run, offline and online phases side by side; write a PNG.

    With ``reference`` (the paper's curves CSV), the paper's curve for the same task and method is
    drawn over the same range of each phase, so a short run is compared with the paper's early points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    panels = dict(zip(("offline", "online"), axes, strict=True))
    extent = {"offline": 0.0, "online": 0.0}
    references = set()
    for index, run in enumerate(runs):
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        rows = read_eval(run)
        color = f"C{index % 10}"
        for phase, ax in panels.items():
            points = [
                (float(r["step"]) - (config["offline_steps"] if phase == "online" else 0), float(r["success"]))
                for r in rows
                if r["phase"] == phase
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", color=color, label=f"{config['agent']} seed {config['seed']}")
                extent[phase] = max(extent[phase], max(xs))
        references.add((paper_task_name(config["env"]), PAPER_METHOD_NAMES.get(config["agent"], config["agent"])))
    if reference is not None:
        for task, method in sorted(references):
            curves = read_reference(reference, task, method)
            for phase, ax in panels.items():
                points = [p for p in curves.get(phase, []) if p[0] <= max(extent[phase], 1e5) * 1.001]
                if points:
                    xs, mean, low, high = zip(*points, strict=True)
                    ax.plot(xs, mean, linestyle="--", marker="s", color="gray", label=f"paper {method} ({task})")
                    ax.fill_between(xs, low, high, color="gray", alpha=0.2)
    for phase, ax in panels.items():
        unit = "gradient steps" if phase == "offline" else "environment steps"
        ax.set_xlabel(f"{phase} {unit}")
        ax.set_title(phase)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("evaluation success rate")
    axes[0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    out = Path(out) if out else Path(runs[0]) / "success.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
