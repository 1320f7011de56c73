"""Success-rate (or return) curves of runs, optionally beside the paper's published curves or the final level of
other runs (e.g. the imitation runs a fine-tuning started from)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

import yaml

from chunkrl.dotted import flatten

PAPER_METHOD_NAMES = {
    "qc-fql": "QC-FQL",
    "fql": "FQL",
    "fql-n": "FQL-n",
    "qc": "QC",
    "bfn": "BFN",
    "bfn-n": "BFN-n",
    "rlpd": "RLPD",
    "rlpd-ac": "RLPD-AC",
}
"""chunkrl's agent names -> the method names of the paper's curves (``reference/qc_paper_curves.csv``)."""

BOOKKEEPING = frozenset(
    {
        "seed",
        "seeds",
        "device",
        "tensorboard",
        "wandb",
        "log_interval",
        "checkpoint_interval",
        "keep_checkpoints",
        "generate_workers",
        "generate_missing",
        "cache_dir",
        "dataset_dir",
        "init_from",
        "allow_partial_init",
    }
)
"""Settings that say where or how a run was kept, not what was trained: runs that differ only in these (the seed,
the imitation run each fine-tuning started from) are seeds of one method. Any other difference makes them two."""


def paper_task_name(env_name: str) -> str:
    """``scene-play-singletask-task2-v0`` -> ``scene-play-task2`` (the reference CSV's naming)."""
    return env_name.replace("-singletask", "").removesuffix("-v0")


@dataclass
class RunRecord:
    """What plots and reports read of a run directory, checked when it is loaded."""

    path: Path
    agent: str
    env: str
    offline_steps: int
    eval_interval: int = 0
    evaluations: list[tuple[str, float, float, float]] | None = None  # (phase, step, success, return) of eval.csv
    summary: dict | None = None  # summary.json
    settings: dict[str, object] = field(default_factory=dict)  # config.yaml flattened: ``sac.act.width``
    name: str = ""  # the method's name in a grid (``dqc-qc``), when the caller gives one


def load_run(run: Path, evaluations: bool = False, summary: bool = False) -> RunRecord:
    """A run's config (and, as asked, its eval.csv rows or summary.json); a missing or malformed file is a
    ``ValueError`` naming it."""
    run = Path(run)
    path = run / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path} cannot be read ({error}); is {run} a chunkrl run directory?") from None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("agent"), str)
        or not isinstance(config.get("env"), str)
    ):
        raise ValueError(f"{path} is not a chunkrl run config (it names no agent and env)")
    offline_steps = config.get("offline_steps") or 0
    if not isinstance(offline_steps, int):
        raise ValueError(f"{path}: offline_steps {offline_steps!r} is not a whole number")
    interval = config.get("eval_interval") or 0
    interval = interval if isinstance(interval, int) else 0
    record = RunRecord(run, config["agent"], config["env"], offline_steps, interval, settings=flatten(config))
    if evaluations:
        record.evaluations = _read_eval(run / "eval.csv")
    if summary:
        record.summary = _read_summary(run / "summary.json")
    return record


METRICS = {"success": 2, "return": 3}
"""The metrics a curve can show: their positions in an evaluation row."""


def _read_eval(path: Path) -> list[tuple[str, float, float, float]]:
    try:
        with path.open(newline="") as f:
            rows = [(r["phase"], float(r["step"]), float(r["success"]), float(r["return"])) for r in csv.DictReader(f)]
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: the run has no evaluations") from None
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as error:
        raise ValueError(
            f"{path} is not an evaluation log with phase, step, success and return columns ({error})"
        ) from None
    if not rows:
        raise ValueError(f"{path} holds no evaluations yet")
    return rows


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: has the run finished (or been interrupted) yet?") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({error})") from None
    if not isinstance(summary, dict) or not all(
        isinstance(summary.get(k, {}), dict) for k in ("evaluations", "counters")
    ):
        raise ValueError(f"{path} is not a chunkrl summary (a JSON object with evaluations and counters)")
    numbers = [summary.get("wall_seconds", 0.0), *summary.get("counters", {}).values()]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        raise ValueError(f"{path} holds a counter or wall time that is not a number")
    return summary


def load_runs(
    runs: list[Path], warn: Callable[[str], None], names: dict[Path, str] | None = None, **reads: bool
) -> list[RunRecord]:
    """Every run that can be read (see ``load_run``), each with its method's name from ``names`` where given;
    each one that cannot is named through ``warn`` and left out, and only when none is left is it an error."""
    records, problems = [], []
    for run in runs:
        try:
            records.append(load_run(run, **reads))
            records[-1].name = (names or {}).get(Path(run), "")
        except ValueError as error:
            problems.append(str(error))
            warn(f"left out: {error}")
    if not records:
        raise ValueError("no run could be read: " + "; ".join(problems))
    return records


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


@dataclass(frozen=True, order=True)
class Group:
    """One method on one task: runs whose settings agree except for bookkeeping (``BOOKKEEPING``). ``variant``
    names the settings that set it apart from the other groups of the same agent and task (empty when there is
    none), e.g. ``actor_chunk=8, execute_horizon=3``; ``name`` is the method's name in a grid, when known."""

    agent: str
    env: str
    variant: str = ""
    name: str = ""

    def label(self) -> str:
        """``dqc-qc: dqc (critic_horizon=5)``: the method's name (when it says more than the rest), the agent and
        its variant."""
        described = f"{self.agent} ({self.variant})" if self.variant else self.agent
        return f"{self.name}: {described}" if self.name and self.name != described else described


def group_runs(records: list[RunRecord]) -> dict[Group, list[RunRecord]]:
    """Runs grouped into the seeds of one method on one task: the same agent, environment and settings (all but
    ``BOOKKEEPING``) and, where the records have one, the same method name. Two configurations of one agent on one
    task are two groups, each named by the settings in which they differ; they are never averaged together.

    A config older than a setting lacks it. Where the setting has a default (``sac.networks: fql``), the run takes
    that default, as a resume of it would; a setting defaulting to None (resolved per method when a run starts)
    or unknown to this code is no difference."""
    kept: list[tuple[str, str, dict[str, str], list[RunRecord]]] = []  # agent, env, settings, members
    defaults = _defaults()
    for record in records:
        sections = {key.split(".")[0] for key in record.settings if "." in key}  # the family's, as saved
        ours = [k for k in defaults if "." not in k or k.split(".")[0] in sections]
        lacked = {k: defaults[k] for k in ours if k not in record.settings}
        settings = {k: repr(v) for k, v in {**lacked, **record.settings}.items() if k not in BOOKKEEPING}
        for agent, env, shared, members in kept:
            same_method = (agent, env, members[0].name) == (record.agent, record.env, record.name)
            if same_method and not _differing(shared, settings):
                members.append(record)
                shared.update(settings)
                break
        else:
            kept.append((record.agent, record.env, settings, [record]))
    groups: dict[Group, list[RunRecord]] = {}
    for agent, env, settings, members in kept:
        siblings = [other for a, e, other, _ in kept if (a, e) == (agent, env) and other is not settings]
        differing = sorted({key for other in siblings for key in _differing(settings, other)})
        variant = ", ".join(f"{key}={_plain(settings[key])}" for key in differing)
        groups[Group(agent, env, variant, members[0].name)] = members
    return groups


def _defaults() -> dict[str, object]:
    """Every setting's default in this code, flattened (``sac.networks``), those left at None out."""
    from chunkrl.config import TrainConfig, to_dict  # here, not above: the config imports the agents and torch

    return {key: value for key, value in flatten(to_dict(TrainConfig())).items() if value is not None}


def _differing(one: dict[str, str], other: dict[str, str]) -> list[str]:
    return [key for key in one.keys() & other.keys() if one[key] != other[key]]


def _plain(text: str) -> str:
    """A setting's repr as a user would write it: ``(256, 256)`` -> ``[256, 256]``, ``'mask'`` -> ``mask``."""
    return text.strip("'").replace("(", "[").replace(",)", "]").replace(")", "]")


SNAP = 0.5
"""An evaluation less than this fraction of ``eval_interval`` past a multiple of it is drawn at that multiple: on-policy
runs evaluate at the end of the first rollout past it (102,109 or 119,660 for 100,000 with rollouts of 20,480
steps), differently per seed."""


def _phase_points(record: RunRecord, phase: str, metric: str = "success") -> dict[float, float]:
    shift = record.offline_steps if phase == "online" else 0
    column, interval = METRICS[metric], record.eval_interval
    points = {}
    for row in record.evaluations:
        if row[0] != phase:
            continue
        step = row[1] - shift
        if interval > 0 and step % interval < SNAP * interval:
            step -= step % interval
        points[step] = row[column]
    return points


def curve(members: list[RunRecord], phase: str, metric: str = "success") -> list[tuple[float, float, float, float]]:
    """(step, mean, 95% CI low, high) over the seeds ``members`` at each step of ``phase`` where all of them were
    evaluated (steps of the online phase counted from its start)."""
    per_seed = [_phase_points(run, phase, metric) for run in members]
    steps = sorted(set.intersection(*(set(points) for points in per_seed)))
    return [(step, *bootstrap_ci([points[step] for points in per_seed])) for step in steps]


def final_level(members: list[RunRecord], metric: str = "success") -> tuple[float, float, float]:
    """(mean, 95% CI low, high) of each run's last evaluation: the level a baseline line draws."""
    return bootstrap_ci([run.evaluations[-1][METRICS[metric]] for run in members])


def plotted_phases(groups: list[list[RunRecord]], metric: str = "success") -> list[str]:
    """The phases with a curve to draw, in order: a panel for each (fine-tuning runs without an offline phase get
    the online one alone); both when no group has any point."""
    phases = [phase for phase in ("offline", "online") if any(curve(members, phase, metric) for members in groups)]
    return phases or ["offline", "online"]


def reference_spacing(steps) -> str:
    """How far apart a published curve's points lie (", a point every 100k"), so that the dashed line joining
    them is not read as the paper's value between them; nothing for a single point."""
    if len(steps) < 2:
        return ""
    gap = min(b - a for a, b in zip(steps, steps[1:], strict=False))
    return f", a point every {gap / 1e3:,.0f}k" if gap >= 1e3 else f", a point every {gap:,.0f}"


def plot_runs(
    runs: list[Path],
    out: Path | None = None,
    reference: Path | None = None,
    warn: Callable[[str], None] = print,
    metric: str = "success",
    baselines: list[Path] = (),
    names: dict[Path, str] | None = None,
) -> Path:
    """Mean evaluation ``metric`` (success or return) per (method, task) over its seeds, with a 95% bootstrap
    confidence band, offline and online phases side by side (a phase no run has is left out), a row of them per
    task, each method in one colour in every row; written as PNG and SVG (``out`` names the PNG).

    A step enters a group's curve where every seed of the group was evaluated. With ``reference`` (the
    paper's curves CSV; ``PAPER_CURVES`` ships with chunkrl; success only), the paper's curve for the same task
    and method is drawn over the same range of each phase, dashed, in the colour of chunkrl's curve.
    ``baselines`` are runs whose final evaluations are drawn as a level (mean and band, per method and task)
    across both phases, e.g. the imitation runs a fine-tuning started from. ``names`` gives runs their method's
    name in a grid, shown before the agent (and runs of two names are never one group). A run that cannot be
    read is named through ``warn`` and left out.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)} (got {metric!r})")
    records = load_runs(runs, warn, names, evaluations=True)
    levels = load_runs(baselines, warn, names, evaluations=True) if baselines else []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted(group_runs(records).items())
    level_groups = sorted(group_runs(levels).items())
    phases = plotted_phases([members for _, members in groups], metric)
    tasks = sorted({group.env for group, _ in groups + level_groups})  # a row of panels per task
    # each panel's legend goes below it, a line per curve: the rows grow with the most curves one panel holds
    curves_per_task = Counter(group.env for group, _ in groups + level_groups)
    height = 4 + 0.3 * max(curves_per_task.values(), default=1)  # 0.15 in a line: chunkrl's curve and the paper's
    fig, grid = plt.subplots(
        len(tasks), len(phases), figsize=(1 + 5 * len(phases), height * len(tasks)), sharey=True, squeeze=False
    )
    panels = {(env, phase): grid[row][col] for row, env in enumerate(tasks) for col, phase in enumerate(phases)}
    extent = dict.fromkeys(panels, 0.0)
    # one colour per method, the same in every task's row; the paper's curve of a method takes its colour
    methods = list(dict.fromkeys((group.name, group.agent, group.variant) for group, _ in groups))
    references: dict[tuple[str, str], str] = {}  # (env, the paper's method) -> the colour of chunkrl's curve
    for group, members in groups:
        color = f"C{methods.index((group.name, group.agent, group.variant)) % 10}"
        for phase in phases:
            points = curve(members, phase, metric)
            if not points:
                continue
            steps, mean, low, high = zip(*points, strict=True)
            label = f"{group.label()} on {paper_task_name(group.env)} ({_seeds(members)})"
            ax = panels[(group.env, phase)]
            ax.plot(steps, mean, marker="o", color=color, label=label)
            ax.fill_between(steps, low, high, color=color, alpha=0.2)
            extent[(group.env, phase)] = max(extent[(group.env, phase)], max(steps))
        references.setdefault((group.env, PAPER_METHOD_NAMES.get(group.agent, group.agent)), color)
    for index, (group, members) in enumerate(level_groups):
        mean, low, high = final_level(members, metric)
        color = f"C{(index + 5) % 10}"
        label = f"{group.label()} on {paper_task_name(group.env)}, final ({_seeds(members)})"
        for phase in phases:
            panels[(group.env, phase)].axhline(mean, linestyle=":", color=color, label=label)
            panels[(group.env, phase)].axhspan(low, high, color=color, alpha=0.12)
    if reference is not None and metric == "success":
        for (env, method), color in sorted(references.items()):
            task = paper_task_name(env)
            curves = read_reference(reference, task, method)
            # the paper's online phase follows its 1M offline steps, wherever it has an offline curve
            pretrained = any(0 < step < 1e6 for step, *_ in curves.get("offline", []))
            for phase in phases:
                points = [p for p in curves.get(phase, []) if p[0] <= max(extent[(env, phase)], 1e5) * 1.001]
                if points:
                    xs, mean, low, high = zip(*points, strict=True)
                    after = ", after its 1M offline steps" if phase == "online" and pretrained else ""
                    label = f"paper {method} ({task}{after}{reference_spacing(xs)})"
                    ax = panels[(env, phase)]
                    ax.plot(xs, mean, linestyle="--", marker="s", color=color, alpha=0.6, label=label)
                    ax.fill_between(xs, low, high, color=color, alpha=0.08)
    for (env, phase), ax in panels.items():
        unit = "gradient steps" if phase == "offline" else "environment steps"
        ax.set_xlabel(f"{phase} {unit}")
        ax.set_title(f"{paper_task_name(env)}, {phase}" if len(tasks) > 1 else phase)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # below the panel: inside, it hid curves wherever it went
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    for row in grid:
        row[0].set_ylabel(f"evaluation {metric}\n(mean, 95% bootstrap CI over seeds)")
    if metric == "success":
        grid[0][0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    out = Path(out) if out else records[0].path / "success.png"
    fig.savefig(out, dpi=120)
    fig.savefig(out.with_suffix(".svg"))
    plt.close(fig)
    return out


def _machine(summary: dict) -> str:
    return str(summary.get("machine", "not recorded (a run older than the record)"))


def _seeds(members: list[RunRecord]) -> str:
    return f"{len(members)} seed{'s' if len(members) > 1 else ''}"


def report_table(runs: list[Path], warn: Callable[[str], None] = print, names: dict[Path, str] | None = None) -> str:
    """A Markdown table per method and task (``group_runs``): the finished seeds, their final success mean with
    its 95% bootstrap CI, steps and wall time (means over those seeds), from each run's summary.json; runs not
    finished (still running, stopped or failed) are counted beside the seeds and enter no figure. Below it, the
    machines and training data of the runs the rows' numbers come from (a row's finished seeds, or all its runs when
    none has finished; wall times mean nothing without the machine); when those span several machines, each
    is lettered there and a wall time is a mean per machine with its letter, never a mean across machines.
    ``names``: as in ``plot_runs``. A run that cannot be read is named through ``warn`` and left out."""
    lines = [
        "| method | task | seeds | final success (mean [95% CI]) | steps | wall time (min) |",
        "|---|---|---|---|---|---|",
    ]
    records = load_runs(runs, warn, names, summary=True)
    rows, shown = [], []  # shown: the runs each row's numbers come from (its finished seeds, else all its runs)
    for group, members in sorted(group_runs(records).items()):
        finished = [record for record in members if record.summary.get("status") == "finished"]
        counted = finished or members
        rows.append((group, len(members), [r.summary for r in finished], [r.summary for r in counted]))
        shown.extend(counted)
    machines = Counter(_machine(record.summary) for record in shown)
    letters = {m: f"({chr(ord('a') + i)})" for i, m in enumerate(sorted(machines))} if len(machines) > 1 else {}
    for group, started, finished, counted in rows:
        finals = []
        for summary in finished:
            evaluations = summary.get("evaluations", {})
            final = evaluations.get("online_final") or evaluations.get("offline_final")
            if isinstance(final, dict) and isinstance(final.get("success"), int | float):
                finals.append(final["success"])
        if finals:
            mean, low, high = bootstrap_ci(finals)
            success = f"{mean:.2f} [{low:.2f}, {high:.2f}]"
        else:
            success = "no final evaluation"
        seeds = f"{len(finished)}" + (f" (+{started - len(finished)} not finished)" if len(finished) < started else "")
        steps = fmean(sum(s.get("counters", {}).get(k, 0) for k in ("offline_step", "online_step")) for s in counted)
        wall = defaultdict(list)
        for summary in counted:
            wall[_machine(summary)].append(summary.get("wall_seconds", 0.0) / 60.0)
        minutes = " / ".join(f"{fmean(wall[m]):.1f} {letters.get(m, '')}".strip() for m in sorted(wall))
        task = paper_task_name(group.env)
        lines.append(f"| {group.label()} | {task} | {seeds} | {success} | {steps:,.0f} | {minutes} |")
    lines.append("")
    # the machines and data of the runs the table's numbers come from: a run not finished beside finished seeds of
    # its row shows nothing there, so it is not counted as if its wall time or data were in the table
    for machine, count in sorted(machines.items()):
        letter = f"{letters[machine]} " if letters else ""
        lines.append(f"{letter}Measured on: {machine} ({count} run{'s' if count > 1 else ''}).")
    lines.extend(data_lines(shown))
    return "\n".join(lines) + "\n"


def short_machine(machine: str) -> str:
    """``AMD EPYC 25/1`` for ``AMD EPYC (family 25 model 1, 2 cores; ...); torch ...``: the CPU's name, family and
    model (the table's legend gives the whole line); a machine named otherwise, up to its first ``;``."""
    found = re.match(r"(.*?) \(family (\d+) model (\d+)", machine)
    if not found:
        return machine.split(";")[0].strip()
    name = re.sub(r"\(R\)|\bProcessor\b", "", found[1])
    return f"{' '.join(name.split())} {found[2]}/{found[3]}"


def _step_label(phase: str, step: float, offline_steps: int) -> str:
    shown = f"{step / 1e3:g}k" if step >= 1e3 and step % 100 == 0 else f"{step:,.0f}"
    return f"online {shown}" if phase == "online" and offline_steps else shown


PHASES = ("offline", "online")

SEED_TABLE_COLUMNS = 10
"""The most evaluations a phase shows in ``seed_table``: a longer phase shows every k-th, counted back from its last."""


def _thinned(columns: list[tuple[int, float]]) -> tuple[list[tuple[int, float]], dict[int, int]]:
    """The (phase, step) columns with at most ``SEED_TABLE_COLUMNS`` per phase, and each thinned phase's k."""
    kept, thinned = [], {}
    for phase in range(len(PHASES)):
        steps = [column for column in columns if column[0] == phase]
        k = -(-len(steps) // SEED_TABLE_COLUMNS)  # ceil
        if k > 1:
            thinned[phase] = k
        kept += [column for i, column in enumerate(steps) if (len(steps) - 1 - i) % max(k, 1) == 0]
    return kept, thinned


def _by_seed(record: RunRecord) -> tuple:
    """Runs in the order of their seeds (as numbers: 2 before 10), then of their paths; a run without a seed last."""
    seed = record.settings.get("seed")
    return (0, seed, str(record.path)) if isinstance(seed, int) else (1, 0, str(record.path))


def seed_table(runs: list[Path], warn: Callable[[str], None] = print, names: dict[Path, str] | None = None) -> str:
    """A Markdown table per task with a row per run: its method (as in ``report_table``), seed, success at each
    evaluation (online ones counted from the online phase's start; an on-policy run's evaluation just past a multiple
    of ``eval_interval`` is shown at it, as the curves draw it), wall time, status when not finished, the machine
    (``short_machine``) and the first characters of its training data's digest: what each seed did, where and on
    which data. Runs without an evaluation yet show a dash in each column."""
    records = load_runs(runs, warn, names, summary=True)
    by_task: dict[str, list[tuple[Group, RunRecord]]] = defaultdict(list)
    for group, members in sorted(group_runs(records).items()):
        for record in sorted(members, key=_by_seed):
            try:
                record.evaluations = _read_eval(record.path / "eval.csv")
            except ValueError:
                record.evaluations = []
            by_task[paper_task_name(group.env)].append((group, record))
    tables = []
    for task, rows in sorted(by_task.items()):
        points = [
            {(index, step): value for index, phase in enumerate(PHASES)
             for step, value in (_phase_points(record, phase) if record.evaluations else {}).items()}
            for _, record in rows
        ]  # fmt: skip
        columns, thinned = _thinned(sorted(set().union(*points)))
        offline = max(record.offline_steps for _, record in rows)
        labels = [_step_label(PHASES[phase], step, offline) for phase, step in columns]
        every = "; ".join(f"one in {k} of the {PHASES[phase]} phase's, up to its last" for phase, k in thinned.items())
        lines = [
            f"**{task}**: success at each evaluation{f' ({every})' if every else ''}",
            "",
            f"| method | seed | {' | '.join(labels)} | wall time (min) | machine | data |",
            f"|---|---|{'---|' * len(labels)}---|---|---|",
        ]
        for (group, record), values in zip(rows, points, strict=True):
            summary = record.summary
            cells = [f"{values[c]:.2f}" if c in values else "-" for c in columns]
            status = summary.get("status", "")
            wall = f"{summary.get('wall_seconds', 0.0) / 60.0:.0f}" + (f" ({status})" if status != "finished" else "")
            data = summary.get("data")
            digest = data.get("sha256") if isinstance(data, dict) else None
            digest = f"{digest[:8]}..." if isinstance(digest, str) else "-"
            seed = record.settings.get("seed", "?")
            lines.append(
                f"| {group.label()} | {seed} | {' | '.join(cells)} | {wall} | "
                f"{short_machine(_machine(summary))} | {digest} |"
            )
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def data_lines(records: list[RunRecord]) -> list[str]:
    """One line per task: the content digests (``Trajectories.content_digest``) of the training data its runs
    recorded, so that "the same data" is checked rather than assumed. Runs that recorded none (older than the digest,
    or the official code's) are counted apart; on-policy runs, which train on no data set, are left out."""
    by_task: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        if "data" in record.summary and record.summary["data"] is None:
            continue  # an on-policy run: no training data
        data = record.summary.get("data")
        digest = data.get("sha256") if isinstance(data, dict) else None
        by_task[paper_task_name(record.env)][digest[:12] if isinstance(digest, str) else None] += 1
    lines = []
    for task, digests in sorted(by_task.items()):
        known = {d: n for d, n in digests.items() if d is not None}
        if not known:
            continue
        same = "the same data" if len(known) == 1 else f"**{len(known)} different data sets**"
        parts = [f"sha256 {d}... ({n} run{'s' if n > 1 else ''})" for d, n in sorted(known.items())]
        if digests[None]:
            parts.append(f"not recorded ({digests[None]} run{'s' if digests[None] > 1 else ''})")
        lines.append(f"Training data, {task}: {same}: {', '.join(parts)}.")
    return lines
