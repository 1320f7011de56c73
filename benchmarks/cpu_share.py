"""One CPU against one CPU: the official JAX code's update and chunkrl's, per second and per CPU-second.

JAX 0.6 does not keep to one thread when ``XLA_FLAGS`` ask it to (``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``): its runtime spreads an update over threads on every CPU the process may use.
A "one thread" official run therefore uses more than one CPU where it can, and its rate is not comparable with a
chunkrl run's one torch thread. This benchmark times the same update three ways, alternately, in fresh processes:

- ``official``: the official agent (``ACFQLAgent``, built as ``peer_learning.py`` builds it) with those flags;
- ``official pinned``: the same, held to one CPU (``sched_setaffinity`` before JAX starts, as
  ``peer_learning.py train --cpus`` and the learning suite's official runs do);
- ``chunkrl``: chunkrl's agent (``benchmarks/harness.py``) with one torch thread.

Each prints updates per wall-clock second and per CPU-second of the process (so a process on two CPUs shows
it). One fixed batch, puzzle-3x3 dimensions (observation 55, action 5), h = 5, batch 256, 3x256 networks, 2
critics. Nothing else may run on the machine meanwhile.

    python benchmarks/cpu_share.py [--agents bfn-n qc-fql] [--rounds 3] [--updates 300]
                                   [--peer-python /tmp/peer-venv/bin/python] [--peer-dir ../shared/bench/peer_qc]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from learning_suite import XLA_ONE_THREAD

from chunkrl.train.device import cpu_description

HERE = Path(__file__).resolve().parent
AGENTS = {  # chunkrl's method: the official acfql settings of the same method (chunkrl samples as many candidates)
    "bfn-n": {"actor_type": "best-of-n", "action_chunking": False, "actor_num_samples": 4},
    "qc-fql": {"actor_type": "distill-ddpg", "action_chunking": True},
}

OFFICIAL = """
import json, os, sys, time
settings, updates, pin = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "pin"
if pin:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before JAX starts
import jax, jax.numpy as jnp, numpy as np
from agents.acfql import ACFQLAgent, get_config
B, H, O, A = 256, 5, 55, 5
config = get_config()
config.update(actor_hidden_dims=(256,) * 3, value_hidden_dims=(256,) * 3, horizon_length=H, **settings)
agent = ACFQLAgent.create(0, np.zeros((O,), np.float32), np.zeros((A,), np.float32), dict(config))
r = np.random.default_rng(0)
batch = dict(observations=r.standard_normal((B, O)), actions=r.uniform(-1, 1, (B, H, A)),
             next_observations=r.standard_normal((B, H, O)), rewards=np.zeros((B, H)), masks=np.ones((B, H)),
             valid=np.ones((B, H)))
batch = {k: jnp.asarray(v, jnp.float32) for k, v in batch.items()}
for _ in range(5):
    agent, info = agent.update(batch)
jax.block_until_ready(info)
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(updates):
    agent, info = agent.update(batch)
    jax.block_until_ready(info)  # one update at a time, as a training loop reading its info
print(json.dumps([updates / (time.perf_counter() - wall), updates / (time.process_time() - cpu)]))
"""


def chunkrl_rates(method: str, updates: int) -> tuple[float, float]:
    """Updates per second and per CPU-second of chunkrl's update of ``method`` (run in a fresh process)."""
    import time

    import torch
    from harness import BATCH, make_agent, synthetic_store

    from chunkrl.data.chunks import ChunkSampler

    torch.set_num_threads(1)
    num_samples = AGENTS[method].get("actor_num_samples")
    changes = {"num_samples": num_samples} if num_samples else {}
    agent, spec = make_agent(method, (256,) * 3, torch.device("cpu"), "fp32", **changes)
    batch = ChunkSampler(synthetic_store(), spec, seed=0).sample(BATCH).to_torch(torch.device("cpu"))
    for _ in range(5):
        agent.update(batch)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(updates):
        agent.update(batch)
    return updates / (time.perf_counter() - wall), updates / (time.process_time() - cpu)


def measure(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["bfn-n", "qc-fql"], choices=sorted(AGENTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--peer-python", default=os.environ.get("CHUNKRL_PEER_PYTHON", "/tmp/peer-venv/bin/python"))
    parser.add_argument("--peer-dir", type=Path, default=HERE.parent.parent / "shared" / "bench" / "peer_qc")
    parser.add_argument("--chunkrl-child", help=argparse.SUPPRESS)  # one chunkrl measurement, in a fresh process
    args = parser.parse_args()
    if args.chunkrl_child:
        print(json.dumps(chunkrl_rates(args.chunkrl_child, args.updates)))
        return
    if not Path(args.peer_python).exists() or not (args.peer_dir / "src" / "agents").is_dir():
        raise SystemExit(
            f"The official code needs {args.peer_dir / 'src'} and its venv's python {args.peer_python}; set them "
            "with --peer-dir / --peer-python (set-up: shared/bench/peer_qc/README.md)."
        )
    print(cpu_description(), flush=True)
    peer_env = {**os.environ, "PYTHONPATH": str(args.peer_dir / "src"), "JAX_PLATFORMS": "cpu"}
    peer_env["XLA_FLAGS"] = XLA_ONE_THREAD
    ours_env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ours_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    print("| round | agent | official: updates/s | per CPU-s | official pinned: updates/s | chunkrl: updates/s |")
    print("|---|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        for method in args.agents:
            official = [args.peer_python, "-c", OFFICIAL, json.dumps(AGENTS[method]), str(args.updates)]
            free = measure([*official, "free"], peer_env, args.peer_dir)
            pinned = measure([*official, "pin"], peer_env, args.peer_dir)
            ours = measure(
                [sys.executable, __file__, "--chunkrl-child", method, "--updates", str(args.updates)], ours_env, HERE
            )
            print(
                f"| {round_} | {method} | {free[0]:.1f} | {free[1]:.1f} | {pinned[0]:.1f} (per CPU-s {pinned[1]:.1f}) "
                f"| {ours[0]:.1f} (per CPU-s {ours[1]:.1f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
