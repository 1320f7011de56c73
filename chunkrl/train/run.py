"""The entry point of training: a new run or a resumed one, locked while it trains, one seed or many."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from rich.console import Console

from chunkrl.agents.registry import METHODS
from chunkrl.agents.stack import unstackable_message
from chunkrl.config import TrainConfig, check_values, load_config, resolve_method, save_config
from chunkrl.train import distributed
from chunkrl.train.build import build_trainer
from chunkrl.train.run_dir import RunDirectoryLock, check_own_run, new_run_dir, open_for_resume
from chunkrl.train.trainer import run_trainer


def train(config: TrainConfig, run_dir: Path | None = None, resume: Path | None = None) -> dict:
    """Run (or resume) training; returns the summary also written to ``<run>/summary.json``."""
    started = time.time()
    checkpoint = None
    console = Console(stderr=True, soft_wrap=True)
    is_checkpoint = resume is not None and (Path(resume) / "model.safetensors").exists()  # refused below
    if resume is not None and (Path(resume) / "config.yaml").exists() and not is_checkpoint:
        check_own_run(Path(resume))
        saved = resolve_method(load_config(Path(resume) / "config.yaml"))
        if saved.seeds:  # several seeds: each seed_<n> directory is resumed from its own checkpoint
            from chunkrl.train.seeds import train_seeds

            with RunDirectoryLock(Path(resume)):
                return train_seeds(saved, Path(resume), True, started, console)
    rank = distributed.init()
    if resume is not None:
        run_dir, checkpoint, config = open_for_resume(Path(resume), console)
    else:
        check_values(config)
        config = resolve_method(config)  # also rejects an unknown agent or environment name
        check_values(config)  # the method's defaults filled in
        if config.seeds and not METHODS[config.agent].stacks_seeds:
            raise ValueError(unstackable_message(config.agent) + ". Nothing was created.")
        run_dir = distributed.from_rank0(new_run_dir(config, run_dir) if rank == 0 else None)
    with RunDirectoryLock(run_dir) if rank == 0 else contextlib.nullcontext():
        if resume is None and rank == 0:
            save_config(config, run_dir / "config.yaml")
        if config.seeds:
            from chunkrl.train.seeds import train_seeds

            return train_seeds(config, run_dir, False, started, console)
        try:
            trainer = build_trainer(
                config, run_dir, checkpoint, restart=resume is not None and checkpoint is None, rank=rank
            )
        except BaseException:
            if resume is None and rank == 0:  # nothing was trained: leave no half-made run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        try:
            result = run_trainer(trainer, started)
        except BaseException:
            distributed.finish(wait=False)
            raise
        del trainer  # DistributedDataParallel holds the process group: release it now, not at interpreter exit
        distributed.finish()
        return result
