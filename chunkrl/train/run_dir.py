"""Run directories: made fresh (never reused), marked as chunkrl's, and locked while a process trains in them."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

from rich.markup import escape

from chunkrl.config import TrainConfig, check_values, load_config, resolve_method
from chunkrl.train import checkpoint as ckpt


def new_run_dir(config: TrainConfig, run_dir: Path | None, runs_root: Path = Path("runs")) -> Path:
    """Create a fresh run directory; never reuse one that already holds something."""
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        seeds = f"seeds{'-'.join(map(str, config.seeds))}" if config.seeds else f"seed{config.seed}"
        run_dir = runs_root / config.env / f"{config.agent}-{seeds}-{stamp}"
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--run-dir {run_dir} is a file, not a directory; pass the path of a new directory.")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"The run directory {run_dir} already exists and is not empty; chunkrl never overwrites a run. "
            f"Continue it with `chunkrl train --resume {run_dir}`, or pass another --run-dir."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_run(run_dir)
    return run_dir


RUN_MARKER = ".chunkrl-run"
"""The file by which chunkrl knows a directory as a run it created (and so may resume and append to)."""


def mark_run(run_dir: Path) -> None:
    """Mark a directory chunkrl just created as its run."""
    marker = {"created_by": "chunkrl", "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (Path(run_dir) / RUN_MARKER).write_text(json.dumps(marker) + "\n")


def check_own_run(path: Path) -> None:
    """Refuse to resume (and so append to, truncate or replace files in) a directory chunkrl did not create:
    it must hold the run marker, or be a run from before markers, recognised by its checkpoints (its own, or
    its seeds' for a run of several seeds)."""
    path = Path(path)
    if (path / RUN_MARKER).is_file():
        return
    checkpoints = [
        *path.glob("checkpoints/step_*/model.safetensors"),
        *path.glob("seed_*/checkpoints/step_*/model.safetensors"),
    ]
    if checkpoints:
        mark_run(path)  # a run written before runs were marked: recognised by its checkpoints
        return
    raise ValueError(
        f"{path} is not a run directory chunkrl created (it has no {RUN_MARKER} marker and no checkpoints), so "
        "`--resume` will not train there: resuming appends to and truncates the logs in a run directory, and "
        f"the files in {path} may be yours. Start a new run instead, e.g. `chunkrl train --config "
        f"{path / 'config.yaml'} --run-dir NEW_DIR`."
    )


class RunDirectoryBusy(RuntimeError):
    """Another process is using the run directory."""


_HOLDER_LINE = "process {pid} on {host} since {since}"  # what ``.lock`` holds while a run trains (``lock_holder``)


class RunDirectoryLock:
    """An exclusive lock on a run directory for as long as a process trains in it.

    ``<run>/.lock`` is locked with ``flock`` (released by the OS when the process dies, so a killed run
    never leaves a stale lock) and names its holder, so that a second ``train`` or ``train --resume``
    on the same directory stops with a clear error instead of interleaving logs and checkpoints.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.file = None

    def __enter__(self) -> RunDirectoryLock:
        import fcntl

        file = self.path.open("a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise RunDirectoryBusy(
                f"The run directory {self.path.parent} is in use by {holder}. Wait for that run to finish "
                "(or stop it with Ctrl-C, which writes a resumable checkpoint), then resume it."
            ) from None
        self.file = file
        self._name_holder(os.getpid())
        return self

    def fileno(self) -> int:
        """The locked file's descriptor, for ``subprocess.Popen(pass_fds=...)`` (``shared_with``)."""
        return self.file.fileno()

    def shared_with(self, pid: int) -> None:
        """Name process ``pid`` as the holder: a child started with this lock's descriptor (``pass_fds``) holds
        the lock with its parent, since ``flock`` belongs to the open file both share; when the parent is killed
        outright, the lock stays held, and named, until the child ends too."""
        self._name_holder(pid)

    def _name_holder(self, pid: int) -> None:
        self.file.seek(0)
        self.file.truncate()
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        self.file.write(_HOLDER_LINE.format(pid=pid, host=socket.gethostname(), since=since))
        self.file.flush()

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()  # no holder any more (``lock_holder``); a killed run leaves its line behind
            self.file.close()  # closing releases the flock
            self.file = None


_HOLDER = re.compile(_HOLDER_LINE.format(pid=r"(\d+)", host=r"(\S+)", since="(.+)"))


def lock_holder(run_dir: Path) -> str | None:
    """Who trains in ``run_dir`` now, in the lock's words (``process 123 on vm since 2026-12-04 04:37:56``), or
    None when nobody does. Read without taking the lock, since even a brief probe could make a run that starts at
    that moment stop as busy: a holder on this machine is alive when its process exists (a run killed outright
    leaves its line behind, and its process number could be reused later); a holder on another machine cannot be
    checked from here and is reported as written, marked so."""
    try:
        text = (Path(run_dir) / ".lock").read_text().strip()
    except OSError:
        return None
    match = _HOLDER.fullmatch(text)
    if match is None:
        return None
    if match[2] != socket.gethostname():
        return f"{text} (another machine: not checked)"
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return text


def open_for_resume(path: Path, console) -> tuple[Path, Path | None, TrainConfig]:
    """(run directory, checkpoint or None, saved config) of a run to resume.

    A checkpoint directory is refused with the command that resumes its run; a run killed before its
    first checkpoint (config.yaml but no checkpoints yet) starts again from its saved config.
    """
    path = Path(path)
    if (path / "model.safetensors").exists():
        run = path.parent.parent if path.parent.name == "checkpoints" else None
        where = f"`chunkrl train --resume {run}`" if run else "`chunkrl train --resume RUN_DIR`"
        raise ValueError(
            f"{path} is a checkpoint, not a run directory; resume its run with {where}, which continues from "
            "the run's latest checkpoint (to start a new run from these weights: --init-from)."
        )
    if not (path / "config.yaml").exists():
        raise ckpt.CheckpointError(
            f"{path} is not a run directory (it has no config.yaml). Pass a directory written by `chunkrl train`."
        )
    check_own_run(path)
    config = resolve_method(load_config(path / "config.yaml"))  # fills only what a hand edit left at None
    check_values(config)
    written = path / "checkpoints"
    if not ((written / "latest").exists() or any(written.glob("step_*"))):
        console.print(
            f"[yellow]{path} has no checkpoint yet (the run stopped before its first one): starting it again "
            "from its saved config.[/]"
        )
        return path, None, config
    checkpoint = ckpt.latest_good_checkpoint(path, lambda text: console.print(f"[yellow]{escape(text)}[/]"))
    return path, checkpoint, config
