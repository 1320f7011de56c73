"""Learning curves of the official Q-chunking code on exactly the data and budget of a chunkrl run.

Two steps, in two Python environments:

1. ``export`` (chunkrl's environment) reads a chunkrl run configuration (a trial's ``config.yaml``), builds
   the run's dataset as ``chunkrl train`` would (the same file, task rewards, ``--sparse``, action units) and
   writes it with the matching official settings: ``OUT/data.npz`` and ``OUT/settings.json``.
2. ``train`` (the official code's virtual environment, ``shared/bench/peer_qc/README.md``, plus ``pip install
   ogbench``) trains the official agent (``--peer-dir``'s ``src``, imported, never copied) offline on that
   data with the official ``Dataset.sample_sequence`` batches, evaluates it on the OGBench task every
   ``eval_interval`` steps (chunks executed open loop, as chunkrl evaluates), and writes ``eval.csv``,
   ``config.yaml`` (the agent named ``qc-fql (official code)``) and ``summary.json`` in chunkrl's formats, so
   ``chunkrl plot`` draws it beside chunkrl's runs. It checkpoints at every evaluation and on SIGTERM or
   Ctrl-C; the same command resumes.

    python benchmarks/peer_learning.py export runs/suite/dqc/qc-fql/ENV/qc-fql/seed_0/config.yaml runs/peer/qc-fql
    PYTHONPATH=../shared/bench/peer_qc/src /tmp/peer-venv/bin/python benchmarks/peer_learning.py \\
        train runs/peer/qc-fql --seed 0 --out runs/peer/qc-fql/seed_0

Covered: the flow family of the official code (QC-FQL, FQL-n, FQL: ``distill-ddpg``; QC, BFN-n, BFN:
``best-of-n``), offline. The official code's own seeding (JAX keys and numpy's global generator) is used, so
seed ``s`` here and seed ``s`` in chunkrl draw different numbers: compare seed spreads, not seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

ACTOR_TYPES = {"qc-fql": "distill-ddpg", "fql-n": "distill-ddpg", "fql": "distill-ddpg"}
ACTOR_TYPES |= {"qc": "best-of-n", "bfn-n": "best-of-n", "bfn": "best-of-n"}


def official_settings(config) -> dict:
    """The official ``acfql`` config values that match chunkrl's resolved ``config``, and the run's budget."""
    flow = config.flow
    return {
        "agent": config.agent,
        "env": config.env,
        "official": {
            "lr": flow.learning_rate,
            "batch_size": config.batch_size,
            "actor_hidden_dims": list(flow.actor_hidden_dims),
            "value_hidden_dims": list(flow.critic_hidden_dims),
            "layer_norm": flow.critic_layer_norm,
            "actor_layer_norm": flow.actor_layer_norm,
            "discount": config.discount,
            "tau": flow.target_tau,
            "q_agg": flow.q_aggregation,
            "alpha": flow.alpha,
            "num_qs": flow.num_critics,
            "flow_steps": flow.flow_steps,
            "normalize_q_loss": flow.normalize_q_loss,
            "horizon_length": config.horizon,
            "action_chunking": flow.action_chunking,
            "actor_type": ACTOR_TYPES[config.agent],
            "actor_num_samples": flow.num_samples or 32,
        },
        "sparse": config.sparse,
        "offline_steps": config.offline_steps,
        "eval_interval": config.eval_interval,
        "eval_episodes": config.eval_episodes,
        "max_episode_steps": config.max_episode_steps,
    }


def export(config_path: Path, out: Path) -> None:
    """The dataset and settings of the chunkrl run configured by ``config_path``, for ``train``."""
    import dataclasses

    from rich.console import Console

    from chunkrl.config import load_config, resolve_method, save_config
    from chunkrl.train.build import build_trainer

    config = resolve_method(load_config(config_path))
    if config.agent not in ACTOR_TYPES:
        raise SystemExit(f"{config.agent}: the official flow agents cover {', '.join(ACTOR_TYPES)}")
    if config.online_steps:
        raise SystemExit(f"{config_path} trains online too ({config.online_steps} steps); this runner is offline only")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: choose a new folder (nothing was overwritten)")
    with tempfile.TemporaryDirectory() as scratch:  # the run chunkrl would start, to read its dataset
        quiet = dataclasses.replace(config, tensorboard=False, wandb=False)
        trainer = build_trainer(quiet, Path(scratch), None)
        if not trainer.normalizer.is_identity:
            raise SystemExit(
                f"{config_path}: chunkrl trains this run in normalised units; the official code would act in them "
                "too, so its evaluation would not match. This runner takes OGBench runs (actions already in [-1, 1])."
            )
        store = trainer.store
        size = store.size
        arrays = {
            "observations": store.observations[:size],
            "actions": store.actions[:size],
            "rewards": store.rewards[:size],
            "masks": 1.0 - store.terminals[:size].astype(np.float32),  # the official name: bootstrap allowed
            "terminals": store.ends[:size].astype(np.float32),  # the official name: an episode's last step
            "next_observations": store.next_observations[:size],
        }
        Console().print(f"{size} steps of {config.env} as chunkrl trains on them")
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    save_config(config, out / "chunkrl_config.yaml")  # what the official runs' config.yaml is made from
    settings = official_settings(config) | {"chunkrl_config": str(config_path.resolve())}
    (out / "settings.json").write_text(json.dumps(settings, indent=2))


def evaluate(agent, settings: dict, key, seed: int) -> dict:
    """Success rate, mean return and length over the settings' evaluation episodes, chunks executed open loop;
    with ``sparse``, returns count -1 per step without full success (chunkrl's ``--sparse``)."""
    import jax
    import ogbench

    env = ogbench.make_env_and_datasets(settings["env"], env_only=True)
    max_steps = settings["max_episode_steps"]
    successes, returns, lengths = [], [], []
    for episode in range(settings["eval_episodes"]):
        observation, _ = env.reset(seed=seed * 100_003 + episode)
        queue, done, total, steps, success = [], False, 0.0, 0, 0.0
        while not done:
            if not queue:
                key, sub = jax.random.split(key)
                chunk = np.asarray(agent.sample_actions(observation, rng=sub)).reshape(-1, env.action_space.shape[0])
                queue = list(np.clip(chunk, -1, 1))
            observation, reward, terminated, truncated, info = env.step(queue.pop(0))
            reward = (-1.0 if reward != 0.0 else 0.0) if settings["sparse"] else float(reward)
            total, steps = total + reward, steps + 1
            success = float(info.get("success", 0.0))
            done = terminated or truncated or (max_steps is not None and steps >= max_steps)
        successes.append(success)
        returns.append(total)
        lengths.append(steps)
    env.close()
    return {"success": np.mean(successes), "return": np.mean(returns), "length": np.mean(lengths), "key": key}


def write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def save_state(out: Path, agent, step: int, key, rows: list, wall_s: float) -> None:
    """Everything a resumed run needs: the agent (flax bytes), numpy's and JAX's generators, the rows so far."""
    import flax.serialization

    name, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = [name, keys.tolist(), position, has_gauss, gauss]
    state = {"step": step, "key": np.asarray(key).tolist(), "numpy": numpy_state, "rows": rows, "wall_s": wall_s}
    write_atomically(out / "agent.msgpack", flax.serialization.to_bytes(agent))
    write_atomically(out / "state.json", json.dumps(state).encode())  # last: it names a complete checkpoint


OFFICIAL = " (official code)"
"""Appended to the agent's name in an official run's config.yaml: ``chunkrl plot`` and the learning suite's
report then draw it as a method of its own beside chunkrl's runs of the same agent."""


def cpu_model() -> str | None:
    """The CPU's model name (Linux), as the machines' figures are labelled."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_run_files(folder: Path, out: Path, seed: int, status: str, rows: list, step: int, wall_s: float) -> None:
    """config.yaml and summary.json in chunkrl's format, so ``chunkrl plot`` and ``report`` read the run."""
    import platform

    import jax
    import yaml

    config = yaml.safe_load((folder / "chunkrl_config.yaml").read_text())
    config.update(agent=config["agent"] + OFFICIAL, seed=seed, tensorboard=False)
    write_atomically(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    final = {"success": rows[-1]["success"], "return": rows[-1]["return"], "step": rows[-1]["step"]} if rows else {}
    summary = {
        "status": status,
        "counters": {"offline_step": step},
        "evaluations": {"offline_final": final} if status == "finished" and final else {},
        "wall_seconds": wall_s,
        "machine": f"{cpu_model() or platform.machine()}, {os.cpu_count()} CPUs; jax {jax.__version__} on "
        f"{jax.devices()[0].platform}",
        "official_code": "github.com/ColinQiyangLi/qc at 48283b4 (shared/bench/peer_qc)",
    }
    write_atomically(out / "summary.json", json.dumps(summary, indent=2).encode())


def train(folder: Path, seed: int, out: Path) -> None:
    """Train the official agent on ``folder``'s data and settings; write ``out/eval.csv``. A checkpoint is
    written at every evaluation and on SIGTERM or Ctrl-C; the same command resumes it."""
    import flax.serialization
    import jax
    from agents.acfql import ACFQLAgent, get_config
    from utils.datasets import Dataset

    settings = json.loads((folder / "settings.json").read_text())
    if (out / "summary.json").exists() and json.loads((out / "summary.json").read_text())["status"] == "finished":
        raise SystemExit(f"{out} holds a finished run: choose another --out (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.create(**dict(np.load(folder / "data.npz")))
    config = get_config()
    for name, value in settings["official"].items():
        config[name] = tuple(value) if name.endswith("hidden_dims") else value
    np.random.seed(seed)  # the official sampler draws from numpy's global generator
    example = dataset.sample(())
    agent = ACFQLAgent.create(seed, example["observations"], example["actions"], config)
    key, first, rows, wall_s = jax.random.PRNGKey(seed + 1), 1, [], 0.0
    if (out / "state.json").exists():
        state = json.loads((out / "state.json").read_text())
        agent = flax.serialization.from_bytes(agent, (out / "agent.msgpack").read_bytes())
        name, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, gauss))
        key, first = np.asarray(state["key"], np.uint32), state["step"] + 1
        rows, wall_s = state["rows"], state["wall_s"]
        print(f"resuming {out} at step {state['step']}", flush=True)
    stop = {"signal": None}

    def request_stop(signum, frame):
        stop["signal"] = signum

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    steps, interval = settings["offline_steps"], settings["eval_interval"] or settings["offline_steps"]
    started = time.perf_counter() - wall_s

    def checkpoint(step: int, status: str) -> None:
        save_state(out, agent, step, key, rows, time.perf_counter() - started)
        write_run_files(folder, out, seed, status, rows, step, time.perf_counter() - started)

    for step in range(first, steps + 1):
        batch = dataset.sample_sequence(config["batch_size"], config["horizon_length"], config["discount"])
        agent, _ = agent.update(batch)
        if step % interval == 0 or step == steps:
            result = evaluate(agent, settings, key, seed)
            key = result.pop("key")
            rows.append({"step": step, "phase": "offline", **result, "episodes": settings["eval_episodes"]})
            with open(out / "eval.csv", "w", newline="") as f:  # rewritten whole after every evaluation
                writer = csv.DictWriter(f, fieldnames=["step", "phase", "success", "return", "length", "episodes"])
                writer.writeheader()
                writer.writerows(rows)
            minutes = (time.perf_counter() - started) / 60
            print(f"step {step}: success {result['success']:.2f} ({minutes:.1f} min)", flush=True)
            checkpoint(step, "running")
        if stop["signal"] is not None:
            checkpoint(step, "interrupted")
            print(f"stopped at step {step}; the same command resumes", flush=True)
            raise SystemExit(128 + stop["signal"])
    write_run_files(folder, out, seed, "finished", rows, steps, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="write a chunkrl run's data and matching official settings")
    exporting.add_argument("config", type=Path, help="a chunkrl run's config.yaml")
    exporting.add_argument("out", type=Path, help="an empty or new folder")
    training = commands.add_parser("train", help="train the official agent on an exported folder")
    training.add_argument("folder", type=Path, help="a folder written by export")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--out", type=Path, required=True, help="where eval.csv, checkpoints and summary.json go")
    args = parser.parse_args()
    if args.command == "export":
        export(args.config, args.out)
    else:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        train(args.folder, args.seed, args.out)


if __name__ == "__main__":
    main()
