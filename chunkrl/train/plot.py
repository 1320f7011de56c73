"""Success-rate curves of runs, optionally beside the paper's published curves."""

from __future__ import annotations

import csv
import json
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


PAPER_CURVES = Path(__file__).resolve().parent.parent / "reference" / "qc_paper_curves.csv"
"""The paper's published success curves (mean and 95% CI per task and method), shipped with the package."""


def bootstrap_ci(values, confidence: float = 0.95, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and a percentile bootstrap interval of it (seeds resampled
    with replacement ``resamples`` times). One seed gives a zero-width interval."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    means = np.random.default_rng(seed).choice(values, size=(resamples, len(values))).mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(values.mean()), float(low), float(high)


def group_runs(runs: list[Path]) -> dict[tuple[str, str], list[Path]]:
    """Runs grouped by (agent, env): the seeds of one method on one task."""
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for run in runs:
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        groups[(config["agent"], config["env"])].append(Path(run))
    return dict(groups)


def _phase_points(run: Path, phase: str) -> dict[float, float]:
    config = yaml.safe_load((run / "config.yaml").read_text())
    shift = (config.get("offline_steps") or 0) if phase == "online" else 0
    return {float(r["step"]) - shift: float(r["success"]) for r in read_eval(run) if r["phase"] == phase}


def plot_runs(runs: list[Path], out: Path | None = None, reference: Path | None = None) -> Path:
    """Mean evaluation success per (method, task) over its seeds, with a 95% bootstrap confidence band,
    offline and online phases side by side; written as PNG and SVG (``out`` names the PNG).

    A step enters a group's curve where every seed of the group was evaluated. With ``reference`` (the
    paper's curves CSV; ``PAPER_CURVES`` ships with chunkrl), the paper's curve for the same task and
    method is drawn over the same range of each phase.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    panels = dict(zip(("offline", "online"), axes, strict=True))
    extent = {"offline": 0.0, "online": 0.0}
    references = set()
    for index, ((agent, env), members) in enumerate(sorted(group_runs(runs).items())):
        color = f"C{index % 10}"
        for phase, ax in panels.items():
            per_seed = [_phase_points(run, phase) for run in members]
            steps = sorted(set.intersection(*(set(points) for points in per_seed)))
            if not steps:
                continue
            stats = [bootstrap_ci([points[step] for points in per_seed]) for step in steps]
            mean, low, high = zip(*stats, strict=True)
            label = f"{agent} on {paper_task_name(env)} ({len(members)} seed{'s' if len(members) > 1 else ''})"
            ax.plot(steps, mean, marker="o", color=color, label=label)
            ax.fill_between(steps, low, high, color=color, alpha=0.2)
            extent[phase] = max(extent[phase], max(steps))
        references.add((paper_task_name(env), PAPER_METHOD_NAMES.get(agent, agent)))
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
        if ax.get_legend_handles_labels()[0]:  # a phase no run had (e.g. offline-only runs) stays empty
            ax.legend(fontsize=7)
    axes[0].set_ylabel("evaluation success (mean, 95% bootstrap CI over seeds)")
    axes[0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    out = Path(out) if out else Path(runs[0]) / "success.png"
    fig.savefig(out, dpi=120)
    fig.savefig(out.with_suffix(".svg"))
    plt.close(fig)
    return out


def report_table(runs: list[Path]) -> str:
    """A Markdown table per (method, task): seeds, final success mean with its 95% bootstrap CI, steps
    and wall time (means over seeds), from each run's summary.json."""
    lines = [
        "| method | task | seeds | final success (mean [95% CI]) | steps | wall time (min) |",
        "|---|---|---|---|---|---|",
    ]
    for (agent, env), members in sorted(group_runs(runs).items()):
        finals, steps, minutes = [], [], []
        for run in members:
            path = run / "summary.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist: has {run} finished (or been interrupted) yet?")
            summary = json.loads(path.read_text())
            evaluations = summary.get("evaluations", {})
            final = evaluations.get("online_final") or evaluations.get("offline_final")
            if final is not None:
                finals.append(final["success"])
            counters = summary.get("counters", {})
            steps.append(counters.get("offline_step", 0) + counters.get("online_step", 0))
            minutes.append(summary.get("wall_seconds", 0.0) / 60.0)
        if finals:
            mean, low, high = bootstrap_ci(finals)
            success = f"{mean:.2f} [{low:.2f}, {high:.2f}]"
        else:
            success = "no evaluation"
        lines.append(
            f"| {agent} | {paper_task_name(env)} | {len(members)} | {success} | {sum(steps) / len(steps):,.0f} | "
            f"{sum(minutes) / len(minutes):.1f} |"
        )
    return "\n".join(lines) + "\n"
