"""Run outputs for people and tools: CSV files, TensorBoard events, optional wandb, console lines."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rich.console import Console

from chunkrl.files import write_atomically


class CsvStream:
    """Append-only CSV with a header fixed by the first row (later unknown keys are ignored)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] | None = None
        if self.path.exists():
            with self.path.open() as f:
                header = f.readline().strip()
            self.columns = header.split(",") if header else None

    def write(self, row: dict) -> None:
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def last_row(self) -> dict | None:
        """The file's last whole row (None without one)."""
        if not self.path.exists():
            return None
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if _logged_step(r) != math.inf]
        return rows[-1] if rows else None

    def drop_after(self, step: int) -> None:
        """Remove rows logged after ``step`` (a resumed run logs them again)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if _logged_step(r) <= step]
        if len(kept) == len(rows) or self.columns is None:
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(kept)
        write_atomically(self.path, text.getvalue())  # a crash here keeps the old rows, never half of them


def _logged_step(row: dict) -> float:
    """A row's step; a row torn by a crash or a full disk (unparsable or short) counts as after any step."""
    try:
        return float(row["step"]) if None not in row.values() else math.inf
    except (KeyError, TypeError, ValueError):
        return math.inf


class RunLogger:
    """Writes metrics to ``<run>/train.csv``, ``<run>/eval.csv``, ``<run>/episodes.csv``, TensorBoard
    (``<run>/tensorboard``) and, when asked, wandb."""

    STREAMS = ("train", "eval", "episodes")

    def __init__(self, run_dir: Path, tensorboard: bool, wandb: bool, config: dict):
        self.run_dir = Path(run_dir)
        self.console = Console(stderr=True, soft_wrap=True)
        self.streams = {name: CsvStream(self.run_dir / f"{name}.csv") for name in self.STREAMS}
        self.tensorboard = tensorboard
        self.config = config
        self.wandb_module = None
        if wandb:  # checked here, before the run loads anything, so a missing package fails at once
            try:
                import wandb as wandb_module
            except ImportError as error:
                raise RuntimeError("--wandb needs the wandb package: pip install 'chunkrl[wandb]'") from error
            self.wandb_module = wandb_module
        self.writer = None
        self.wandb = None

    def open(self, resume_step: int | None) -> None:
        """Start writing: a resumed run (``resume_step`` not None) first drops the rows logged after that step
        (and TensorBoard purges its events past it), since it logs them again. Until this is called the run
        directory's logs are untouched, so checks that may refuse a resume run before it."""
        if resume_step is not None:
            for stream in self.streams.values():
                stream.drop_after(resume_step)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=resume_step)
        if self.wandb_module is not None:
            self.wandb = self.wandb_module.init(
                project="chunkrl", config=self.config, dir=str(self.run_dir), resume="allow"
            )

    def log(self, stream: str, step: int, metrics: dict[str, float], phase: str) -> None:
        """Record ``metrics`` at ``step`` in ``stream`` (train, eval or episodes)."""
        self.streams[stream].write({"step": step, "phase": phase, **metrics})
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"{stream}/{key}", value, step)
        if self.wandb is not None:
            self.wandb.log({f"{stream}/{k}": v for k, v in metrics.items()}, step=step)

    def last(self, stream: str) -> dict | None:
        """The last row ``stream`` holds (after a resume, up to the checkpoint's step), as written."""
        return self.streams[stream].last_row()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


class SilentLogger:
    """The logger of a data-parallel rank other than 0: rank 0 alone writes logs."""

    def __init__(self):
        self.console = Console(stderr=True, quiet=True)

    def open(self, resume_step: int | None) -> None:
        pass

    def last(self, stream: str) -> None:
        return None

    def log(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
