"""Learning suite: named grids of (method, task, seed) runs, and the results page written from them.

    python benchmarks/learning_suite.py list [GRID ...] [--out runs/suite] [--records benchmarks/results]
    python benchmarks/learning_suite.py run GRID [GRID ...] [--paper] [--out runs/suite] [--workers 2]
                                        [--methods NAME ...] [--seeds N ...] [--envs TASK ...] [--cpus-per-trial 1]
                                        [--gpus-per-trial 0] [--ray-address auto]
    python benchmarks/learning_suite.py report GRID [GRID ...] [--paper] [--out runs/suite] [--docs docs]
                                        [--records benchmarks/results]
    python benchmarks/learning_suite.py official GRID [GRID ...] [--out runs/suite] [--workers 2] [--methods NAME ...]
                                        [--seeds N ...] [--envs TASK ...] [--records benchmarks/results]
                                        [--peer-python /tmp/peer-venv/bin/python] [--peer-dir ../shared/bench/peer_qc]

``list`` counts each grid's finished trials; ``list GRID ...`` says where each trial of those grids stands
(finished here, recorded, stopped at a step, killed, running, not started), to plan what a session runs next. A
running trial is named with the process that holds its run directory (for an official run, the official code's
process, which shares its launcher's lock) and its progress from its train.csv: the step, the steps/s (the median
of its last 5 rows) and the minutes of steps left at that rate (evaluations not counted). A trial killed outright
is named with the checkpoint it resumes from. A trial whose run started with other settings than the grid
asks now (its budget raised since, say) is named with the first difference: ``run`` refuses to resume it and
``report`` leaves it (and a kept record of it) out, so move its run directory aside to run it afresh. A last line
per grid estimates what is left in hours of one core: a started trial's steps left at its own recent rate (the
rate of its progress; evaluations not counted), any other unfinished trial at the median wall time of the finished
trials of its method (on its task where one has finished there), less the share of its budget it has done.

A grid (``benchmarks/suites/GRID.yaml``, or the path of such a file) names the tasks, the seeds and the
methods to compare; a method is an agent with a preset and settings. ``run`` launches every trial not yet
finished through chunkrl's sweeps, all the grid's methods on one pool, seed by seed (the first seed of
every method lands before any second one); ``--methods`` runs some of them only (with the methods a chained
one starts from), ``--seeds`` some of the grid's seeds, ``--envs`` some of its tasks. It resumes: launch it
again after an interruption (Ctrl-C, SIGTERM, a lost session) and finished trials are skipped, interrupted ones
resumed from their checkpoints. ``--ray-address`` runs the trials on a Ray cluster instead. ``--paper`` runs the
grid at the paper's scale (the grid's ``paper_set``; meant for a GPU) in its own directory ``OUT/GRID-paper``.

``official`` trains the grid's ``official`` methods again with the official Q-chunking code
(``peer_learning.py``: the same data, settings and budget as each started chunkrl trial) in
``OUT/GRID/METHOD-official``; it resumes as ``run`` does, and ``report`` draws those runs beside chunkrl's
(the agent named ``<agent> (official code)``). A chunkrl trial that ran on another machine lends its kept
record's settings; the data are then this machine's copy, and the official run's summary records their digest as
chunkrl's runs do (the per-seed table shows whether both trained on the same steps).

``report`` draws each grid's success curves (mean over seeds, 95% bootstrap band; the paper's curve
where one exists; a method that others start from, as their starting level) to ``DOCS/perf/suite_GRID.png``
(and SVG) and writes the grid's section of ``DOCS/results.md`` between the markers
``<!-- learning-suite: GRID -->`` and ``<!-- /learning-suite: GRID -->``: the command, the date, the figure and
the table of final success with intervals, wall time per run and the machines the runs recorded, then (folded)
a row per run with its success at each evaluation, wall time, machine and data digest. It also writes,
first under the page's "Learning suite" heading (``<!-- learning-suite: status -->``), every grid's count of
finished trials and what is left to run. Everything else in the page is left as it is. Trials still running or
stopped are counted, never averaged in.

Each finished trial's record (its config, evaluations and summary: a few kB) is copied by ``report`` into
``benchmarks/results/GRID/...`` (``--records``), which the repository keeps: a later ``report`` draws a trial
from its record when its run directory is gone, so a grid can be finished over several sessions or machines,
e.g. ``run seed000 --seeds 1-2`` where seed 0's records are kept. A finished run replaces its trial's record
(said when the two differ).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import datetime
import difflib
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chunkrl.cli import quiet_if_stdout_closed
from chunkrl.report.plot import PAPER_CURVES, paper_task_name, plot_runs, report_table, seed_table
from chunkrl.sweep import (
    Sweep,
    Trial,
    changed_settings,
    parse_seeds,
    read_outcome,
    run_sweeps,
    setting_change,
    sigterm_stops_trials,
)
from chunkrl.train.checkpoint import CheckpointError, latest_good_checkpoint
from chunkrl.train.run_dir import RunDirectoryBusy, RunDirectoryLock, lock_holder

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: grids name their presets relative to it (``configs/...``)."""
SUITES = Path(__file__).resolve().parent / "suites"
GRID_KEYS = {"title", "about", "envs", "seeds", "config", "set", "paper_set", "paper_curves", "methods", "official"}
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_learning.py"
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
"""XLA's flags for one thread, given to the official runs; JAX 0.6 does not keep to them (``run_official``)."""
OFFICIAL_SUFFIX = "-official"
"""``OUT/GRID/METHOD-official`` holds the official code's runs of a grid's method (``official`` in the grid)."""
METHOD_KEYS = {"agent", "config", "set", "init_from"}
RECORDS = Path(__file__).resolve().parent / "results"
"""The finished trials' records, kept in the repository (``RECORDS/GRID/METHOD/<env>/<agent>/seed_<n>``, the
trial's path under OUT): ``report`` copies each finished trial's ``RECORD_FILES`` here and draws from a record
when its run directory is gone, so results gathered over several sessions and machines add up to one page."""
RECORD_FILES = ("config.yaml", "eval.csv", "summary.json")
SUITE_HEADING = "\n## Learning suite\n\n"
STATUS_START, STATUS_END = "<!-- learning-suite: status -->", "<!-- /learning-suite: status -->"


@dataclass
class Method:
    """One configuration of the grid: an agent, a preset (or none) and settings (``key=value``, as ``--set``)."""

    name: str
    agent: str
    config: Path | None = None
    settings: list[str] = field(default_factory=list)
    init_from: str | None = None
    """Another method of the grid whose trial (same task and seed) this one starts from, e.g. imitation, then RL."""


@dataclass
class Grid:
    name: str
    title: str
    envs: list[str]
    seeds: list[int]
    methods: list[Method]
    about: str = ""
    paper_settings: list[str] = field(default_factory=list)
    """Added to every method with ``--paper``: the paper's budget and network sizes."""
    paper_curves: bool = False
    """Draw the paper's published curve beside each method that has one."""
    official: list[str] = field(default_factory=list)
    """Methods also trained by the official Q-chunking code (``official``: ``peer_learning.py``) on the same data."""

    def tag(self, paper: bool) -> str:
        """The grid's name at a scale: its trials' directory under OUT, its figure and its page section."""
        return f"{self.name}-paper" if paper else self.name

    def directory(self, out: Path, paper: bool) -> Path:
        return out / self.tag(paper)

    def sweeps(self, out: Path, paper: bool = False, cpus_per_trial: int = 1, gpus_per_trial: float = 0.0):
        """A sweep per method, each in ``OUT/GRID/METHOD`` (trials in ``<env>/<agent>/seed_<n>`` below it). With
        ``paper``, the grid's ``paper_set`` replaces any setting of the same key."""
        if paper and not self.paper_settings:
            raise ValueError(f"the grid {self.name} has no paper scale (no paper_set): run it without --paper")
        extra = self.paper_settings if paper else []
        replaced = {setting.partition("=")[0] for setting in extra}
        sweeps = {
            m.name: Sweep(
                [m.agent], self.envs, self.seeds, self.directory(out, paper) / m.name,
                [*(s for s in m.settings if s.partition("=")[0] not in replaced), *extra], m.config,
                cpus_per_trial, gpus_per_trial,
            )
            for m in self.methods
        }  # fmt: skip
        for m in self.methods:
            sweeps[m.name].init_from = sweeps[m.init_from] if m.init_from else None
        return list(sweeps.values())

    def official_runs(self, out: Path, paper: bool = False) -> list[tuple[Trial, Trial]]:
        """(the chunkrl trial, the official code's run of it) for every seed of every ``official`` method."""
        sweeps = dict(zip((m.name for m in self.methods), self.sweeps(out, paper), strict=True))
        pairs = []
        for name in self.official:
            for trial in sweeps[name].trials():
                relative = trial.run_dir.relative_to(self.directory(out, paper) / name)
                run_dir = self.directory(out, paper) / f"{name}{OFFICIAL_SUFFIX}" / relative
                pairs.append((trial, Trial(trial.agent, trial.env, trial.seed, run_dir)))
        return pairs


def only(grid: Grid, names: list[str] | None) -> Grid:
    """The grid with the methods ``names`` only (all for None), and those a kept method starts from (init_from)."""
    if not names:
        return grid
    known = [m.name for m in grid.methods]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{grid.name} has no method {', '.join(unknown)}; its methods: {', '.join(known)}")
    keep, queue = set(), list(names)
    while queue:
        name = queue.pop()
        keep.add(name)
        source = next(m for m in grid.methods if m.name == name).init_from
        if source is not None and source not in keep:
            queue.append(source)
    methods = [m for m in grid.methods if m.name in keep]
    return dataclasses.replace(grid, methods=methods, official=[name for name in grid.official if name in keep])


def some_seeds(grid: Grid, seeds: list[int]) -> Grid:
    """The grid with some of its seeds only (``--seeds``: e.g. those no kept record holds yet)."""
    outside = [seed for seed in seeds if seed not in grid.seeds]
    if outside:
        raise ValueError(
            f"{grid.name} has no seed {', '.join(map(str, outside))}; its seeds: {', '.join(map(str, grid.seeds))} "
            "(a seed outside the grid would never reach its page: add it to the grid's seeds instead)"
        )
    return dataclasses.replace(grid, seeds=seeds)


def some_envs(grid: Grid, envs: list[str]) -> Grid:
    """The grid with some of its tasks only (``--envs``: e.g. one task's figure before the next task's)."""
    outside = [env for env in envs if env not in grid.envs]
    if outside:
        raise ValueError(
            f"{grid.name} has no task {', '.join(outside)}; its tasks: {', '.join(grid.envs)} "
            "(a task outside the grid would never reach its page: add it to the grid's envs instead)"
        )
    return dataclasses.replace(grid, envs=[env for env in grid.envs if env in envs])


def grid_names() -> list[str]:
    return sorted(path.stem for path in SUITES.glob("*.yaml"))


def load_grid(name: str) -> Grid:
    """The grid ``benchmarks/suites/NAME.yaml`` (or the YAML file ``name``), checked: an unknown key, method
    field or preset is an error that names it."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else SUITES / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, grid_names(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else f" Grids: {', '.join(grid_names())}."
        raise ValueError(f"no grid {name!r} ({path} does not exist).{hint}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a grid is a mapping with {', '.join(sorted(GRID_KEYS))}")
    unknown = set(raw) - GRID_KEYS
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a grid takes {', '.join(sorted(GRID_KEYS))}"
        )
    for key in ("title", "envs", "methods"):
        if not raw.get(key):
            raise ValueError(f"{where}: {key} is missing")
    methods = raw["methods"]
    if not isinstance(methods, dict):
        raise ValueError(f"{where}: methods maps a name to {{agent, config, set}}")
    shared_config, shared_settings = raw.get("config"), _words(raw.get("set", []), where, "set")
    parsed = []
    for method_name, spec in methods.items():
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - METHOD_KEYS or "agent" not in spec:
            raise ValueError(f"{where}: method {method_name!r} takes agent (required), config, set and init_from")
        config = spec.get("config", shared_config)
        preset = ROOT / config if config else None
        if preset is not None and not preset.is_file():
            raise ValueError(f"{where}: method {method_name!r}: the preset {preset} does not exist")
        settings = [*shared_settings, *_words(spec.get("set", []), where, f"{method_name}.set")]
        parsed.append(Method(str(method_name), spec["agent"], preset, settings, spec.get("init_from")))
    official = raw.get("official", [])
    names = [m.name for m in parsed]
    for method in parsed:
        chain, current = [method.name], method
        while current.init_from is not None:
            if current.init_from not in names:
                raise ValueError(
                    f"{where}: method {current.name!r}: init_from names a method of this grid "
                    f"({', '.join(names)}); got {current.init_from!r}"
                )
            if current.init_from in chain:
                raise ValueError(
                    f"{where}: init_from goes round in a circle: {' -> '.join([*chain, current.init_from])}"
                )
            chain.append(current.init_from)
            current = next(m for m in parsed if m.name == current.init_from)
    if not isinstance(official, list) or any(name not in names for name in official):
        raise ValueError(f"{where}: official lists method names of this grid ({', '.join(names)}); got {official!r}")
    return Grid(
        official=[str(name) for name in official],
        name=path.stem,
        title=str(raw["title"]),
        about=str(raw.get("about", "")).strip(),
        envs=list(raw["envs"]),
        seeds=parse_seeds([str(raw.get("seeds", "0-2"))]),
        methods=parsed,
        paper_settings=_words(raw.get("paper_set", []), where, "paper_set"),
        paper_curves=bool(raw.get("paper_curves", False)),
    )


def _words(value, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ValueError(f"{where}: {key} is a list of key=value settings (got {value!r})")
    return value


def trials(grid: Grid, out: Path, paper: bool) -> list[Trial]:
    return [trial for sweep in grid.sweeps(out, paper) for trial in sweep.trials()]


def with_official(grid: Grid, out: Path, paper: bool) -> list[Trial]:
    """The grid's trials, then the official code's runs of its ``official`` methods."""
    return trials(grid, out, paper) + [official for _, official in grid.official_runs(out, paper)]


def summary_of(run_dir: Path) -> dict | None:
    """A run directory's (or record's) summary.json, None when absent or unreadable."""
    return Trial("", "", 0, run_dir).summary()


def finished(run_dir: Path) -> bool:
    return (summary_of(run_dir) or {}).get("status") == "finished"


def record_of(run_dir: Path, out: Path, records: Path) -> Path:
    """Where the trial ``run_dir`` (under ``out``) keeps its record."""
    return records / run_dir.relative_to(out)


@dataclass
class Standing:
    """A grid's trials (the official code's runs included) by method: the finished ones with their summaries (the
    run's own, else its kept record's), and the others."""

    done: list[tuple[str, Trial, dict]]
    left: list[tuple[str, Trial]]

    @property
    def total(self) -> int:
        return len(self.done) + len(self.left)


def standing(grid: Grid, out: Path, paper: bool, records: Path = RECORDS) -> Standing:
    top = grid.directory(out, paper)
    result = Standing([], [])
    for trial in with_official(grid, out, paper):
        method = trial.run_dir.relative_to(top).parts[0]
        summaries = map(summary_of, (trial.run_dir, record_of(trial.run_dir, out, records)))  # the record if need be
        summary = next((s for s in summaries if (s or {}).get("status") == "finished"), None)
        if summary is None:
            result.left.append((method, trial))
        else:
            result.done.append((method, trial, summary))
    return result


def finished_count(grid: Grid, out: Path, paper: bool, records: Path = RECORDS) -> tuple[int, int]:
    """(trials finished, here or in a kept record; trials in the grid), the official code's runs included as
    the results page counts them."""
    now = standing(grid, out, paper, records)
    return len(now.done), now.total


def left_to_run(grid: Grid, now: Standing) -> str:
    """The grid's trials not finished (here or in a kept record: ``now``), by method: ``rlpd: seed 2; qc: 5 trials,
    seeds 0, 1, 2 on 2 tasks; fql: seeds 1, 2 on puzzle-3x3-play-task4; bfn: all 6`` (the task named where the grid
    has several), or ``all 36`` before any has finished; empty when none is left."""
    left: dict[str, list[Trial]] = {}
    for method, trial in now.left:
        left.setdefault(method, []).append(trial)
    if not now.done and len(now.left) > 1:
        return f"all {len(now.left)}"
    finished_of = collections.Counter(method for method, _, _ in now.done)
    parts = []
    for method, unfinished in left.items():
        if not finished_of[method] and len(unfinished) > 1:
            parts.append(f"{method}: all {len(unfinished)}")
            continue
        seeds = sorted({t.seed for t in unfinished})
        named = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
        tasks = sorted({t.env for t in unfinished})
        if len(tasks) > 1:
            named = f"{len(unfinished)} trials, {named} on {len(tasks)} tasks"
        elif len(grid.envs) > 1:
            named += f" on {paper_task_name(tasks[0])}"
        parts.append(f"{method}: {named}")
    return "; ".join(parts)


def status_section(grids: list[Grid], out: Path, records: Path = RECORDS) -> str:
    """The results page's table of where every grid stands (trials finished, the official code's runs included,
    and what is left to run), written by each ``report``."""
    lines = [
        STATUS_START,
        f"Where the grids stand (written by `report`, {datetime.date.today().isoformat()}; "
        "`python benchmarks/learning_suite.py list GRID` says where each trial is):",
        "",
        "| grid | what it compares | trials finished | left to run |",
        "|---|---|---|---|",
    ]
    for grid in grids:
        now = standing(grid, out, False, records)
        lines.append(
            f"| {grid.name} | {grid.title} | {len(now.done)} of {now.total} | {left_to_run(grid, now) or '-'} |"
        )
    return "\n".join([*lines, STATUS_END]) + "\n"


def write_status(page: Path, text: str) -> None:
    """Replace the page's status table, or put it first under the "Learning suite" heading (written before)."""
    current = page.read_text()
    if STATUS_START in current and STATUS_END in current:
        before, rest = current.split(STATUS_START, 1)
        page.write_text(before + text + rest.split(STATUS_END, 1)[1].removeprefix("\n"))
        return
    heading = current.index("\n", current.index("## Learning suite")) + 1
    page.write_text(current[:heading] + "\n" + text + current[heading:])


def state(run_dir: Path, out: Path, records: Path) -> str:
    """Where a trial stands, in words: finished here or in a kept record (success, steps, minutes), running (its
    progress), stopped (the steps of its last stop), killed outright (its newest checkpoint), or not started."""

    def outcome(summary: dict) -> str:
        trial = Trial("", "", 0, run_dir)
        read_outcome(trial, summary)  # what the sweeps' tables show
        success = f"success {trial.success:.2f}, " if trial.success is not None else ""
        return f"{success}{trial.steps:,} steps, {trial.wall_seconds / 60:.0f} min"

    here, kept = summary_of(run_dir), summary_of(record_of(run_dir, out, records))
    if (here or {}).get("status") == "finished":
        return f"finished ({outcome(here)})"
    if (kept or {}).get("status") == "finished":
        return f"recorded ({outcome(kept)})"
    holder = lock_holder(run_dir)
    if holder is not None:
        return f"running ({holder}){progress(run_dir)}"
    if here is not None:
        if here.get("status") == "running":  # the official code's checkpoints say so; nobody holds the run now
            return f"stopped without a word at {outcome(here)}, its last checkpoint (killed?; resumes)"
        return f"{here.get('status', 'stopped')} at {outcome(here)} (resumes)"
    if not (run_dir / "config.yaml").is_file():
        return "not started"
    if not any((run_dir / "checkpoints").glob("step_*")):
        return "started, no checkpoint yet"
    # not held and no summary: killed outright (SIGKILL, a lost machine), which writes no summary. Name the
    # checkpoint a resume would take: the newest whose files match their checksums, as the trainer picks it.
    passed_over = []
    try:
        good = latest_good_checkpoint(run_dir, passed_over.append)
    except CheckpointError as error:
        return f"stopped without a summary (killed?); cannot resume: {error}"
    older = " (newer ones are damaged)" if passed_over else ""
    return f"stopped without a summary (killed?); resumes from its checkpoint at step {int(good.name[5:]):,}{older}"


def tail_rows(run_dir: Path) -> list[dict[str, str]]:
    """The last rows of a run's train.csv (its last 8 kB, whole rows only), as dicts; empty when there is none."""
    try:
        with (run_dir / "train.csv").open("rb") as file:
            (header,) = csv.reader([file.readline().decode()])
            first = file.tell()
            start = file.seek(max(file.seek(0, os.SEEK_END) - 8192, first))
            lines = file.read().decode(errors="replace").splitlines()
    except (OSError, ValueError):
        return []
    if start > first:  # read from the middle of a row: its end is no row
        lines = lines[1:]
    return [dict(zip(header, row, strict=True)) for row in csv.reader(lines) if len(row) == len(header)]


@dataclass(frozen=True)
class Progress:
    """Where a started run is, from the end of its train.csv and its saved budget."""

    step: int  # the last row's
    total: int  # the budget: offline plus online steps
    updates_from: int  # online, the agent is first updated after this step (the rows before only act)
    updating: bool  # whether any of the rows read updated the agent
    rate: float | None  # steps/s: the median of the last rows that updated the agent; None without such rows

    @property
    def seconds_left(self) -> float | None:
        """The steps left at ``rate`` (no evaluation counted); None without a rate."""
        return max(self.total - self.step, 0) / self.rate if self.rate else None


def read_progress(run_dir: Path, rows: int = 5) -> Progress | None:
    """The run's ``Progress``: the last row's step, and the median rate of the last ``rows`` rows (a row whose
    interval held an evaluation logs a low rate) that updated the agent. None before the first row."""
    try:
        table = tail_rows(run_dir)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        step, total = int(table[-1]["step"]), int(config["offline_steps"]) + int(config["online_steps"])
        # online, the agent is first updated at step start_training: the rows before it only step the environment
        updates_from = int(config["offline_steps"]) + int(config.get("start_training") or 0)
        updating = [row for row in table if row.get("phase") != "online" or int(row["step"]) > updates_from]
    except (OSError, IndexError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None
    try:
        rate = statistics.median(float(row["steps_per_second"]) for row in updating[-rows:]) if updating else None
    except (KeyError, ValueError):
        rate = None
    return Progress(step, total, updates_from, bool(updating), rate if rate and rate > 0 else None)


def progress(run_dir: Path, rows: int = 5) -> str:
    """``: step 16,000 of 100,000, 27.5 steps/s, about 51 min of steps left`` (``read_progress``; the time left
    counts no evaluation). Empty before the first row."""
    now = read_progress(run_dir, rows)
    if now is None:
        return ""
    text = f": step {now.step:,} of {now.total:,}"
    if not now.updating:
        return f"{text}, no updates before step {now.updates_from:,} (no rate yet)"
    if now.rate is None:
        return text
    left = f", about {now.seconds_left / 60:.0f} min of steps left" if now.total > now.step else ""
    return f"{text}, {now.rate:.1f} steps/s{left}"


def recorded(run_dir: Path, out: Path, records: Path, warn=print) -> Path:
    """The directory that describes the trial ``run_dir``: the run itself once it has finished (its record is then
    copied to ``records``; one that replaces a different record of an earlier run says so), else the kept record
    of a finished run, else the run directory (started or not)."""
    kept = record_of(run_dir, out, records)
    if finished(run_dir):

        def content(path: Path) -> bytes | None:
            return path.read_bytes() if path.is_file() else None

        if finished(kept) and any(content(run_dir / name) != content(kept / name) for name in RECORD_FILES):
            warn(f"  {run_dir.relative_to(out)}: this run replaces the kept record of an earlier run in {kept}")
        kept.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, kept / name)
            else:
                (kept / name).unlink(missing_ok=True)
        return run_dir
    return kept if finished(kept) else run_dir


def section(grid: Grid, out: Path, docs: Path, paper: bool, records: Path = RECORDS, warn=print) -> str:
    """The grid's figure (written to ``docs/perf``) and its Markdown section for the results page, from the runs
    under ``out`` and the records kept in ``records`` (finished runs are recorded there first)."""
    everything = with_official(grid, out, paper)
    methods = [t.run_dir.relative_to(grid.directory(out, paper)).parts[0] for t in everything]
    sweeps = dict(zip((m.name for m in grid.methods), grid.sweeps(out, paper), strict=True))

    def change(trial: Trial, method: str, where: Path) -> str | None:  # the official runs follow chunkrl's
        official = method.endswith(OFFICIAL_SUFFIX)
        return None if official else setting_change(sweeps[method], trial, where / "config.yaml")

    described, other = [], set()  # other: runs started with other settings than the grid's now, not its trials
    for trial, method in zip(everything, methods, strict=True):
        changed = change(trial, method, trial.run_dir)  # such a run is not recorded either
        where = trial.run_dir if changed else recorded(trial.run_dir, out, records, warn)
        changed = changed or change(trial, method, where)
        if changed:
            warn(f"left out: {where} started with {changed}")
            other.add(where)
        described.append(where)
    # each trial is labelled with its method's name in the grid; the official code's runs say so in their agent
    names = {d: m for d, m in zip(described, methods, strict=True) if not m.endswith(OFFICIAL_SUFFIX)}
    started = [d for d in described if (d / "config.yaml").is_file() and d not in other]
    done = [d for d in started if finished(d)]
    if not done:
        raise ValueError(
            f"no trial of {grid.name} has finished under {grid.directory(out, paper)} ({len(started)} started) "
            f"and none is recorded in {records / grid.tag(paper)}: "
            f"python benchmarks/learning_suite.py run {grid.name}{' --paper' if paper else ''} --out {out}"
        )
    from_records = sum(1 for d in done if d.is_relative_to(records))
    tag = grid.tag(paper)
    (docs / "perf").mkdir(parents=True, exist_ok=True)
    figure = docs / "perf" / f"suite_{tag}.png"
    # a method others start from (imitation, then RL) is drawn as their starting level, as `chunkrl plot --baseline`
    starts = {m.init_from for m in grid.methods if m.init_from}
    curves = [d for d in done if names.get(d) not in starts]
    levels = [d for d in done if names.get(d) in starts] if curves else []
    reference = PAPER_CURVES if grid.paper_curves else None
    plot_runs(curves or done, figure, reference=reference, warn=warn, baselines=levels, names=names)
    flag = " --paper" if paper else ""
    lines = [
        f"<!-- learning-suite: {tag} -->",
        f"### {grid.title}{' (paper scale)' if paper else ''}",
        "",
        *([grid.about, ""] if grid.about else []),
        f"`python benchmarks/learning_suite.py run {grid.name}{flag}`, then `... report {grid.name}{flag}` "
        f"(written {datetime.date.today().isoformat()}; {len(done)} of {len(everything)} trials finished"
        f"{f', {from_records} of them from the records kept in {_shown(records)}' if from_records else ''}).",
        "",
        f"![{grid.title}](perf/{figure.name})",
        "",
        "Curves: the finished trials (mean over seeds, 95% bootstrap band)"
        + (
            f"; {', '.join(sorted({names[d] for d in levels}))}, which the others start from, as a dotted level: "
            "its runs' final success (mean and band)."
            if levels
            else "."
        ),
        "",
        report_table(started, warn=warn, names=names).rstrip(),
        "",
        '<details markdown="1"><summary>Each run: its evaluations, wall time, machine and data</summary>',
        "",
        "Success at each evaluation step (online ones counted from the online phase's start); wall time in minutes, "
        "with the run's status where it has not finished; the machine's CPU family and model (the legend above "
        "gives each in full); the first characters of the training data's sha256 (- where the run recorded none).",
        "",
        seed_table(started, warn=lambda _: None, names=names).rstrip(),
        "",
        "</details>",
        f"<!-- /learning-suite: {tag} -->",
    ]
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def write_section(page: Path, tag: str, text: str) -> None:
    """Replace the grid's section of ``page`` between its markers, or append it under a "Learning suite" heading;
    the rest of the page is kept as it is."""
    start, end = f"<!-- learning-suite: {tag} -->", f"<!-- /learning-suite: {tag} -->"
    current = page.read_text() if page.exists() else "# Measured results\n"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1].removeprefix("\n")
        page.write_text(before + text + after)
        return
    heading = SUITE_HEADING if "## Learning suite" not in current else "\n"
    page.write_text(current.rstrip("\n") + "\n" + heading + text)


def official_jobs(
    grid: Grid, out: Path, paper: bool, peer_python: Path, warn=print, records: Path = RECORDS
) -> list[tuple[Path, list[str]]]:
    """The official runs to start or resume: (run directory, command). Each method's data and settings are
    exported once per task from a started chunkrl trial's config.yaml (the same data and settings, so the same
    budget), or from its kept record's when the trial ran on another machine (the settings are the trial's; the
    data are this machine's copy, which the official run's summary records the digest of); runs whose chunkrl trial
    has not started yet wait for it, finished ones are skipped."""
    jobs = []
    for trial, official in grid.official_runs(out, paper):
        source, run_dir = trial.run_dir / "config.yaml", official.run_dir
        if (official.summary() or {}).get("status") == "finished":
            continue
        kept = record_of(trial.run_dir, out, records) / "config.yaml"
        if not source.is_file() and kept.is_file():
            warn(f"  {run_dir.relative_to(out)}: from the kept record {kept} (its chunkrl trial ran elsewhere)")
            source = kept
        if not source.is_file():
            warn(f"  {run_dir.relative_to(out)}: waits for its chunkrl trial (run the grid first)")
            continue
        data = run_dir.parent / "data"
        if not (data / "settings.json").is_file():
            export = [sys.executable, str(PEER_SCRIPT), "export", str(source), str(data)]
            result = subprocess.run(export, capture_output=True, text=True)
            if result.returncode != 0:
                raise ValueError(f"exporting {source} for the official code failed:\n{result.stdout}{result.stderr}")
        command = [str(peer_python), str(PEER_SCRIPT), "train", str(data), "--seed", str(trial.seed)]
        jobs.append((run_dir, [*command, "--out", str(run_dir)]))
    return jobs


def cpu_slots(workers: int) -> queue.Queue:
    """The CPUs the official runs are pinned to, one each: as many slots as ``workers``, taken in turn from the
    CPUs this process may use (two runs share a CPU only when there are more workers than CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    slots = queue.Queue()
    for i in range(workers):
        slots.put(cpus[i % len(cpus)])
    return slots


def run_official(jobs: list[tuple[Path, list[str]]], peer_dir: Path, workers: int) -> int:
    """Run the official jobs, ``workers`` at a time, each on one CPU; SIGTERM or Ctrl-C stops them (each writes a
    checkpoint) and the same command resumes them. XLA's flags for one thread do not hold JAX 0.6 to one: its
    runtime spreads an update over threads on every CPU the process may use (measured: five threads busy), so
    each run is pinned to a CPU of its own (``peer_learning.py train --cpus``), as chunkrl's runs get one torch
    thread."""
    env = {**os.environ, "PYTHONPATH": str(peer_dir / "src"), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": XLA_ONE_THREAD}
    running: list[subprocess.Popen] = []
    slots = cpu_slots(workers)

    def one(job: tuple[Path, list[str]]) -> int:
        run_dir, command = job
        run_dir.mkdir(parents=True, exist_ok=True)
        cpu = slots.get()
        try:
            return on_cpu(run_dir, [*command, "--cpus", str(cpu)])
        finally:
            slots.put(cpu)

    def on_cpu(run_dir: Path, command: list[str]) -> int:
        # held for the official code (which cannot import chunkrl), so that `list` sees it run; shared with it, so
        # that a launcher killed outright leaves the lock with its still-running child, never a run nobody holds
        try:
            with RunDirectoryLock(run_dir) as lock, open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(lock.fileno(),)
                )
                lock.shared_with(process.pid)
                running.append(process)
                code = process.wait()
        except RunDirectoryBusy as busy:
            print(f"  {run_dir}: not started: {busy}", flush=True)
            return 1
        print(f"  {run_dir}: {'finished' if code == 0 else f'exit {code}'}", flush=True)
        return code

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, stop)
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        codes = list(pool.map(one, jobs))
    except KeyboardInterrupt:
        for signum in previous:  # a second signal (`timeout` signals its whole group) must not cut the wait short
            signal.signal(signum, signal.SIG_IGN)
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # each writes a resumable checkpoint
        pool.shutdown(wait=True, cancel_futures=True)
        print("official runs interrupted: they wrote checkpoints; run the same command to finish them.")
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    pool.shutdown()
    return 1 if any(codes) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the grids and how many of their trials have finished")
    run = commands.add_parser("run", help="run (or resume) grids")
    report = commands.add_parser("report", help="figures and the results page's sections")
    official = commands.add_parser("official", help="the official code's runs of the grids' official methods")
    for sub in (listing, run, report, official):
        sub.add_argument("--out", type=Path, default=Path("runs/suite"), help="where the trials live")
        sub.add_argument("--paper", action="store_true", help="the paper-scale grids (a GPU's budget)")
    for sub in (run, report, official):
        sub.add_argument("grids", nargs="+", help="grid names (benchmarks/suites/NAME.yaml) or YAML files")
    listing.add_argument("grids", nargs="*", help="these grids' trials, one line each (none: every grid, counted)")
    for sub in (run, official):
        sub.add_argument("--workers", type=int, default=2, help="trials at a time")
        sub.add_argument("--methods", nargs="+", default=None, help="only these methods of the grids")
        sub.add_argument("--seeds", nargs="+", default=None, help="only these of the grids' seeds (0 2, or 1-2)")
        sub.add_argument("--envs", nargs="+", default=None, help="only these of the grids' tasks")
    for sub in (listing, report, official):
        sub.add_argument(
            "--records", type=Path, default=RECORDS, help="the finished trials' kept records (report copies to it)"
        )
    official.add_argument("--peer-python", type=Path, default=Path("/tmp/peer-venv/bin/python"))
    official.add_argument("--peer-dir", type=Path, default=ROOT.parent / "shared" / "bench" / "peer_qc")
    run.add_argument("--cpus-per-trial", type=int, default=1, help="torch threads (and Ray CPUs) per trial")
    run.add_argument("--gpus-per-trial", type=float, default=0.0, help="Ray GPUs per trial")
    run.add_argument("--ray-address", default=None, help="run on Ray: auto, HOST:PORT, or local")
    report.add_argument("--docs", type=Path, default=ROOT / "docs", help="the documentation folder to write into")
    args = parser.parse_args(argv)
    try:
        grids = [load_grid(name) for name in (args.grids or grid_names())]
        if args.command in ("run", "official"):
            grids = [only(grid, args.methods) for grid in grids]
            grids = [some_seeds(grid, parse_seeds(args.seeds)) if args.seeds else grid for grid in grids]
            grids = [some_envs(grid, args.envs) if args.envs else grid for grid in grids]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    commands = {"list": list_grids, "official": run_official_grids, "report": report_grids, "run": run_grids}
    try:
        return commands[args.command](args, grids)
    except BrokenPipeError:  # `list ... | head`: the reader has what it wanted; any other broken pipe is an error
        if not quiet_if_stdout_closed():
            raise
        return 0


def done_fraction(run_dir: Path) -> float:
    """The share of its budget an unfinished trial has done: its furthest step (its last stop's summary or its
    train.csv, whichever is further) over its saved budget; 0 before it started."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        total = int(config["offline_steps"]) + int(config["online_steps"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return 0.0
    trial = Trial("", "", 0, run_dir)
    read_outcome(trial, summary_of(run_dir) or {})
    rows = tail_rows(run_dir)
    try:
        step = max(trial.steps or 0, int(rows[-1]["step"]) if rows else 0)
    except (KeyError, ValueError):
        step = trial.steps or 0
    return min(step / total, 1.0) if total > 0 else 0.0


def time_left(grid: Grid, out: Path, paper: bool, records: Path = RECORDS) -> str:
    """``26 trials left: about 29 h of one core ...; none finished to go by: qc (6 trials)``. A started trial with
    a rate in its train.csv counts its steps left at that rate (``read_progress``: how it runs where it runs, no
    evaluation counted); any other unfinished trial the median wall time of the finished trials (here or recorded)
    of its method on its task, or on any task when its own has none, less the share of its budget it has done.
    Empty when nothing is left."""
    now = standing(grid, out, paper, records)
    if not now.left:
        return ""
    walls: dict[tuple[str, str], list[float]] = {}
    for method, trial, summary in now.done:
        walls.setdefault((method, trial.env), []).append(float(summary.get("wall_seconds", 0.0)))
    seconds, unknown = 0.0, collections.Counter()
    for method, trial in now.left:
        own = read_progress(trial.run_dir)
        known = walls.get((method, trial.env)) or [w for (m, _), ws in walls.items() if m == method for w in ws]
        if own is not None and own.seconds_left is not None:
            seconds += own.seconds_left
        elif known:
            seconds += statistics.median(known) * (1.0 - done_fraction(trial.run_dir))
        else:
            unknown[method] += 1
    counted = len(now.left) - unknown.total()
    text = f"{len(now.left)} trials left"
    if counted:
        text += (
            f": about {seconds / 3600:.1f} h of one core for {counted} of them (a started trial's steps left at its "
            "own recent rate, evaluations not counted; any other at the median wall time of the finished trials of "
            "the same method, on the same task where one has finished, less what each has done)"
        )
    if unknown:
        text += "; none finished to go by: " + ", ".join(f"{m} ({n} trials)" for m, n in unknown.items())
    return text


def list_grids(args: argparse.Namespace, grids: list[Grid]) -> int:
    """``list``: each grid's count of finished trials, or (grids named) where each of their trials stands."""
    if args.grids:
        for grid in grids:
            changed = {d: c for s in grid.sweeps(args.out, args.paper) for d, c in changed_settings(s).items()}
            for trial in with_official(grid, args.out, args.paper):
                where = trial.run_dir.relative_to(args.out)
                drift = (
                    f"; started with {changed[trial.run_dir]} (`run` refuses it)" if trial.run_dir in changed else ""
                )
                print(f"{str(where):<80} {state(trial.run_dir, args.out, args.records)}{drift}")
            left = time_left(grid, args.out, args.paper, args.records)
            print(f"{grid.name}: {left or 'every trial finished'}")
        return 0
    for grid in grids:
        if args.paper and not grid.paper_settings:
            print(f"{grid.name:<20} (no paper scale)")
            continue
        done, total = finished_count(grid, args.out, args.paper, args.records)
        official = len(grid.official_runs(args.out, args.paper))
        official = f", the official code's {official} included" if official else ""
        print(f"{grid.name:<20} {done:>3} of {total:<3} trials finished{official}  {grid.title}")
    return 0


def run_official_grids(args: argparse.Namespace, grids: list[Grid]) -> int:
    """``official``: the official code's runs of the grids' official methods."""
    if not args.peer_python.is_file() or not (args.peer_dir / "src" / "agents" / "acfql.py").is_file():
        print(
            f"error: the official code needs {args.peer_dir}/src and its venv's python {args.peer_python} "
            "(set-up: shared/bench/peer_qc/README.md, then pip install ogbench in that venv)",
            file=sys.stderr,
        )
        return 2
    without = [grid.name for grid in grids if not grid.official]
    if without:
        print(f"error: {', '.join(without)} list no official methods (official: [...])", file=sys.stderr)
        return 2
    try:
        jobs = [
            job
            for grid in grids
            for job in official_jobs(grid, args.out, args.paper, args.peer_python, records=args.records)
        ]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(jobs)} official runs to start or resume ({args.workers} at a time)", flush=True)
    return run_official(jobs, args.peer_dir, args.workers)


def report_grids(args: argparse.Namespace, grids: list[Grid]) -> int:
    """``report``: each grid's figure and its section of the results page, then the status table; a grid that
    cannot be reported (none of its trials finished) is said so and keeps neither the others nor the table from
    being written."""
    refused = 0
    for grid in grids:
        try:
            text = section(grid, args.out, args.docs, args.paper, args.records)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            refused += 1
            continue
        write_section(args.docs / "results.md", grid.tag(args.paper), text)
        print(f"{grid.name}: {args.docs / 'results.md'}, {args.docs / 'perf'}/suite_{grid.name}*.png")
    page = args.docs / "results.md"
    if page.is_file() and "## Learning suite" in page.read_text():  # not before a grid's section has been written
        every = {grid.name: grid for grid in [*(load_grid(name) for name in grid_names()), *grids]}
        write_status(page, status_section(list(every.values()), args.out, args.records))
    return 2 if refused else 0


def run_grids(args: argparse.Namespace, grids: list[Grid]) -> int:
    """``run``: every trial of the grids not finished yet, through chunkrl's sweeps."""
    sweeps = [s for grid in grids for s in grid.sweeps(args.out, args.paper, args.cpus_per_trial, args.gpus_per_trial)]
    total = sum(len(s.trials()) for s in sweeps)
    print(f"{total} trials of {', '.join(g.name for g in grids)} -> {args.out} ({args.workers} workers)", flush=True)
    try:
        with sigterm_stops_trials():
            outcomes = run_sweeps(
                sweeps,
                args.workers,
                args.ray_address,
                lambda t: print(f"  {t.run_dir.relative_to(args.out)}: {t.status}", flush=True),
            )
    except KeyboardInterrupt:
        print("suite interrupted: the running trials wrote resumable checkpoints; run the same command to finish it.")
        return 130
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [t for t in outcomes if t.status == "failed"]
    for t in failed:
        print(f"failed twice: {t.run_dir}: {t.error} (log: {t.run_dir.parent / f'seed_{t.seed}.log'})")
    skipped = sum(1 for t in outcomes if t.status == "skipped (finished)")
    done = sum(1 for t in outcomes if t.status.startswith(("finished", "skipped (finished)")))
    waiting = sum(1 for t in outcomes if t.status.startswith("waits for"))
    print(
        f"{done} of {len(outcomes)} trials finished ({skipped} of them before this launch"
        f"{f'; {waiting} wait for the trial they start from' if waiting else ''}); "
        "write the page: python benchmarks/learning_suite.py report ..."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
