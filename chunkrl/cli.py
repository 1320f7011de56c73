"""``chunkrl`` command line: thin wrappers that parse arguments and call library code.

chunkrl train [--config FILE] [--run-dir DIR] [options]   train (offline, then online)
chunkrl train --resume RUN_DIR                             continue an interrupted run
chunkrl eval CHECKPOINT_OR_RUN [--episodes N]              evaluate a checkpoint
chunkrl data generate DATASET [--episodes N] [--workers W] generate an OGBench dataset (or scripted ALOHA demos:
                                                           aloha-transfer-cube-scripted, aloha-insertion-scripted)
chunkrl data list                                          known datasets and where they are cached
chunkrl data export --env ENV --out DIR                    write a dataset as a LeRobot v3 folder
chunkrl plot RUN_DIR [RUN_DIR ...] [--out FILE] [--paper]  success or return (mean, 95% CI over seeds), PNG + SVG
chunkrl report RUN_DIR... [--out FILE.md] [--each-run]     Markdown: final success, steps, wall time (and each run)
chunkrl sweep --agents A.. --envs E.. --seeds 0-4          a grid of runs (process pool, or Ray: --ray-address)
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import select
import sys
import warnings
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from chunkrl.data.trajectories import DatasetError

console = Console(stderr=True, soft_wrap=True)
EXIT_ERROR = 2
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train(argv: list[str]) -> int:
    import tyro

    from chunkrl.config import TrainConfig, load_config
    from chunkrl.train.run import train

    parser = argparse.ArgumentParser(prog="chunkrl train", add_help=False)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--run-dir", type=Path, default=None)
    known, rest = parser.parse_known_args(argv)
    if known.resume is not None:
        if rest or known.config or known.run_dir:
            raise ValueError(
                "--resume continues a run with its saved config; do not combine it with other options. "
                f"To change settings, edit {known.resume / 'config.yaml'} before resuming, or start a new run."
            )
        summary = train(TrainConfig(), resume=known.resume)
    else:
        base = load_config(known.config) if known.config else TrainConfig()
        description = (
            "Train an action-chunking agent: offline on an OGBench dataset, then online (the RLPD family: "
            "online only, with the dataset as prior data; diffusion-ql and cpql: offline only). "
            "Extra options: --config FILE (YAML/JSON defaults), --run-dir DIR, --resume RUN_DIR."
        )
        config = tyro.cli(TrainConfig, args=rest, default=base, prog="chunkrl train", description=description)
        summary = train(config, run_dir=known.run_dir)
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    finals = {k: v for k, v in summary["evaluations"].items() if k != "latest"}
    console.print(f"[bold green]{summary['status']}[/] {summary['agent']} on {summary['env']}")
    for name, result in finals.items():
        console.print(
            f"  {name}: success {result['success']:.2f}, return {result['return']:.1f} at step {result['step']}"
        )


def _eval(argv: list[str]) -> int:
    from chunkrl.train.evaluate import evaluate_checkpoint

    parser = argparse.ArgumentParser(prog="chunkrl eval", description="Evaluate a checkpoint or a run's latest one.")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint directory or a run directory")
    parser.add_argument(
        "--episodes", type=positive_int, default=None, help="episodes (default: the run's eval_episodes)"
    )
    parser.add_argument(
        "--execute-horizon", type=positive_int, default=None, help="actions per chunk before re-planning"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    acting = parser.add_mutually_exclusive_group()
    acting.add_argument(
        "--deterministic",
        action="store_const",
        const=True,
        help="act with the agent's deterministic chunk (default: as the run's evaluations acted, its eval_acting)",
    )
    acting.add_argument(
        "--sampled", dest="deterministic", action="store_const", const=False, help="act with sampled chunks"
    )
    args = parser.parse_args(argv)
    results = evaluate_checkpoint(args.checkpoint, args.episodes, args.execute_horizon, args.device, args.deterministic)
    print(json.dumps(results, indent=2))
    return 0


def _data(argv: list[str]) -> int:
    from chunkrl.data.catalog import default_cache_dir, generated_dataset_path
    from chunkrl.envs.ogbench import DATASETS

    parser = argparse.ArgumentParser(prog="chunkrl data", description="OGBench datasets and scripted ALOHA data.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate a dataset with OGBench's scripted oracles")
    gen.add_argument(
        "dataset",
        help="e.g. scene-play-v0, puzzle-3x3-play-v0, cube-double-noisy-v0, aloha-transfer-cube-scripted, "
        "aloha-insertion-scripted",
    )
    gen.add_argument("--episodes", type=positive_int, default=None, help="training episodes (default: OGBench's count)")
    gen.add_argument("--workers", type=positive_int, default=2, help="worker processes (default 2)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", type=Path, default=None, help="output .npz (default: the cache, where training looks)")
    gen.add_argument("--cache-dir", type=Path, default=None)
    gen.add_argument("--overwrite", action="store_true", help="replace existing files")
    commands.add_parser("list", help="known datasets and the generated ones in the cache")
    export = commands.add_parser("export", help="write a chunkrl dataset as a LeRobot v3 folder")
    export.add_argument("--env", required=True, help="the dataset's task, e.g. aloha-transfer-cube or an OGBench task")
    export.add_argument("--dataset-path", type=Path, default=None, help="default: the task's cached dataset")
    export.add_argument("--dataset-episodes", type=positive_int, default=None)
    export.add_argument("--sparse", action="store_true", help="OGBench: the sparse reward")
    export.add_argument("--out", type=Path, required=True, help="the LeRobot folder to write (new or empty)")
    export.add_argument("--fps", type=positive_int, default=50, help="frame rate written to meta/info.json")
    export.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "export":
        return _export(args)
    if args.command == "list":
        root = default_cache_dir() / "ogbench"
        cached = sorted(str(p) for p in root.glob("*/*.npz") if not p.name.endswith("-val.npz"))
        print("known datasets:\n  " + "\n  ".join(DATASETS))
        print(f"generated in {root}:\n  " + ("\n  ".join(cached) if cached else "(none)"))
        return 0
    from chunkrl.envs.scripted.aloha import DATASETS as SCRIPTED
    from chunkrl.progress import generation_notice, generation_progress

    if args.dataset in SCRIPTED:
        return _generate_scripted(args)
    from chunkrl.envs.scripted.ogbench import generate_dataset, official_settings

    settings = official_settings(args.dataset, args.episodes, args.seed)
    out = args.out or generated_dataset_path(args.dataset, settings.episodes, args.cache_dir)
    console.print(
        f"Generating {args.dataset}: {settings.episodes} + {settings.validation_episodes} validation episodes of "
        f"{settings.max_episode_steps} steps, {args.workers} workers -> {out}"
    )
    with generation_progress(console) as report:
        train_path, val_path = generate_dataset(
            settings, out, args.workers, args.overwrite, report, notice=generation_notice(console)
        )
    console.print(f"[green]wrote[/] {train_path} and {val_path}")
    return 0


def _export(args) -> int:
    """``chunkrl data export``: any dataset chunkrl trains on, as a LeRobot v3 folder."""
    from chunkrl.config import TrainConfig
    from chunkrl.data.catalog import load_dataset
    from chunkrl.data.sources.lerobot import write_lerobot
    from chunkrl.envs.registry import make_env

    config = TrainConfig(
        env=args.env, dataset_path=args.dataset_path, dataset_episodes=args.dataset_episodes, sparse=args.sparse
    )
    env = None if args.env == "none" else make_env(args.env, args.sparse)
    store = load_dataset(config, env, 0, console)
    out = write_lerobot(store, args.out, args.fps, task=args.env, overwrite=args.overwrite)
    console.print(f"[green]wrote[/] {out}: {store.num_trajectories} episodes, {store.size} frames (LeRobot v3)")
    return 0


def _generate_scripted(args) -> int:
    """``chunkrl data generate aloha-<task>-scripted``: scripted ALOHA demonstrations."""
    from chunkrl.data.catalog import ALOHA_EPISODES, generate_scripted_dataset, generated_dataset_path

    episodes = args.episodes or ALOHA_EPISODES
    out = args.out or generated_dataset_path(args.dataset, episodes, args.cache_dir)
    generate_scripted_dataset(args.dataset, out, episodes, console, args.seed, args.overwrite)
    return 0


def _plot(argv: list[str]) -> int:
    from chunkrl.report.plot import PAPER_CURVES, plot_runs

    parser = argparse.ArgumentParser(
        prog="chunkrl plot",
        description="Mean evaluation success per method and task, with a 95%% bootstrap CI over seeds (PNG + SVG).",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (seeds of one configuration are grouped)")
    parser.add_argument("--out", type=Path, default=None, help="PNG file (default: <first run>/success.png)")
    parser.add_argument("--paper", action="store_true", help="overlay the paper's curve for the same task and method")
    parser.add_argument("--reference", type=Path, default=None, help="another curves CSV to overlay")
    parser.add_argument("--metric", choices=("success", "return"), default="success", help="what the curves show")
    parser.add_argument(
        "--baseline",
        type=Path,
        nargs="+",
        default=[],
        help="runs whose final evaluation is drawn as a level (e.g. the imitation runs a fine-tuning started from)",
    )
    args = parser.parse_args(argv)
    reference = args.reference or (PAPER_CURVES if args.paper else None)
    warn = lambda text: console.print(f"[yellow]{escape(text)}[/]")  # noqa: E731
    out = plot_runs(args.runs, args.out, reference, warn, args.metric, args.baseline)
    console.print(f"[green]wrote[/] {out} and {out.with_suffix('.svg')}")
    return 0


def _report(argv: list[str]) -> int:
    from chunkrl.report.plot import report_table, seed_table

    parser = argparse.ArgumentParser(
        prog="chunkrl report", description="A Markdown table: final success (mean, 95%% CI), steps, wall time."
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (seeds of one configuration are grouped)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument(
        "--each-run",
        action="store_true",
        help="below it, a table per task with a row per run: success at each evaluation, wall time, machine, data",
    )
    args = parser.parse_args(argv)
    table = report_table(args.runs, warn=lambda text: console.print(f"[yellow]{escape(text)}[/]"))
    if args.each_run:  # the runs that could not be read were named above
        table += "\n" + seed_table(args.runs, warn=lambda _: None)
    print(table, end="")
    if args.out is not None:
        from chunkrl.files import write_atomically

        write_atomically(args.out, table)
        console.print(f"[green]wrote[/] {args.out}")
    return 0


def _sweep(argv: list[str]) -> int:
    from rich.table import Table

    from chunkrl.sweep import Sweep, parse_seeds, run_sweep, sigterm_stops_trials

    parser = argparse.ArgumentParser(
        prog="chunkrl sweep",
        description="Run a grid of agents x environments x seeds (resumable: launch it again to finish it).",
    )
    parser.add_argument("--agents", nargs="+", required=True)
    parser.add_argument("--envs", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", default=["0"], help="seeds or ranges, e.g. 0-4")
    parser.add_argument("--set", nargs="*", default=[], dest="settings", help="options for every trial: key=value")
    parser.add_argument("--config", type=Path, default=None, help="a YAML/JSON preset for every trial")
    parser.add_argument("--out", type=Path, default=Path("sweeps") / "sweep", help="directory of the trials")
    parser.add_argument("--workers", type=positive_int, default=1, help="trials at a time (process pool)")
    parser.add_argument("--cpus-per-trial", type=positive_int, default=1, help="threads (and Ray CPUs) per trial")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="Ray GPUs per trial")
    parser.add_argument("--ray-address", default=None, help="run on Ray: auto, HOST:PORT, or local (a new instance)")
    args = parser.parse_args(argv)
    sweep = Sweep(
        args.agents, args.envs, parse_seeds(args.seeds), args.out, args.settings, args.config,
        args.cpus_per_trial, args.gpus_per_trial,
    )  # fmt: skip
    where = f"Ray {args.ray_address}" if args.ray_address else f"{args.workers} workers"
    console.print(f"{len(sweep.trials())} trials -> {args.out} ({where})")

    try:
        with sigterm_stops_trials():
            trials = run_sweep(
                sweep,
                args.workers,
                args.ray_address,
                lambda t: console.print(f"  {t.env} {t.agent} seed {t.seed}: {t.status}"),
            )
    except KeyboardInterrupt:  # Ctrl-C reaches the trials too: each writes a resumable checkpoint and stops
        console.print(
            "[yellow]sweep interrupted: the running trials wrote resumable checkpoints.[/] Launch the same "
            "`chunkrl sweep` command again to finish it (finished trials are skipped, the others resumed)."
        )
        return EXIT_CODES["SIGINT"]
    table = Table("env", "agent", "seed", "status", "success", "steps", "wall s")
    for t in trials:
        success = "" if t.success is None else f"{t.success:.2f}"
        table.add_row(t.env, t.agent, str(t.seed), t.status, success, str(t.steps or ""), f"{t.wall_seconds:.0f}")
    console.print(table)
    console.print(f"table: {args.out / 'sweep.csv'}")
    failed = [t for t in trials if t.status == "failed"]
    for t in failed:
        console.print(
            f"[red]failed twice[/] {t.run_dir}: {escape(t.error)} (log: {t.run_dir.parent / f'seed_{t.seed}.log'})"
        )
    return 1 if failed else 0


COMMANDS = {"train": _train, "eval": _eval, "data": _data, "plot": _plot, "report": _report, "sweep": _sweep}


def quiet_if_stdout_closed() -> bool:
    """True when standard output is a pipe whose reader has closed its end (`... | head`: the poll reports an
    error on it); standard output then goes to /dev/null, so that the interpreter's flush of what is left at exit
    does not fail again. False (nothing changed) for any other stdout."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        gone = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return gone


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``chunkrl`` console script."""
    from chunkrl.errors import CheckpointError
    from chunkrl.train.trainer import NonFiniteLoss, TrainingInterrupted

    warnings.filterwarnings("ignore", message=".*precision lowered.*")  # gymnasium notices about OGBench's spaces
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        console.print(f"[bold red]error:[/] unknown command {escape(repr(argv[0]))}.{hint}", highlight=False)
        print(__doc__, file=sys.stderr)
        return EXIT_ERROR
    try:
        return COMMANDS[argv[0]](argv[1:])
    except TrainingInterrupted as stop:
        console.print(
            f"[yellow]{stop.signal_name}: stopped at step {stop.step}; a resumable checkpoint was written.[/] "
            f"Continue with: chunkrl train --resume {stop.run_dir}"
        )
        return EXIT_CODES.get(stop.signal_name, 1)
    except (
        ValueError,
        DatasetError,
        FileExistsError,
        FileNotFoundError,
        CheckpointError,
        NonFiniteLoss,
        RuntimeError,
        OSError,  # permissions, a full disk, a file where a directory should be: the message names the path
    ) as error:
        if isinstance(error, BrokenPipeError) and quiet_if_stdout_closed():
            return 0  # `chunkrl ... | head`: the reader has what it wanted; any other broken pipe is an error
        console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        return EXIT_ERROR
    except KeyboardInterrupt:  # the second Ctrl-C: stop at once, keeping the last checkpoint written
        console.print("[yellow]stopped at once (second Ctrl-C); the run keeps its last checkpoint.[/]")
        return EXIT_CODES["SIGINT"]
    except Exception:
        console.print_exception()
        console.print(
            "[bold red]This is a bug in chunkrl, not a mistake of yours.[/] Please report it with the command you "
            "ran and the traceback above."
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
