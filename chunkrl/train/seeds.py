"""Several seeds of one configuration in one process (``chunkrl train --seeds 0 1 2 3``).

``RUN_DIR/config.yaml`` is the configuration with its seeds; ``RUN_DIR/seed_<n>/`` is a complete run of
seed ``n``: its config, logs, TensorBoard events, checkpoints and summary, exactly as a single run
writes them (so ``chunkrl eval`` and ``chunkrl plot`` take it as it is). Each seed has its own dataset
copy and replay, samplers, environments, warm-up policy and random-draw generator; the loop's phases
run for every seed in lockstep and each batch of updates is one stacked update of all seeds
(``agents/stack.py``). ``RUN_DIR/summary.json`` gathers the seeds' results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import statistics
from collections.abc import Generator
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from chunkrl.agents.stack import SeedStack
from chunkrl.config import TrainConfig, save_config
from chunkrl.files import write_atomically
from chunkrl.nets.compiled import compiled
from chunkrl.train.build import build_trainer
from chunkrl.train.run_dir import mark_run, open_for_resume
from chunkrl.train.trainer import Trainer, run_trainers


def lane_config(config: TrainConfig, seed: int) -> TrainConfig:
    """The configuration of one seed's run."""
    return dataclasses.replace(config, seed=seed, seeds=())


def build_lanes(config: TrainConfig, run_dir: Path, resume: bool, console: Console) -> list[Trainer]:
    """One trainer per seed in ``run_dir/seed_<n>`` (restored from its latest checkpoint when resuming).
    ``config`` (``run_dir/config.yaml``) rules: each seed's config.yaml is derived from it, and rewritten
    on resume, so an edit of the run's config (e.g. more steps) reaches every seed."""
    lanes = []
    for seed in config.seeds:
        lane_dir = run_dir / f"seed_{seed}"
        lane = lane_config(config, seed)
        checkpoint = None
        if resume:
            _, checkpoint, _ = open_for_resume(lane_dir, console)
        else:
            lane_dir.mkdir()
            mark_run(lane_dir)
        save_config(lane, lane_dir / "config.yaml")
        trainer = build_trainer(lane, lane_dir, checkpoint, restart=resume and checkpoint is None, own_noise=True)
        trainer.label = f" seed {seed}"
        lanes.append(trainer)
    steps = {lane.counters.global_step for lane in lanes}
    if len(steps) > 1:
        found = ", ".join(f"seed {lane.config.seed}: step {lane.counters.global_step}" for lane in lanes)
        raise RuntimeError(
            f"The seeds of {run_dir} stopped at different steps ({found}), so they cannot go on in lockstep. "
            "Resume each seed_<n> directory as a separate run with `chunkrl train --resume RUN_DIR/seed_<n>`."
        )
    return lanes


def drive_lockstep(lanes: list[Trainer], stack: SeedStack, progress: Progress) -> None:
    """Run every lane's phases together; each round's batches go through one stacked update (compiled with
    ``--compile``).

    A lane that stops with an error (a stop signal, a non-finite loss) ends the round; the lanes are
    all checkpointed at that step (a lane's save is a no-op if it already saved), then the first
    error propagates."""
    update = compiled(stack.update) if lanes[0].config.compile else stack.update
    phases: list[Generator] = [lane.phases(progress) for lane in lanes]
    answers: list[dict | None] = [None] * len(lanes)
    while True:
        batches, errors = [], []
        for phase, answer in zip(phases, answers, strict=True):
            try:
                batches.append(next(phase) if answer is None else phase.send(answer))
            except StopIteration:
                batches.append(None)
            except BaseException as error:  # noqa: BLE001 - re-raised below, after the other lanes saved
                batches.append(None)
                errors.append(error)
        if errors:
            for lane in lanes:
                with contextlib.suppress(Exception):  # e.g. the lane whose loss went non-finite saves nothing
                    lane.save()
            raise errors[0]
        if all(batch is None for batch in batches):
            return
        if any(batch is None for batch in batches):
            raise RuntimeError("the seeds fell out of lockstep (one finished before the others); this is a bug")
        answers = update(batches)


def train_seeds(config: TrainConfig, run_dir: Path, resume: bool, started: float, console: Console) -> dict:
    """Train ``config.seeds`` together in ``run_dir``; returns (and writes) the gathered summary."""
    try:
        lanes = build_lanes(config, run_dir, resume, console)
    except BaseException:
        if not resume:  # nothing was trained: leave no half-made run directory behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    stack = SeedStack([lane.agent for lane in lanes])
    if resume:
        stack.import_optimizer()
    for s, lane in enumerate(lanes):
        lane.before_save = lambda s=s: stack.export_optimizer(s)
    try:
        run_trainers(lanes, started, lambda progress: drive_lockstep(lanes, stack, progress))
    finally:  # each seed's summary.json is written however the run ended: gather them
        files = [lane.run_dir / "summary.json" for lane in lanes]
        summary = gather(config, [json.loads(path.read_text()) for path in files if path.exists()])
        write_atomically(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def gather(config: TrainConfig, summaries: list[dict]) -> dict:
    """The seeds' summaries together, with each phase's final success and return averaged over seeds."""
    evaluations = {}
    for phase in ("offline_final", "online_final"):
        results = [s["evaluations"][phase] for s in summaries if phase in s["evaluations"]]
        if len(results) == len(summaries):
            evaluations[phase] = {
                "success": statistics.fmean(r["success"] for r in results),
                "return": statistics.fmean(r["return"] for r in results),
                "step": results[0]["step"],
                "per_seed": {s["seed"]: r["success"] for s, r in zip(summaries, results, strict=True)},
            }
    return {
        "status": summaries[0]["status"] if summaries else "failed",
        "agent": config.agent,
        "env": config.env,
        "seeds": list(config.seeds),
        "evaluations": evaluations,
        "runs": summaries,
    }
