"""Learning curves of the official Q-chunking code on exactly the data and budget of a chunkrl run.

Two steps, in two Python environments:

1. ``export`` (chunkrl's environment) reads a chunkrl run configuration (a trial's ``config.yaml``), builds
   the run's dataset as ``chunkrl train`` would (the same file, task rewards, ``--sparse``, action units) and
   writes it with the matching official settings: ``OUT/data.npz`` and ``OUT/settings.json``. A setting the
   official code cannot express (an ACT actor, decoupled horizons, a BC schedule, ...) is refused, named.
2. ``train`` (the official code's virtual environment, ``shared/bench/peer_qc/README.md``, plus ``pip install
   ogbench``) trains the official agent (``--peer-dir``'s ``src``, imported, never copied) on that data with
   the official ``Dataset.sample_sequence`` batches: the offline phase, then the online phase as the official
   scripts run it (``main.py``: online steps appended to the dataset, the policy acting from the start;
   ``main_online.py``: a separate replay, batches half dataset and half online, uniform random actions until
   training starts; whichever the chunkrl run's ``replay`` and ``warmup`` are, with its ``start_training`` and
   ``utd_ratio``). It evaluates on the OGBench task every ``eval_interval`` steps (chunks executed open loop,
   as chunkrl evaluates), and writes ``eval.csv``, ``config.yaml`` (the agent named ``qc-fql (official
   code)``) and ``summary.json`` in chunkrl's formats, so ``chunkrl plot`` draws it beside chunkrl's runs, and
   a ``train.csv`` row every 1,000 steps (step, the official agent's update info under its own names, e.g.
   ``critic/critic_loss``, ``actor/entropy``, ``actor/alpha``, and steps/s, which the learning suite's ``list``
   reads), and an
   ``episodes.csv`` row for every online training episode (return, length, success), as chunkrl's. It
   checkpoints (with the online replay) at every evaluation and on SIGTERM or Ctrl-C; the same command
   resumes. Offline, a resumed run ends byte-identical to an uninterrupted one; online, an episode cut by the
   stop is not continued: the resumed run starts a new one (seeded from the step).

    python benchmarks/peer_learning.py export runs/suite/dqc/qc-fql/ENV/qc-fql/seed_0/config.yaml runs/peer/qc-fql
    PYTHONPATH=../shared/bench/peer_qc/src /tmp/peer-venv/bin/python benchmarks/peer_learning.py \\
        train runs/peer/qc-fql --seed 0 --out runs/peer/qc-fql/seed_0 [--cpus 0]

``--cpus`` pins the run to those CPUs before JAX starts. Without it the official code uses every CPU it may use,
whatever ``XLA_FLAGS`` say (JAX 0.6 spreads an update over threads on all of them), so a "one thread" run beside
another takes part of its CPU; the learning suite pins each official run to a CPU of its own.

Covered: the flow family of the official code (``acfql``; QC-FQL, FQL-n, FQL: ``distill-ddpg``; QC, BFN-n,
BFN: ``best-of-n``) and its RLPD family (``acrlpd``: QC-RLPD, RLPD-AC, RLPD with an MLP actor). The official
code's own seeding (JAX keys and numpy's global generator) is used, so seed ``s`` here and seed ``s`` in chunkrl
draw different numbers: compare seed spreads, not seeds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

ACTOR_TYPES = {"qc-fql": "distill-ddpg", "fql-n": "distill-ddpg", "fql": "distill-ddpg"}
ACTOR_TYPES |= {"qc": "best-of-n", "bfn-n": "best-of-n", "bfn": "best-of-n"}
RLPD_AGENTS = ("qc-rlpd", "rlpd-ac", "rlpd")


def inexpressible(config) -> list[str]:
    """The settings of chunkrl's resolved ``config`` that the official code has no equivalent of."""
    problems = []
    if config.critic_horizon != config.horizon or config.actor_chunk != config.horizon:
        problems.append(f"decoupled horizons (critic {config.critic_horizon}, actor {config.actor_chunk})")
    if config.execute_horizon not in (None, config.actor_chunk) or config.temporal_ensemble is not None:
        problems.append("executing part of each chunk (the official code executes the whole chunk)")
    if config.agent in RLPD_AGENTS:
        sac, chunked = config.sac, config.horizon > 1
        checks = {
            "sac.actor": (sac.actor, "mlp"),
            "sac.networks": (sac.networks, "rlpd"),  # acrlpd's layers: Linear, LayerNorm, ReLU; log-std >= -20
            "sac.actor_layer_norm": (sac.actor_layer_norm, False),
            "sac.critic_input": (sac.critic_input if chunked else "chunk", "chunk"),
            "sac.rho": (sac.rho, 0.0),
            "sac.backup_entropy": (sac.backup_entropy, False),
            "sac.bc_loss": (sac.bc_loss, "nll"),
            "sac.bc_rows": (sac.bc_rows, "all"),
            "sac.bc_weight_schedule": (sac.bc_weight_schedule, "constant"),
            "sac.bc_pretrain_steps": (sac.bc_pretrain_steps, 0),
            "sac.target_entropy_scaling": (sac.target_entropy_scaling if chunked else "linear", "linear"),
        }
        problems += [
            f"{name} {value!r} (the official code: {want!r})" for name, (value, want) in checks.items() if value != want
        ]
    return problems


def budget(config) -> dict:
    """The run's phases and online settings, as the official scripts' flags."""
    return {
        "offline_steps": config.offline_steps,
        "online_steps": config.online_steps,
        "replay": config.replay,
        "warmup": config.warmup,
        "start_training": config.start_training,
        "utd_ratio": config.utd_ratio,
        "eval_interval": config.eval_interval,
        "eval_episodes": config.eval_episodes,
        "max_episode_steps": config.max_episode_steps,
    }


def rlpd_settings(config) -> dict:
    """The official ``acrlpd`` config values that match chunkrl's resolved ``config``."""
    sac = config.sac
    settings = {
        "lr": sac.learning_rate,
        "batch_size": config.batch_size,
        "actor_hidden_dims": list(sac.actor_hidden_dims),
        "value_hidden_dims": list(sac.critic_hidden_dims),
        "layer_norm": sac.critic_layer_norm,
        "discount": config.discount,
        "tau": sac.target_tau,
        "num_qs": sac.num_critics,
        "q_agg": sac.q_aggregation,
        "target_entropy_multiplier": sac.target_entropy_multiplier,
        "bc_alpha": sac.bc_alpha,
        "horizon_length": config.horizon,
        "action_chunking": True,
        "init_temp": sac.init_temperature,
    }
    if sac.target_entropy is not None:
        settings["target_entropy"] = sac.target_entropy
    return settings


def official_settings(config) -> dict:
    """The official agent (``acfql`` or ``acrlpd``) and its config values that match chunkrl's resolved
    ``config``, and the run's budget."""
    common = {"agent": config.agent, "env": config.env, "sparse": config.sparse, **budget(config)}
    if config.agent in RLPD_AGENTS:
        return {**common, "official_agent": "acrlpd", "official": rlpd_settings(config)}
    flow = config.flow
    return {
        **common,
        "official_agent": "acfql",
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
            # best-of-N (QC, BFN-n, BFN) has no distillation term: chunkrl leaves alpha unset, while the official
            # loss multiplies its zero distillation loss by alpha, so a number is needed there (any; 0)
            "alpha": 0.0 if flow.alpha is None else flow.alpha,
            "num_qs": flow.num_critics,
            "flow_steps": flow.flow_steps,
            "normalize_q_loss": flow.normalize_q_loss,
            "horizon_length": config.horizon,
            "action_chunking": flow.action_chunking,
            "actor_type": ACTOR_TYPES[config.agent],
            "actor_num_samples": flow.num_samples or 32,
        },
    }


def export(config_path: Path, out: Path) -> None:
    """The dataset and settings of the chunkrl run configured by ``config_path``, for ``train``."""
    import dataclasses

    from rich.console import Console

    from chunkrl.config import load_config, resolve_method, save_config
    from chunkrl.train.build import build_trainer

    config = resolve_method(load_config(config_path))
    if config.agent not in (*ACTOR_TYPES, *RLPD_AGENTS):
        raise SystemExit(f"{config.agent}: the official code covers {', '.join((*ACTOR_TYPES, *RLPD_AGENTS))}")
    problems = inexpressible(config)
    if problems:
        raise SystemExit(f"{config_path}: the official code cannot run {'; '.join(problems)}. Nothing was written.")
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


def data_record(arrays: dict) -> dict:
    """What a chunkrl run records of its training data (``summary.json``'s ``data``): the number of transitions
    and the digest ``Trajectories.content_digest`` computes, here from ``export``'s arrays under the official names
    (``masks`` 0 where chunkrl's ``terminals`` are set, official ``terminals`` where chunkrl's ``ends`` are). The
    official run's summary carries it, so the report checks that both codes trained on the same steps. numpy
    only: it runs in the official code's environment."""
    steps = (
        arrays["observations"],
        arrays["actions"],
        arrays["rewards"],
        arrays["masks"] == 0.0,
        arrays["terminals"] != 0.0,
        arrays["next_observations"],
    )
    digest = hashlib.sha256()
    for values in steps:
        digest.update(np.ascontiguousarray(values).data)
    return {"transitions": len(arrays["rewards"]), "sha256": digest.hexdigest()}


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


def save_state(out: Path, agent, progress: dict, key, rows: list, wall_s: float, replay=None) -> None:
    """Everything a resumed run needs: the agent (flax bytes), numpy's and JAX's generators, the rows so far,
    the phase and step reached (``progress``) and, online, the replay's online part."""
    import flax.serialization

    name, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = [name, keys.tolist(), position, has_gauss, gauss]
    state = {**progress, "key": np.asarray(key).tolist(), "numpy": numpy_state, "rows": rows, "wall_s": wall_s}
    write_atomically(out / "agent.msgpack", flax.serialization.to_bytes(agent))
    if replay is not None:
        buffer, first = replay
        arrays = {k: np.asarray(v[first : buffer.size]) for k, v in buffer.items()}
        packed = io.BytesIO()
        np.savez(packed, **arrays)
        write_atomically(out / "replay.npz", packed.getvalue())
    write_atomically(out / "state.json", json.dumps(state).encode())  # last: it names a complete checkpoint


def global_step(phase: str, step: int, offline_steps: int) -> int:
    """A step of ``phase`` on chunkrl's axis, the one its train.csv, eval.csv and episodes.csv count on: the offline
    steps, then the online ones after them (``chunkrl plot`` takes the offline steps off again to draw the online
    phase from 0). The official scripts count each phase from 0."""
    return step if phase == "offline" else offline_steps + step


EVAL_COLUMNS = ["step", "phase", "success", "return", "length", "episodes"]


def evaluation_row(phase: str, step: int, offline_steps: int, result: dict, episodes: int) -> dict:
    """One ``eval.csv`` row of an evaluation after ``step`` steps of ``phase``, at its global step."""
    return {"step": global_step(phase, step, offline_steps), "phase": phase, **result, "episodes": episodes}


PROGRESS_EVERY = 1000
"""Steps between two rows of an official run's ``train.csv`` (step, phase, the latest update's info, steps per
second): the learning suite's ``list`` reads the step and rate to say how far a running trial is, as it reads
chunkrl's own ``train.csv``; the info is what compares the two codes' training, not only their evaluations."""
PROGRESS_COLUMNS = ["step", "phase", "steps_per_second"]


def progress_columns(metrics: list[str]) -> list[str]:
    """``train.csv``'s columns for an agent whose updates report ``metrics`` (the official names, kept: their
    definitions are the official code's, e.g. its critic loss averages over the rows its mask leaves out)."""
    return [*PROGRESS_COLUMNS[:2], *metrics, *PROGRESS_COLUMNS[2:]]


def progress_row(at: int, phase: str, rate: float, metrics: list[str], info: dict | None) -> list:
    """One ``train.csv`` row: the latest update's ``info`` (blank before the first update, online while the
    policy only acts; with ``utd_ratio`` > 1 the mean over the step's updates, as the official ``batch_update``
    returns it) under ``metrics``' columns."""
    values = [f"{float(info[name]):.6g}" if info is not None else "" for name in metrics]
    return [at, phase, *values, f"{rate:.3f}"]


def update_metrics(agent, dataset, config) -> list[str]:
    """The names of the official agent's update info (losses, values, entropy, temperature, ...), found by
    tracing one update without running it; numpy's generator is put back, so the run draws the same batches."""
    import jax

    state = np.random.get_state()
    batch = dataset.sample_sequence(config["batch_size"], config["horizon_length"], config["discount"])
    np.random.set_state(state)
    _, info = jax.eval_shape(lambda b: agent.update(b), batch)
    return sorted(info)


EPISODE_COLUMNS = ["step", "phase", "return", "length", "success"]
"""An official run's ``episodes.csv``: each online training episode as it ended (the global step of its last
step, its return, length and whether it solved the task), as chunkrl's own ``episodes.csv`` has them."""


def keep_progress_through(path: Path, step: int, columns: list[str] = PROGRESS_COLUMNS) -> None:
    """Start ``train.csv`` (or ``episodes.csv``, with its ``columns``) for a run at global ``step``: the rows of
    earlier steps are kept (a resumed run), later ones and a row torn by a kill are dropped (they are logged
    again)."""
    kept = []
    if path.exists():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if None not in row.values() and (row.get("step") or "").isdigit() and int(row["step"]) <= step:
                    kept.append(row)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept)
    write_atomically(path, text.getvalue().encode())


OFFICIAL = " (official code)"
"""Appended to the agent's name in an official run's config.yaml: ``chunkrl plot`` and the learning suite's
report then draw it as a method of its own beside chunkrl's runs of the same agent."""


def cpu_model() -> str | None:
    """The CPU's model name and family (Linux), as the machines' figures are labelled."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first core's entry
    except OSError:
        return None
    family = f" (family {fields['cpu family']} model {fields['model']})" if "cpu family" in fields else ""
    return f"{fields['model name']}{family}" if "model name" in fields else None


def write_config(folder: Path, out: Path, seed: int) -> None:
    """The run's config.yaml in chunkrl's format: the chunkrl trial's, the agent named as the official code's.
    Written when the run starts (the learning suite's ``list`` reads its budget) and at every checkpoint."""
    import yaml

    config = yaml.safe_load((folder / "chunkrl_config.yaml").read_text())
    config.update(agent=config["agent"] + OFFICIAL, seed=seed, tensorboard=False)
    write_atomically(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())


def write_run_files(
    folder: Path, out: Path, seed: int, status: str, rows: list, counters: dict, wall_s: float, data: dict
) -> None:
    """config.yaml and summary.json in chunkrl's format, so ``chunkrl plot`` and ``report`` read the run; ``data``:
    ``data_record`` of the data it trains on."""
    import platform

    import jax

    write_config(folder, out, seed)
    finals = {}
    if status == "finished":  # each phase's last evaluation
        for row in rows:
            finals[f"{row['phase']}_final"] = {k: row[k] for k in ("success", "return", "step", "phase")}
    summary = {
        "status": status,
        "counters": counters,
        "evaluations": finals,
        "wall_seconds": wall_s,
        "machine": f"{cpu_model() or platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs; "
        f"jax {jax.__version__} on "
        f"{jax.devices()[0].platform}",
        "official_code": "github.com/ColinQiyangLi/qc at 48283b4 (shared/bench/peer_qc)",
        "data": data,
    }
    write_atomically(out / "summary.json", json.dumps(summary, indent=2).encode())


def official_agent(settings: dict, dataset, seed: int):
    """The official agent named by the settings, created as its scripts create it, and its config."""
    if settings["official_agent"] == "acrlpd":
        from agents.acrlpd import ACRLPDAgent as Agent
        from agents.acrlpd import get_config
    else:
        from agents.acfql import ACFQLAgent as Agent
        from agents.acfql import get_config
    config = get_config()
    for name, value in settings["official"].items():
        config[name] = tuple(value) if name.endswith("hidden_dims") else value
    np.random.seed(seed)  # the official sampler draws from numpy's global generator
    example = dataset.sample(())
    return Agent.create(seed, example["observations"], example["actions"], config), config, example


def online_batch(dataset, replay, config, settings: dict) -> dict:
    """One online update's batches [utd, B, ...]: the official ``main_online.py``'s half dataset, half replay
    (symmetric) or ``main.py``'s uniform draw from the dataset with the online steps appended (shared)."""
    utd, size, h, discount = settings["utd_ratio"], config["batch_size"], config["horizon_length"], config["discount"]

    def per_update(source, rows: int) -> dict:
        batch = source.sample_sequence(rows * utd, sequence_length=h, discount=discount)
        return {k: v.reshape((utd, rows) + v.shape[1:]) for k, v in batch.items()}

    if settings["replay"] == "shared":
        return per_update(replay, size)
    offline, online = per_update(dataset, size // 2), per_update(replay, size // 2)
    return {k: np.concatenate([offline[k], online[k]], axis=1) for k in offline}


def train(folder: Path, seed: int, out: Path) -> None:
    """Train the official agent on ``folder``'s data and settings, offline then online; write ``out/eval.csv``.
    A checkpoint is written at every evaluation and on SIGTERM or Ctrl-C; the same command resumes it."""
    import flax.serialization
    import jax
    import ogbench
    from utils.datasets import Dataset, ReplayBuffer

    settings = json.loads((folder / "settings.json").read_text())
    settings.setdefault("official_agent", "acfql")  # folders exported before the RLPD family was covered
    if (out / "summary.json").exists() and json.loads((out / "summary.json").read_text())["status"] == "finished":
        raise SystemExit(f"{out} holds a finished run: choose another --out (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    with np.load(folder / "data.npz") as stored:
        arrays = dict(stored)
    data = data_record(arrays)
    dataset = Dataset.create(**arrays)
    agent, config, example = official_agent(settings, dataset, seed)
    offline_steps, online_steps = settings.get("offline_steps") or 0, settings.get("online_steps") or 0
    key, progress, rows, wall_s, resumed = jax.random.PRNGKey(seed + 1), {"phase": "offline", "step": 0}, [], 0.0, None
    if (out / "state.json").exists():
        state = json.loads((out / "state.json").read_text())
        agent = flax.serialization.from_bytes(agent, (out / "agent.msgpack").read_bytes())
        name, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, gauss))
        key, rows, wall_s = np.asarray(state["key"], np.uint32), state["rows"], state["wall_s"]
        progress = {"phase": state.get("phase", "offline"), "step": state["step"]}
        resumed = dict(np.load(out / "replay.npz")) if progress["phase"] == "online" else None
        print(f"resuming {out} at {progress['phase']} step {progress['step']}", flush=True)
    stop = {"signal": None}

    def request_stop(signum, frame):
        stop["signal"] = signum

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    started = time.perf_counter() - wall_s
    replay = None  # online: (the buffer, where its online part starts)

    write_config(folder, out, seed)
    metrics, latest = update_metrics(agent, dataset, config), {"info": None}
    columns = progress_columns(metrics)
    resumed_at = global_step(progress["phase"], progress["step"], offline_steps)
    keep_progress_through(out / "train.csv", resumed_at, columns)
    keep_progress_through(out / "episodes.csv", resumed_at, EPISODE_COLUMNS)
    clock = {"time": time.perf_counter(), "step": resumed_at}

    def log_progress(phase: str, step: int) -> None:
        if step % PROGRESS_EVERY:
            return
        now, at = time.perf_counter(), global_step(phase, step, offline_steps)
        rate = (at - clock["step"]) / max(now - clock["time"], 1e-9)  # an evaluation in the interval lowers it
        with open(out / "train.csv", "a", newline="") as f:
            csv.writer(f).writerow(progress_row(at, phase, rate, metrics, latest["info"]))
        clock.update(time=now, step=at)

    def record(phase: str, step: int) -> None:
        nonlocal key
        result = evaluate(agent, settings, key, seed)
        key = result.pop("key")
        rows.append(evaluation_row(phase, step, offline_steps, result, settings["eval_episodes"]))
        with open(out / "eval.csv", "w", newline="") as f:  # rewritten whole after every evaluation
            writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        minutes = (time.perf_counter() - started) / 60
        print(f"{phase} step {step}: success {result['success']:.2f} ({minutes:.1f} min)", flush=True)
        checkpoint(phase, step, "running")

    def checkpoint(phase: str, step: int, status: str) -> None:
        save_state(out, agent, {"phase": phase, "step": step}, key, rows, time.perf_counter() - started, replay)
        counters = {"offline_step": step if phase == "offline" else offline_steps}
        counters |= {"online_step": step} if phase == "online" else {}
        write_run_files(folder, out, seed, status, rows, counters, time.perf_counter() - started, data)

    def stop_if_asked(phase: str, step: int) -> None:
        if stop["signal"] is not None:
            checkpoint(phase, step, "interrupted")
            print(f"stopped at {phase} step {step}; the same command resumes", flush=True)
            raise SystemExit(128 + stop["signal"])

    interval = settings["eval_interval"] or max(offline_steps, online_steps)
    first = progress["step"] + 1 if progress["phase"] == "offline" else offline_steps + 1
    for step in range(first, offline_steps + 1):
        batch = dataset.sample_sequence(config["batch_size"], config["horizon_length"], config["discount"])
        agent, latest["info"] = agent.update(batch)
        if step % interval == 0 or step == offline_steps:
            record("offline", step)
        log_progress("offline", step)
        stop_if_asked("offline", step)
    if online_steps:
        # shared: the online steps follow the dataset in one buffer; symmetric: a buffer of their own. One slot
        # more than it will hold, as the official buffers (1M): the official pointer wraps when full
        shared = settings["replay"] == "shared"
        start = dataset.size if shared else 0
        if shared:
            buffer = ReplayBuffer.create_from_initial_dataset(dict(dataset), size=start + online_steps + 1)
        else:
            buffer = ReplayBuffer.create(example, size=online_steps + 1)
        replay, first = (buffer, start), 1
        if resumed is not None:
            count = len(resumed["observations"])
            for k, v in resumed.items():
                buffer[k][start : start + count] = v
            buffer.size = buffer.pointer = start + count
            first = progress["step"] + 1
        env = ogbench.make_env_and_datasets(settings["env"], env_only=True)
        # the official seeding: one reset with the seed, the episodes after it from the environment's generator;
        # a resumed run's first episode is seeded from its step instead
        observation, _ = env.reset(seed=seed if first == 1 else seed * 100_003 + first)
        online_key = jax.random.fold_in(jax.random.PRNGKey(seed), first)
        action_dim, queue, episode_steps = example["actions"].shape[-1], [], 0
        episode = {"return": 0.0, "success": 0.0}
        max_steps = settings["max_episode_steps"]
        for step in range(first, online_steps + 1):
            online_key, sub = jax.random.split(online_key)
            if not queue:
                if settings["warmup"] == "random" and step <= settings["start_training"]:
                    chunk = jax.random.uniform(sub, shape=(action_dim,), minval=-1, maxval=1)
                else:
                    chunk = agent.sample_actions(observations=observation, rng=sub)
                queue = list(np.array(chunk).reshape(-1, action_dim))
            action = queue.pop(0)
            next_observation, reward, terminated, truncated, info = env.step(action)
            episode_steps += 1
            episode["success"] = float(info.get("success", 0.0))  # whether it ends in success, as chunkrl counts it
            truncated = truncated or (max_steps is not None and episode_steps >= max_steps)
            if settings["sparse"]:
                reward = (reward != 0.0) * -1.0
            done = terminated or truncated
            transition = {
                "observations": observation,
                "actions": action,
                "rewards": reward,
                "terminals": float(done),
                "masks": 1.0 - terminated,
                "next_observations": next_observation,
            }
            buffer.add_transition(transition)
            episode["return"] += float(reward)
            if done:
                with open(out / "episodes.csv", "a", newline="") as f:
                    at = global_step("online", step, offline_steps)
                    row = [at, "online", episode["return"], episode_steps, episode["success"]]
                    csv.writer(f).writerow(row)
                (observation, _), queue, episode_steps = env.reset(), [], 0
                episode = {"return": 0.0, "success": 0.0}
            else:
                observation = next_observation
            if step >= settings["start_training"]:
                agent, latest["info"] = agent.batch_update(online_batch(dataset, buffer, config, settings))
            if step % interval == 0 or step == online_steps:
                record("online", step)
            log_progress("online", step)
            stop_if_asked("online", step)
        env.close()
    last = ("online", online_steps) if online_steps else ("offline", offline_steps)
    checkpoint(*last, "finished")


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
    training.add_argument(
        "--cpus",
        type=cpu_list,
        help="the CPUs the run may use, e.g. 0 or 0,1 (default: all this process may use). JAX 0.6 spreads an "
        "update over threads on every CPU it may use, whatever XLA_FLAGS say: this is how to hold it to one",
    )
    args = parser.parse_args()
    if args.command == "export":
        export(args.config, args.out)
    else:
        if args.cpus is not None:
            os.sched_setaffinity(0, args.cpus)  # before JAX starts: its thread pool is sized from the affinity
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        train(args.folder, args.seed, args.out)


def cpu_list(text: str) -> set[int]:
    """``--cpus``: comma-separated CPU numbers, each one this process may use."""
    try:
        cpus = {int(part) for part in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers such as 0 or 0,1, got {text!r}") from None
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise argparse.ArgumentTypeError(
            f"CPU {sorted(cpus - allowed)} is not one this process may use: {sorted(allowed)}"
        )
    return cpus


if __name__ == "__main__":
    main()
