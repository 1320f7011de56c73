"""Progress bars of long work outside the training loop (dataset generation)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

LOG_EVERY_S = 30.0
"""Without a terminal (a log file, a sweep, CI): a line at the first episode, then at most this often, and the last."""


def generation_notice(console: Console) -> Callable[[str], None]:
    """Where ``generate_dataset`` says what happened besides the episodes (the simulator's warnings): the console,
    verbatim (the text quotes MuJoCo's messages, which may hold brackets)."""
    return lambda text: console.print(text, style="yellow", markup=False, highlight=False)


@contextlib.contextmanager
def generation_progress(console: Console):
    """A rich progress bar that ``generate_dataset`` reports finished episodes to; lines instead of a bar when the
    console is not a terminal (rich draws nothing there until the end, so a run of an hour logged nothing)."""
    if not console.is_terminal:
        start, last = time.monotonic(), None

        def log(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if last is None or now - last >= LOG_EVERY_S or done >= total:
                last = now
                console.print(f"episodes {done}/{total} ({now - start:.0f} s)", highlight=False)

        yield log
        return
    columns = (TextColumn("episodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("generate", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield report
