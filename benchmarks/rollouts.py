"""ALOHA rollout throughput: environment steps per second in state and pixel mode, and chunk-PPO
collection (token sampling + vectorised environments) per second.

State mode never renders; pixel mode renders the ``top`` camera at 480 x 640 (gym-aloha renders three
cameras every step: ``--cameras top angle front_close`` measures that). The policy holds the start pose
(the simulator's cost alone); the collection figure runs ``chunk-ppo``'s own ``collect`` + vector step
with the token actor from the action bounds (no BPE, ``h x A`` tokens per chunk, the longest case).
Prints absolute figures with the CPU model.

    python benchmarks/rollouts.py [--steps 400] [--pixel-steps 40] [--num-envs 4] [--horizon 5] [--rounds 2]
                                  [--threads N] [--demonstrations NPZ]

``--demonstrations`` (a scripted dataset, e.g. ``chunkrl data generate aloha-transfer-cube-scripted --out x.npz``)
fits the tokenizer as the ALOHA presets do (the demonstrations' full range, BPE) instead: fewer tokens per chunk.

Collection is measured with the token actor decoding from the whole prefix for every token and with its
cached keys and values, alternately, ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch

from chunkrl.agents.ppo.config import ChunkPPOConfig
from chunkrl.agents.ppo.ppo import ChunkPPOAgent
from chunkrl.config import TrainConfig, resolve_method
from chunkrl.envs.aloha import AlohaEnv
from chunkrl.nets.tokenizer import ChunkTokenizer, TokenizerSettings
from chunkrl.train.device import machine_description
from chunkrl.train.on_policy import make_vector_env


def env_steps_per_second(env: AlohaEnv, steps: int) -> float:
    observation, _ = env.reset(seed=0)
    hold = env.raw_observation["qpos"].copy()
    started = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(hold)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def demonstration_tokenizer(path: str, horizon: int) -> ChunkTokenizer:
    """The tokenizer the ALOHA presets fit: the demonstrations' full range, BPE over their whole chunks."""
    data = np.load(path)
    actions, ends = data["actions"], np.flatnonzero(data["ends"])
    starts = np.r_[0, ends[:-1] + 1]
    chunks = [actions[t : t + horizon] for s, e in zip(starts, ends, strict=True) for t in range(s, e + 2 - horizon)]
    return ChunkTokenizer.fit(np.stack(chunks), TokenizerSettings(low_quantile=0.0, high_quantile=1.0))


def collection_steps_per_second(
    num_envs: int, horizon: int, decisions: int, cache: bool = True, tokenizer: ChunkTokenizer | None = None
) -> float:
    config = resolve_method(
        TrainConfig(
            agent="chunk-ppo", env="aloha-transfer-cube", horizon=horizon, ppo=ChunkPPOConfig(num_envs=num_envs)
        )
    )
    envs = make_vector_env(config, seed=0)
    space = envs.single_action_space
    tokenizer = tokenizer or ChunkTokenizer.for_bounds(horizon, space.low[0], space.high[0])
    agent = ChunkPPOAgent(
        envs.single_observation_space.shape[0], space.shape[1], horizon, config.ppo, tokenizer=tokenizer
    )
    agent.actor_backbone.sample = functools.partial(agent.actor_backbone.sample, cache=cache)
    observations, _ = envs.reset(seed=0)
    executed = 0
    started = time.perf_counter()
    for _ in range(decisions):
        _, _, _, chunks = agent.collect(torch.as_tensor(observations, dtype=torch.float32))
        observations, _, _, _, info = envs.step(chunks)
        executed += int(np.sum(info.get("tau", 0))) + int(np.sum(info.get("final_info", {}).get("tau", 0)))
    return executed / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="state-mode steps timed")
    parser.add_argument("--pixel-steps", type=int, default=40, help="pixel-mode steps timed")
    parser.add_argument("--cameras", nargs="+", default=["top"])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=20, help="vector steps of chunk-PPO collection timed")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of full-prefix and cached decoding")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--demonstrations", default=None, help="a scripted dataset (npz) to fit the tokenizer on")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_description(torch.device("cpu")))
    state = env_steps_per_second(AlohaEnv("aloha-transfer-cube"), args.steps)
    print(f"state mode:  {state:8.1f} env steps/s (one environment, no rendering)")
    pixels = env_steps_per_second(
        AlohaEnv("aloha-transfer-cube", "pixels", cameras=tuple(args.cameras)), args.pixel_steps
    )
    print(f"pixel mode:  {pixels:8.1f} env steps/s (one environment, cameras {' '.join(args.cameras)} at 480x640)")
    print(f"ratio state / pixels: {state / pixels:.0f}x")
    tokenizer, tokens = None, f"without BPE: {args.horizon * 14} tokens per chunk"
    if args.demonstrations:
        tokenizer = demonstration_tokenizer(args.demonstrations, args.horizon)
        tokens = f"BPE fitted on the demonstrations: at most {tokenizer.max_tokens} tokens per chunk"
    for round_ in range(args.rounds):  # alternately, so that both sides see the same machine
        for cache, how in ((False, "full prefix per token"), (True, "cached keys and values")):
            collected = collection_steps_per_second(args.num_envs, args.horizon, args.decisions, cache, tokenizer)
            print(
                f"round {round_ + 1} chunk-PPO collection, {how}: {collected:8.1f} env steps/s ({args.num_envs} envs, "
                f"h {args.horizon}, token actor {tokens}; {collected / state:.2f}x the bare simulator's state rate)"
            )


if __name__ == "__main__":
    main()
