"""The training loop shared by every agent: offline phase, then online phase.

offline: gradient steps on chunk batches from the dataset, periodic evaluation.
online:  the agent's chunks run open loop in the environment, every step is stored, and after
         ``start_training`` steps the agent is updated ``utd_ratio`` times per environment step; before
         that the ``warmup`` policy acts (uniform random actions, or the agent itself).
         With ``replay: shared`` the replay buffer starts as the dataset and batches are uniform over
         it; with ``replay: symmetric`` (RLPD) online steps go to their own replay and every batch is
         half dataset, half online.

Ctrl-C / SIGTERM write a resumable checkpoint and stop cleanly; a non-finite loss stops the run
without overwriting the last good checkpoint. Losses are checked for NaN/inf on the device at every
update, but read by the host only when metrics are logged and before every evaluation and checkpoint,
so a GPU never waits for the host inside the update loop.

The phases are generators: they yield each batch to train on and receive the update's metrics. One
run drives them with its agent's ``update``; ``--seeds`` drives one run per seed in lockstep and updates
all of them at once with stacked parameters (``train/seeds.py``), through the very same phase code.
"""

from __future__ import annotations

import functools
import json
import signal
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chunkrl.agents.base import Agent
from chunkrl.config import TrainConfig
from chunkrl.data.chunks import ChunkBatch, ChunkSampler, MixedChunkSampler
from chunkrl.data.normalize import FILE as NORMALIZATION_FILE
from chunkrl.data.normalize import Normalizer
from chunkrl.data.trajectories import StepArrays, Trajectories
from chunkrl.envs.executor import ChunkExecutor, UniformRandomPolicy, evaluate
from chunkrl.files import write_atomically
from chunkrl.nets.compiled import compiled
from chunkrl.nets.noise import GeneratorNoise
from chunkrl.train import checkpoint as ckpt
from chunkrl.train.device import machine_description
from chunkrl.train.logging import RunLogger, SilentLogger
from chunkrl.train.on_policy import on_policy_phase


class TrainingInterrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM after writing a resumable checkpoint."""

    def __init__(self, run_dir: Path, step: int, signal_name: str):
        super().__init__(f"{signal_name} at step {step}")
        self.run_dir, self.step, self.signal_name = run_dir, step, signal_name


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks; a second SIGINT stops at once."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Cadence:
    """When periodic work (logging, evaluation, checkpoints) is due: each time the step count passes a multiple
    of the work's interval. One step at a time (off-policy) that is every multiple; in jumps of a rollout's
    steps (on-policy) it is the first step at or after each multiple. An interval of 0 is never due."""

    def __init__(self, intervals: dict[str, int], step: int = 0):
        self.intervals = intervals
        self.last = dict.fromkeys(intervals, step)

    def due(self, kind: str, step: int) -> bool:
        interval, last = self.intervals[kind], self.last[kind]
        if interval <= 0 or step // interval == last // interval:
            return False
        self.last[kind] = step
        return True


@dataclass
class Trainer:
    """A run in progress: its config, data, agent, environments and outputs."""

    config: TrainConfig
    run_dir: Path
    agent: Agent
    normalizer: Normalizer  # the data's units <-> the agent's (saved with every checkpoint)
    store: Trajectories | None  # the dataset (and, with shared replay, the online steps after it); None on-policy
    dataset_size: int
    replay: Trajectories | None  # where online steps are added: ``store`` itself, or a separate online replay
    sampler: ChunkSampler | MixedChunkSampler | None
    env: object
    eval_executor: ChunkExecutor | None  # None: no environment (offline runs on LeRobot or robomimic data)
    logger: RunLogger | SilentLogger
    device: torch.device
    schedule: str = "off_policy"  # the method's declared schedule: off_policy (replay) or on_policy (rollouts)
    rank: int = 0  # this process's rank under torchrun; only rank 0 logs, evaluates and checkpoints
    warmup_policy: UniformRandomPolicy | None = None  # acts before start_training (None: the agent)
    data: dict | None = None  # the training data's size and content digest (summary.json), None on-policy
    label: str = ""  # which seed this is, when several train together (shown in progress and eval lines)
    before_save: Callable[[], None] | None = None  # brings the agent's optimizer state up to date before a save
    counters: ckpt.Counters = field(default_factory=ckpt.Counters)
    evaluations: dict = field(default_factory=dict)
    signals: StopSignals | None = None
    earlier_wall_seconds: float = 0.0  # wall time of the run's segments before this resume
    cadence: Cadence | None = None  # when logging, evaluation and checkpoints are due (set when the phases start)
    _last_log: tuple[float, int] = (0.0, 0)
    _saved_step: int | None = None
    _first_nonfinite: torch.Tensor | None = None  # on the device: step of the first non-finite loss, or -1
    _update_step: torch.Tensor | None = None  # on the device: the step of the latest update

    # ------------------------------------------------------------------ pieces
    def gradient_step(self) -> Generator[ChunkBatch, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Yield a batch; receive the update's metrics (the driver updated the agent on the batch)."""
        batch = self.sampler.sample(self.config.batch_size).to_torch(self.device)
        metrics = yield batch
        self.track_nonfinite(metrics["loss/total"])
        return metrics

    def track_nonfinite(self, loss: torch.Tensor) -> None:
        """Remember (on the loss's device, without a host sync) the first step whose loss was NaN/inf."""
        if self._first_nonfinite is None:
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._update_step = torch.zeros((), dtype=torch.long, device=loss.device)
        self._update_step.fill_(self.counters.global_step)
        first_bad = ~torch.isfinite(loss) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(first_bad, self._update_step, self._first_nonfinite)

    def check_finite(self) -> None:
        """Stop with ``NonFiniteLoss`` if any update so far had a NaN/inf loss (one host read)."""
        if self._first_nonfinite is None or int(self._first_nonfinite) < 0:
            return
        latest = self.run_dir / "checkpoints" / "latest"
        kept = (
            f"its last good checkpoint ({latest.read_text().strip()}) is kept in {latest.parent}"
            if latest.exists()
            else "no checkpoint had been written yet"
        )
        raise NonFiniteLoss(
            f"The loss became NaN or infinite at step {int(self._first_nonfinite)} "
            f"({'online' if self.counters.online_step else 'offline'} phase). The run stopped; {kept}. "
            "Try a lower learning rate; the rows of train.csv before that step show which loss grew."
        )

    def maybe_log(
        self, metrics: dict[str, torch.Tensor] | None, phase: str, progress: Progress, task, extra=None
    ) -> bool:
        """Every ``log_interval`` steps, and at a phase's last step, write the latest update's metrics (and
        ``extra`` values, e.g. rollout statistics); whether it wrote them."""
        step = self.counters.global_step
        due = self.cadence.due("log", step) or step >= self.phase_end(phase)  # a rollout may step past the end
        if metrics is None or not due:
            return False  # nothing to log before the first update (online warm-up)
        values = {k: float(v) for k, v in metrics.items()} | (extra or {})
        shown = " ".join(f"{label}={values[k]:.3g}" for k, label in self.agent.progress_metrics.items() if k in values)
        self.write_train_log(values, phase, progress, task, shown)
        return True

    def restart_rate_clock(self) -> None:
        """Count steps/s from now on (at the start of a phase)."""
        self._last_log = (time.perf_counter(), self.counters.global_step)

    def write_train_log(self, values: dict[str, float], phase: str, progress: Progress, task, shown: str) -> None:
        """One ``train`` row (with the steps/s since the previous one), shown beside the progress bar
        together with the latest evaluation's success."""
        self.check_finite()
        step = self.counters.global_step
        now = time.perf_counter()
        rate = (step - self._last_log[1]) / max(now - self._last_log[0], 1e-9)
        self._last_log = (now, step)
        self.logger.log("train", step, {**values, "steps_per_second": rate}, phase)
        last_success = self.evaluations.get("latest", {}).get("success")
        success = f", success={last_success:.2f}" if last_success is not None else ""
        status = f"{rate:.1f} steps/s {shown}{success}"
        progress.update(task, status=status)
        if not self.logger.console.is_terminal:  # logs and CI: no live bar, so print a line instead
            self.logger.console.print(f"{phase}{self.label} step {step}: {status}")

    def maybe_evaluate(self, phase: str, force: bool = False) -> None:
        if self.rank != 0 or self.eval_executor is None:  # (no environment: offline training only)
            return
        step = self.counters.global_step
        if not force and not self.cadence.due("eval", step):
            return
        self.check_finite()
        deterministic = self.config.eval_acting == "deterministic"
        results = evaluate(self.eval_executor, functools.partial(self.agent.act, deterministic=deterministic),
                           self.config.eval_episodes, self.stop_requested)  # fmt: skip
        if results is None:  # a stop signal cut it short: nothing recorded; a resume evaluates this step again
            return
        self.evaluations["latest"] = {**results, "step": step, "phase": phase}
        self.logger.log("eval", step, results, phase)
        self.logger.console.print(
            f"[bold]eval[/]{self.label} {phase} step {step}: success {results['success']:.2f}, "
            f"return {results['return']:.1f}, length {results['length']:.0f} ({self.config.eval_episodes} episodes)"
        )

    def maybe_checkpoint(self, force: bool = False) -> None:
        if force or self.cadence.due("checkpoint", self.counters.global_step):
            self.save()

    def save(self) -> None:
        """Write a checkpoint of the current state (once per step; never after a non-finite loss)."""
        if self._saved_step == self.counters.global_step or self.rank != 0:
            return
        self.check_finite()
        self._saved_step = self.counters.global_step
        if self.before_save is not None:
            self.before_save()
        rng_states = {"torch": torch.get_rng_state()}
        if self.sampler is not None:
            rng_states["sampler"] = self.sampler.rng_state()
        if isinstance(self.agent.noise, GeneratorNoise):
            rng_states["noise"] = self.agent.noise.get_state()
        if self.warmup_policy is not None:
            rng_states["warmup"] = self.warmup_policy.rng_state()
        if torch.cuda.is_available():
            rng_states["cuda"] = torch.cuda.get_rng_state_all()
        ckpt.save_checkpoint(
            self.run_dir,
            self.agent,
            self.agent.optimizers(),
            self.counters,
            self.config,
            rng_states,
            self.online_steps(),
            keep=self.config.keep_checkpoints,
            extra_files={**self.agent.extra_files(), NORMALIZATION_FILE: self.normalizer.to_json()},
        )

    def online_steps(self) -> StepArrays | None:
        """The steps collected online so far (None before the online phase)."""
        first = self.dataset_size if self.replay is self.store else 0
        if self.replay is None or self.replay.size <= first:
            return None
        steps = self.replay.step_arrays()
        return StepArrays(*(getattr(steps, f.name)[first:] for f in fields(steps)))

    def stop_requested(self) -> bool:
        """Whether Ctrl-C or SIGTERM has arrived (the run stops at the next ``check_signals``)."""
        return self.signals is not None and self.signals.received is not None

    def check_signals(self) -> None:
        if self.stop_requested():
            self.save()
            raise TrainingInterrupted(self.run_dir, self.counters.global_step, self.signals.received)

    # ------------------------------------------------------------------ phases
    def phases(self, progress: Progress) -> Generator[ChunkBatch, dict[str, torch.Tensor], None]:
        """Both phases: yields every batch to train on, receives each update's metrics."""
        c = self.config
        intervals = {"log": c.log_interval, "eval": c.eval_interval, "checkpoint": c.checkpoint_interval}
        self.cadence = Cadence(intervals, self.counters.global_step)  # counted from where the run (re)starts
        self.catch_up()
        yield from self.offline_phase(progress)
        if self.schedule == "on_policy":  # declared by the method's registry entry: rollouts, not replay
            yield from on_policy_phase(self, progress)
        else:
            yield from self.online_phase(progress)

    def offline_phase(self, progress: Progress) -> Generator[ChunkBatch, dict[str, torch.Tensor], None]:
        if self.counters.offline_step >= self.config.offline_steps:
            return
        task = progress.add_task(
            f"offline{self.label}", total=self.config.offline_steps, completed=self.counters.offline_step, status=""
        )
        self.restart_rate_clock()
        while self.counters.offline_step < self.config.offline_steps:
            self.counters.offline_step += 1
            metrics = yield from self.gradient_step()
            self.end_step(metrics, "offline", progress, task)
        self.finish_phase("offline")

    def online_phase(self, progress: Progress) -> Generator[ChunkBatch, dict[str, torch.Tensor], None]:
        c = self.config
        if self.counters.online_step >= c.online_steps:
            return
        task = progress.add_task(
            f"online{self.label}", total=c.online_steps, completed=self.counters.online_step, status=""
        )
        seed = c.seed + 1 + self.counters.episodes
        history = self.agent.history_length
        executor = ChunkExecutor(self.env, c.execute_horizon, seed, history, c.temporal_ensemble)
        metrics = None
        self.restart_rate_clock()
        while self.counters.online_step < c.online_steps:
            warming_up = self.warmup_policy is not None and self.counters.online_step < c.start_training
            step = executor.step(self.warmup_policy if warming_up else self.agent.act)
            self.replay.add(
                step.observation, step.action, step.reward, step.terminated, step.done, step.next_observation
            )
            self.counters.online_step += 1
            if step.episode is not None:
                self.counters.episodes += 1
                self.logger.log("episodes", self.counters.global_step, step.episode, "online")
            if self.counters.online_step >= c.start_training:
                for _ in range(c.utd_ratio):
                    metrics = yield from self.gradient_step()
                    self.counters.online_updates += 1
            self.end_step(metrics, "online", progress, task)
        self.finish_phase("online")

    def end_step(
        self,
        metrics: dict[str, torch.Tensor] | None,
        phase: str,
        progress: Progress,
        task,
        advance: int = 1,
        extra=None,
    ) -> bool:
        """What follows every step (or every rollout of ``advance`` steps) of any phase and schedule: advance the
        progress bar, then log, evaluate and checkpoint when due, and honour a stop signal. Whether it logged."""
        progress.update(task, advance=advance)
        logged = self.maybe_log(metrics, phase, progress, task, extra)
        if self.counters.global_step < self.phase_end(phase):  # the phase's end evaluates in finish_phase
            self.maybe_evaluate(phase)
        self.maybe_checkpoint()
        self.check_signals()
        return logged

    def phase_end(self, phase: str) -> int:
        """The global step at which ``phase`` ends."""
        c = self.config
        return c.offline_steps + (c.online_steps if phase == "online" else 0)

    def finish_phase(self, phase: str) -> None:
        """Evaluate at the phase's last step (unless just done), record it as the phase's final result, save."""
        if self.evaluations.get("latest", {}).get("step") != self.counters.global_step:
            self.maybe_evaluate(phase, force=True)
            self.check_signals()  # a stop during that evaluation: no final result yet (the resume finishes it)
        if "latest" in self.evaluations:  # (ranks other than 0 do not evaluate)
            self.evaluations[f"{phase}_final"] = self.evaluations["latest"]
        self.save()

    def catch_up(self) -> None:
        """On a resume, the evaluation a stop signal cut short: the one due at the step the run stopped at (it
        never got an evaluation of its interval), or the phase's final one if the run stopped at a phase's end."""
        c, step = self.config, self.counters.global_step
        if step == 0:
            return
        row = self.logger.last("eval")  # the curve as written up to this step: its summary.json may be older
        last = int(float(row["step"])) if row else 0
        if row and self.evaluations.get("latest", {}).get("step", -1) < last:
            kept = {k: float(row[k]) for k in ("success", "return", "length", "episodes") if row.get(k)}
            self.evaluations["latest"] = kept | {"step": last, "phase": row.get("phase", "")}
        for phase in ("offline", "online"):
            steps = c.offline_steps if phase == "offline" else c.online_steps
            if steps and step == self.phase_end(phase) and f"{phase}_final" not in self.evaluations:
                self.finish_phase(phase)  # evaluates unless the curve has this step already
                return
        if c.eval_interval > 0 and step // c.eval_interval > last // c.eval_interval:
            self.maybe_evaluate("online" if self.counters.online_step else "offline", force=True)
            self.check_signals()

    def summary(self, status: str, started: float) -> dict:
        return {
            "status": status,
            "agent": self.config.agent,
            "env": self.config.env,
            "sparse": self.config.sparse,
            "seed": self.config.seed,
            "counters": asdict(self.counters),
            "evaluations": self.evaluations,
            "data": self.data,
            "wall_seconds": self.earlier_wall_seconds + time.time() - started,  # every segment of the run
            "device": str(self.device),
            "machine": machine_description(self.device),
        }


def _progress(console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )


def run_trainer(trainer: Trainer, started: float) -> dict:
    """Both phases, then the summary; the first error is the one that propagates."""
    update = compiled(trainer.agent.update) if trainer.config.compile else trainer.agent.update
    return run_trainers([trainer], started, lambda progress: drive(trainer.phases(progress), update))[0]


def run_trainers(trainers: list[Trainer], started: float, run: Callable[[Progress], None]) -> list[dict]:
    """``run(progress)`` with stop signals routed to every trainer, then each one's summary.json (written
    however the run ended); the first error is the one that propagates."""
    status = "failed"
    summaries = []
    try:
        with StopSignals() as signals, _progress(trainers[0].logger.console) as progress:
            for trainer in trainers:
                trainer.signals = signals
            run(progress)
        status = "finished"
    except TrainingInterrupted:
        status = "interrupted"
        raise
    except NonFiniteLoss:
        status = "non-finite loss"
        raise
    finally:
        for trainer in trainers:
            summary = trainer.summary(status, started)
            summaries.append(summary)
            if trainer.rank != 0:
                continue
            try:  # a derived file: failing to write it must not hide the error that ended the run
                write_atomically(trainer.run_dir / "summary.json", json.dumps(summary, indent=2))
            except OSError as error:
                trainer.logger.console.print(f"[yellow]could not write summary.json: {error}[/]")
            trainer.logger.close()
    return summaries


def drive(phases: Generator[ChunkBatch, dict[str, torch.Tensor], None], update) -> None:
    """Run ``phases`` to the end, answering every batch it yields with ``update(batch)``'s metrics."""
    try:
        batch = next(phases)
        while True:
            batch = phases.send(update(batch))
    except StopIteration:
        return
