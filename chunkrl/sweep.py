"""Grids of runs (methods x tasks x seeds) on a local process pool or a Ray cluster.

Each trial is an ordinary ``chunkrl train`` run in its own directory ``OUT/<env>/<agent>/seed_<n>``, so
a sweep is resumable by launching it again: a finished trial (its ``summary.json`` says so) is skipped,
an interrupted one is resumed from its checkpoint, a failed one is retried once (resumed where it
left a checkpoint) and reported. Trials run as subprocesses, each limited to ``cpus_per_trial`` threads;
on Ray (``--ray-address auto``, ``HOST:PORT`` or ``local`` for a fresh local instance) each trial is a
task that declares its CPU and GPU share, and Ray places it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

KEEPING = frozenset(
    {"log_interval", "checkpoint_interval", "keep_checkpoints", "tensorboard", "wandb", "device", "generate_workers"}
)
"""Settings of how a run is logged, checkpointed and placed, which change nothing it trains: a trial whose run started
with other values of these resumes as it started (its own logs and checkpoints), and is not refused for them."""


def parse_seeds(texts: list[str]) -> list[int]:
    """``["0-4"]`` -> 0..4, ``["0", "3"]`` -> 0, 3."""
    seeds: list[int] = []
    for text in texts:
        first, _, last = text.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"--seeds takes whole numbers or ranges like 0-4 (got {text!r})") from None
        if high < low:
            raise ValueError(f"--seeds {text} is an empty range; write it lowest first: {high}-{low}")
        seeds += list(range(low, high + 1))
    if not seeds:
        raise ValueError("--seeds names no seed")
    return sorted(dict.fromkeys(seeds))


def settings_dict(settings: list[str]) -> dict:
    """``--set`` values as a nested config mapping: ``flow.alpha=300`` -> ``{"flow": {"alpha": 300}}``; values are
    read as YAML (``300``, ``true``, ``[1, 2]``); ``key=`` alone is a flag (``no_key=``: the flag off)."""
    import yaml

    nested: dict = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value (got {setting!r}), e.g. --set flow.alpha=300")
        *sections, name = key.replace("-", "_").split(".")
        if value.strip():
            parsed = [yaml.safe_load(v) for v in value.split()]  # as the command line reads it: words
            parsed = parsed[0] if len(parsed) == 1 and not _takes_several(key) else parsed
        else:
            parsed = not name.startswith("no_")
            name = name.removeprefix("no_")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = parsed
    return nested


def _takes_several(key: str) -> bool:
    """Whether the training option ``key`` (``flow.actor_hidden_dims``) holds several values (a tuple), so that
    one word is a one-element tuple, as on the command line."""
    import dataclasses
    import typing

    from chunkrl.config import TrainConfig

    hint: object = TrainConfig
    for name in key.replace("-", "_").removeprefix("no_").split("."):
        if not dataclasses.is_dataclass(hint):
            return False
        hint = typing.get_type_hints(hint).get(name)
    origin = typing.get_origin(hint)
    return origin is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))


def check_sweep(sweep: Sweep) -> None:
    """Every trial's configuration as its run will check it (agent and environment names, every ``--set``
    key and value, ranges), before any trial or directory is made: a mistake fails once, with its message."""
    from chunkrl.config import TrainConfig, check_values, from_dict, load_config, resolve_method, to_dict

    source = sweep.init_from
    if source is not None:
        missing = sorted({(t.env, t.seed) for t in sweep.trials()} - {(t.env, t.seed) for t in source.trials()})
        if len(source.agents) != 1 or missing:
            raise ValueError(
                f"the sweep in {sweep.out} starts from {source.out}, which must train one agent on every environment "
                f"and seed it has (agents {source.agents}; missing {missing or 'none'})"
            )
    preset = to_dict(load_config(sweep.config) if sweep.config else TrainConfig())
    values = _merged(preset, settings_dict(sweep.settings))
    for agent in sweep.agents:
        for env in sweep.envs:
            config = from_dict(TrainConfig, {**values, "agent": agent, "env": env}, "--set")
            check_values(config)
            check_values(resolve_method(config))  # unknown agent or environment names list close matches
    changed = changed_settings(sweep)
    if changed:
        run_dir, change = next(iter(changed.items()))
        raise ValueError(
            f"{run_dir} was started with {change}; a resumed run keeps the settings it started with, so move "
            "that run directory aside (or delete it) to start the trial afresh, or ask for its settings again"
        )


def changed_settings(sweep: Sweep) -> dict[Path, str]:
    """The trials whose run started with other settings than the sweep asks now, each with the first difference
    in words (``setting_change``). A resumed run keeps the settings it started with."""
    changes = {trial.run_dir: setting_change(sweep, trial) for trial in sweep.trials()}
    return {run_dir: change for run_dir, change in changes.items() if change}


def setting_change(sweep: Sweep, trial: Trial, config: Path | None = None) -> str | None:
    """How the run of ``trial`` (its ``config.yaml``, or ``config``: a kept copy of it) started with other settings
    than the sweep asks now (its preset's changes to the defaults and its ``--set`` values), the first difference in
    words (``offline_steps=25000, but the sweep now asks offline_steps=100000``); None when it agrees (``KEEPING``
    settings aside) or has not started."""
    import yaml

    from chunkrl.config import TrainConfig, from_dict, load_config, to_dict
    from chunkrl.dotted import flatten

    config = config or trial.run_dir / "config.yaml"
    if not config.is_file():
        return None
    preset = to_dict(load_config(sweep.config) if sweep.config else TrainConfig())
    asked_values = settings_dict(sweep.settings)
    defaults = flatten(to_dict(TrainConfig()))
    keys = {k for k, v in flatten(preset).items() if defaults.get(k) != v} | flatten(asked_values).keys()
    values = _merged(preset, asked_values) | {"agent": trial.agent, "env": trial.env}
    asked = flatten(to_dict(from_dict(TrainConfig, values, "--set")))
    written = flatten(yaml.safe_load(config.read_text()) or {})  # a setting an older run's file lacks is no difference
    saved = flatten(to_dict(load_config(config)))
    differences = [
        (k, saved[k], v)
        for k, v in asked.items()
        if k in keys and k in written and saved[k] != v and k.split(".")[0] not in KEEPING
    ]
    if not differences:
        return None
    key, was, now = differences[0]
    more = f" (and {len(differences) - 1} more setting(s))" if len(differences) > 1 else ""
    return f"{key}={was!r}, but the sweep now asks {key}={now!r}{more}"


def _merged(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def setting_flags(settings: list[str]) -> list[str]:
    """``["flow.alpha=300", "offline_steps=1000"]`` -> ``["--flow.alpha", "300", "--offline-steps", "1000"]``."""
    flags = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value (got {setting!r}), e.g. --set flow.alpha=300")
        flags += ["--" + key.replace("_", "-"), *value.split()]
    return flags


@dataclass
class Trial:
    agent: str
    env: str
    seed: int
    run_dir: Path
    status: str = "pending"
    attempts: int = 0
    success: float | None = None
    steps: int | None = None
    wall_seconds: float = 0.0
    error: str = ""

    def summary(self) -> dict | None:
        path = self.run_dir / "summary.json"
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except (OSError, ValueError):
            return None


@dataclass
class Sweep:
    agents: list[str]
    envs: list[str]
    seeds: list[int]
    out: Path
    settings: list[str] = field(default_factory=list)
    config: Path | None = None
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    init_from: Sweep | None = None
    """Chained sweeps (imitation, then RL from it): each trial starts from the final weights of the trial of
    this one-agent sweep with the same environment and seed (``--init-from``), and runs once that one finished."""

    def source(self, trial: Trial) -> Trial | None:
        """The trial of ``init_from`` that ``trial`` starts from (None without ``init_from``)."""
        if self.init_from is None:
            return None
        return next(t for t in self.init_from.trials() if (t.env, t.seed) == (trial.env, trial.seed))

    def depth(self) -> int:
        """How many sweeps run before this one: 0 without ``init_from``."""
        return 0 if self.init_from is None else self.init_from.depth() + 1

    def trials(self) -> list[Trial]:
        return [
            Trial(agent, env, seed, self.out / env / agent / f"seed_{seed}")
            for env in self.envs
            for agent in self.agents
            for seed in self.seeds
        ]

    def command(self, trial: Trial) -> list[str]:
        """The train command of a trial: resume what exists, start what does not."""
        base = [sys.executable, "-m", "chunkrl.cli", "train"]
        if (trial.run_dir / "config.yaml").exists():
            return [*base, "--resume", str(trial.run_dir)]
        config = ["--config", str(self.config)] if self.config else []
        flags = ["--agent", trial.agent, "--env", trial.env, "--seed", str(trial.seed), *setting_flags(self.settings)]
        source = self.source(trial)
        start = ["--init-from", str(source.run_dir)] if source is not None else []
        return [*base, *config, *flags, *start, "--run-dir", str(trial.run_dir)]


_running: set[subprocess.Popen] = set()  # the trials this process runs now
_lock = threading.Lock()
_stopping = threading.Event()  # set by stop_trials: no further trial starts


def run_command(command: list[str], threads: int, log: str) -> tuple[int, str]:
    """Run one trial's command; (exit code, the end of its output). Also the body of a Ray task. Once the sweep
    is stopping (``stop_trials``) no command starts."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as output:
        with _lock:
            if _stopping.is_set():
                return 1, "not started: the sweep was stopped"
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
            _running.add(process)
        try:
            code = process.wait()
        finally:
            with _lock:
                _running.discard(process)
    tail = Path(log).read_text()[-600:]
    return code, tail


def stop_trials(signum: int | None = signal.SIGTERM) -> None:
    """Start no further trial, and pass ``signum`` (None: none) on to every running one: a trial stopped by SIGTERM
    or SIGINT writes a resumable checkpoint. ``chunkrl sweep`` calls it on SIGTERM, which reaches only the sweep's
    own process (Ctrl-C reaches the trials through the terminal)."""
    with _lock:
        _stopping.set()
        running = list(_running)
    for process in running if signum is not None else ():
        process.send_signal(signum)


@contextmanager
def sigterm_stops_trials() -> Iterator[None]:
    """Within it, SIGTERM to this process (``kill PID``, a scheduler's stop), which reaches the sweep alone, is
    passed on to every running trial (each writes a resumable checkpoint) and then raised as KeyboardInterrupt,
    as Ctrl-C is; the previous handler is restored on the way out."""

    def stop(signum, frame):
        stop_trials(signal.SIGTERM)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep(
    sweep: Sweep, workers: int = 1, ray_address: str | None = None, report: Callable[[Trial], None] | None = None
) -> list[Trial]:
    """Run every trial not yet finished (each failed one retried once); the trials with their outcome."""
    return run_sweeps([sweep], workers, ray_address, report)


def run_sweeps(
    sweeps: list[Sweep], workers: int = 1, ray_address: str | None = None, report: Callable[[Trial], None] | None = None
) -> list[Trial]:
    """Several sweeps on one pool (or one Ray cluster), each trial given the same CPU and GPU share: every trial not
    yet finished runs (each failed one retried once), seed by seed across the sweeps, so that the first seed of
    every configuration is done before a second starts; ``report`` hears of each trial as it ends (in launch
    order). Each sweep's table goes to its own ``OUT/sweep.csv``. The trials with their outcome, sweep by sweep."""
    _stopping.clear()  # a sweep stopped earlier in this process (Ctrl-C in a notebook) does not stop this one
    shares = {(sweep.cpus_per_trial, sweep.gpus_per_trial) for sweep in sweeps}
    if len(shares) != 1:
        raise ValueError(f"the sweeps of one pool must give every trial the same CPU and GPU share (got {shares})")
    for sweep in sweeps:
        check_sweep(sweep)
    owned = [(sweep, trial) for sweep in sweeps for trial in sweep.trials()]
    launch = _ray_launcher(sweeps[0], ray_address) if ray_address else _pool_launcher(sweeps[0], workers)
    for depth in sorted({sweep.depth() for sweep in sweeps}):  # chained sweeps after the ones they start from
        _run_trials([(s, t) for s, t in owned if s.depth() == depth], launch, report)
    for sweep in sweeps:
        _write_table(sweep.out, [trial for owner, trial in owned if owner is sweep])
    return [trial for _, trial in owned]


def _run_trials(owned: list[tuple[Sweep, Trial]], launch, report: Callable[[Trial], None] | None) -> None:
    """Run the trials not finished yet, each failed one retried once; a chained trial whose source trial has not
    finished is left waiting."""
    pending = []
    for sweep, trial in owned:
        summary, source = trial.summary(), sweep.source(trial)
        if summary is not None and summary.get("status") == "finished":
            trial.status = "skipped (finished)"
            read_outcome(trial, summary)
        elif source is not None and (source.summary() or {}).get("status") != "finished":
            trial.status = f"waits for {source.run_dir} to finish"
            if report is not None:
                report(trial)
        else:
            pending.append((sweep, trial))
    pending.sort(key=lambda job: job[1].seed)  # stable: within a seed, the sweeps' and their trials' order
    for attempt in (1, 2):
        if not pending:
            break
        results = launch([(sweep.command(t), str(t.run_dir.parent / f"seed_{t.seed}.log")) for sweep, t in pending])
        failed = []
        for (sweep, trial), (code, tail) in zip(pending, results, strict=True):
            trial.attempts = attempt
            summary = trial.summary()
            if code == 0 and summary is not None and summary.get("status") == "finished":
                trial.status = "finished" if attempt == 1 else "finished (retried)"
                read_outcome(trial, summary)
            else:
                trial.status, trial.error = "failed", tail.strip().splitlines()[-1] if tail.strip() else f"exit {code}"
                failed.append((sweep, trial))
            if report is not None:
                report(trial)
        pending = failed


def read_outcome(trial: Trial, summary: dict) -> None:
    """Fill ``trial``'s success (its last phase's final evaluation), steps (both phases) and wall time from its
    run's summary."""
    evaluations = summary.get("evaluations", {})
    final = evaluations.get("online_final") or evaluations.get("offline_final") or {}
    trial.success = final.get("success")
    counters = summary.get("counters", {})
    trial.steps = counters.get("offline_step", 0) + counters.get("online_step", 0)
    trial.wall_seconds = summary.get("wall_seconds", 0.0)


def _pool_launcher(sweep: Sweep, workers: int):
    def launch(jobs):
        """Each job's (exit code, output tail), in the jobs' order, each as soon as it and those before it ended."""
        pool = ThreadPoolExecutor(max_workers=workers)  # each job is a subprocess: threads only wait
        try:
            yield from pool.map(lambda job: run_command(job[0], sweep.cpus_per_trial, job[1]), jobs)
        except GeneratorExit:  # the caller stopped reading: queued trials are cancelled below, the sweep goes on
            raise
        except BaseException:  # Ctrl-C or SIGTERM: no queued trial may start while the running ones stop
            stop_trials(None)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return launch


def _ray_launcher(sweep: Sweep, address: str):
    try:
        import ray
    except ImportError:
        raise RuntimeError('--ray-address needs Ray: pip install -e ".[ray]"') from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=sweep.cpus_per_trial, num_gpus=sweep.gpus_per_trial)(run_command)

    def launch(jobs):
        for running in [task.remote(command, sweep.cpus_per_trial, log) for command, log in jobs]:
            yield ray.get(running)

    return launch


def _write_table(out: Path, trials: list[Trial]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["agent,env,seed,status,attempts,success,steps,wall_seconds,run_dir"]
    for t in trials:
        success = "" if t.success is None else f"{t.success:.4f}"
        lines.append(
            f"{t.agent},{t.env},{t.seed},{t.status},{t.attempts},{success},{t.steps or ''},"
            f"{t.wall_seconds:.1f},{t.run_dir}"
        )
    (out / "sweep.csv").write_text("\n".join(lines) + "\n")
