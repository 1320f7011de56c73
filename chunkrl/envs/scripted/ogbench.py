"""Generate OGBench manipulation datasets locally with OGBench's own scripted oracles.

Reproduces the official OGBench data-collection procedure (``generate_manipspace.py``): the
environment in ``data_collection`` mode, the non-Markovian plan oracles for ``play`` datasets (action
noise 0.1, smoothing 0.5), the Markov oracles with per-episode Gaussian noise and random actions for
``noisy`` ones, the per-domain cube-stacking probabilities, episodes of 1,001 steps, the scene health
check, and a validation file with 10% extra episodes, written in OGBench's npz layout so that
generated and downloaded files are interchangeable.

Each episode is seeded from ``(seed, episode index, attempt)``, so a dataset is identical whatever
the number of worker processes.

MuJoCo's warnings during collection (the scene's contacts make its constraint solver warn "Linesearch objective is
not convex" a few hundred times over 1,000 episodes; dm_control logs each one through absl) are counted by message
and said once at the end instead of flooding the progress lines.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chunkrl.envs.ogbench import check_dataset_name, validation_path

MAX_HEALTH_RETRIES = 100


@dataclass(frozen=True)
class GenerationSettings:
    """OGBench's official collection settings for one dataset."""

    dataset: str
    """Dataset name, e.g. ``scene-play-v0``."""
    episodes: int = 1000
    """Training episodes; the validation file gets ``episodes // 10`` more (at least 1)."""
    max_episode_steps: int = 1001
    """Stored steps per episode (OGBench: 1,001, giving 1,000 transitions)."""
    noise: float = 0.1
    """Action noise of the plan oracles (play) or the noise scale of the Markov oracles (noisy)."""
    noise_smoothing: float = 0.5
    """Temporal smoothing of the plan oracles' noise."""
    min_norm: float = 0.4
    """Minimum action norm of the Markov oracles."""
    p_random_action: float = 0.0
    """Probability of a uniformly random action (noisy datasets)."""
    seed: int = 0
    """Base seed of every episode."""

    @property
    def env_id(self) -> str:
        """The goal-conditioned environment id, e.g. ``scene-v0``."""
        parts = self.dataset.split("-")
        return "-".join(parts[:-2] + parts[-1:])

    @property
    def dataset_type(self) -> str:
        return self.dataset.split("-")[-2]

    @property
    def validation_episodes(self) -> int:
        return max(1, self.episodes // 10)


def official_settings(dataset: str, episodes: int | None = None, seed: int = 0) -> GenerationSettings:
    """OGBench's settings for ``dataset``: episode counts per domain and the noisy variants' noise."""
    check_dataset_name(dataset)
    default_episodes = 1000
    if dataset.startswith("cube-triple"):
        default_episodes = 3000
    elif dataset.startswith("cube-quadruple"):
        default_episodes = 5000
    p_random = 0.0
    if dataset.split("-")[-2] == "noisy":
        p_random = 0.2 if dataset.startswith("puzzle") else 0.1
    return GenerationSettings(
        dataset=dataset,
        episodes=default_episodes if episodes is None else episodes,
        p_random_action=p_random,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _make_oracles(env, settings: GenerationSettings) -> dict:
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    name, markov = settings.env_id, settings.dataset_type == "noisy"
    plan = {"noise": settings.noise, "noise_smoothing": settings.noise_smoothing}
    norm = {"min_norm": settings.min_norm}
    if name.startswith("cube"):
        return {"cube": CubeMarkovOracle(env=env, **norm) if markov else CubePlanOracle(env=env, **plan)}
    if name.startswith("scene"):
        if markov:
            return {
                "cube": CubeMarkovOracle(env=env, max_step=100, **norm),
                "button": ButtonMarkovOracle(env=env, **norm),
                "drawer": DrawerMarkovOracle(env=env, **norm),
                "window": WindowMarkovOracle(env=env, **norm),
            }
        return {
            "cube": CubePlanOracle(env=env, **plan),
            "button": ButtonPlanOracle(env=env, **plan),
            "drawer": DrawerPlanOracle(env=env, **plan),
            "window": WindowPlanOracle(env=env, **plan),
        }
    if markov:
        return {"button": ButtonMarkovOracle(env=env, gripper_always_closed=True, **norm)}
    return {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **plan)}


def _init_worker(settings: GenerationSettings) -> None:
    warnings.filterwarnings("ignore", message=".*precision lowered.*")  # gymnasium notices about OGBench's spaces
    import gymnasium
    import mujoco
    import ogbench.manipspace  # noqa: F401  (registers the environments)

    env = gymnasium.make(
        settings.env_id,
        terminate_at_goal=False,
        mode="data_collection",
        max_episode_steps=settings.max_episode_steps,
    )
    oracles = _make_oracles(env, settings)
    counts: Counter[str] = Counter()
    previous = mujoco.get_mju_user_warning()  # dm_control's, which logs each warning
    mujoco.set_mju_user_warning(lambda message: counts.update([message]))
    restore = functools.partial(mujoco.set_mju_user_warning, previous)
    _WORKER.update(settings=settings, env=env, oracles=oracles, warnings=counts, restore=restore)


def _stack_probability(env_id: str) -> float:
    """Per-episode probability of stacking cubes, as OGBench samples it."""
    ranges = {"single": (0.0, 0.0), "double": (0.0, 0.25), "triple": (0.05, 0.35), "quadruple": (0.1, 0.5)}
    for key, (low, high) in ranges.items():
        if key in env_id:
            return float(np.random.uniform(low, high))
    return 0.5


def _scene_is_healthy(qpos: np.ndarray) -> bool:
    """OGBench's check that the cube stays visible (unless it is in the drawer)."""
    block = qpos[:, 14:17]
    too_far_right = (block[:, 1] >= 0.29).any()
    lost_left = ((block[:, 1] <= -0.3) & ((block[:, 2] < 0.06) | (block[:, 2] > 0.08))).any()
    return not (too_far_right or lost_left)


def _run_episode(episode_index: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """One healthy episode's arrays, and MuJoCo's warnings while collecting it (its unhealthy attempts included)."""
    settings: GenerationSettings = _WORKER["settings"]
    env, oracles = _WORKER["env"], _WORKER["oracles"]
    _WORKER["warnings"].clear()
    markov = settings.dataset_type == "noisy"
    for attempt in range(MAX_HEALTH_RETRIES):
        # three streams per attempt; the first two are those of the two-stream version (a prefix), so play data
        # are what they were
        seeds = np.random.SeedSequence([settings.seed, episode_index, attempt]).generate_state(3)
        np.random.seed(int(seeds[0]))  # OGBench's oracles draw their noise from numpy's global generator
        ob, info = env.reset(seed=int(seeds[1]))
        # the noisy datasets' random actions: OGBench builds a new, unseeded action space at every access, so hold
        # one and seed it (reset does not)
        random_actions = env.action_space
        random_actions.seed(int(seeds[2]))
        p_stack = _stack_probability(settings.env_id)
        xi = np.random.uniform(0, settings.noise) if markov else 0.0
        agent = oracles[info["privileged/target_task"]]
        agent.reset(ob, info)
        record: dict[str, list] = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": []}
        has_buttons = hasattr(env.unwrapped, "_cur_button_states")
        if has_buttons:
            record["button_states"] = []
        done = False
        while not done:
            if np.random.rand() < settings.p_random_action:
                action = random_actions.sample()
            else:
                action = np.array(agent.select_action(ob, info))
                if markov:
                    action = action + np.random.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
            action = np.clip(action, -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if agent.done:
                agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
                agent = oracles[agent_info["privileged/target_task"]]
                agent.reset(agent_ob, agent_info)
            record["observations"].append(ob)
            record["actions"].append(action)
            record["terminals"].append(done)
            record["qpos"].append(info["prev_qpos"])
            record["qvel"].append(info["prev_qvel"])
            if has_buttons:
                record["button_states"].append(info["prev_button_states"])
            ob = next_ob
        arrays = _to_arrays(record)
        if not settings.env_id.startswith("scene") or _scene_is_healthy(arrays["qpos"]):
            return arrays, dict(_WORKER["warnings"])
    raise RuntimeError(f"episode {episode_index}: no healthy scene episode after {MAX_HEALTH_RETRIES} attempts")


def _to_arrays(record: dict[str, list]) -> dict[str, np.ndarray]:
    dtypes = {"terminals": bool, "button_states": np.int64}
    return {k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in record.items()}


# ---------------------------------------------------------------------------------------- driver
def generate_dataset(
    settings: GenerationSettings,
    out_path: Path,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> tuple[Path, Path]:
    """Collect ``settings.episodes`` (+10%) episodes and write the training and validation files.

    Files are written under temporary names and renamed into place only once complete, so no
    half-written file ever carries the final name. Existing files are never replaced unless
    ``overwrite`` is set.

    Args:
        settings: what to collect.
        out_path: the training file (``.npz``); the validation file goes beside it (``-val.npz``).
        workers: worker processes (each runs whole episodes).
        overwrite: replace existing files.
        progress: called with (episodes done, episodes total) after each episode.
        notice: called with a summary of MuJoCo's warnings during collection, if there were any (without it, the
            summary is a Python warning).
    """
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"the output file must end in .npz, got {out_path}")
    val_path = validation_path(out_path)
    existing = [p for p in (out_path, val_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists and would be overwritten. Pass --overwrite to replace it, "
            "or choose another --out path."
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out_path.parent, os.W_OK):  # find out now, not after generating every episode
        raise PermissionError(f"cannot write to {out_path.parent}: choose another --out or --cache-dir")
    total = settings.episodes + settings.validation_episodes
    collected = _collect(settings, total, workers, progress)
    episodes = [arrays for arrays, _ in collected]
    summary = _warning_summary([counts for _, counts in collected])
    if summary:
        (notice or (lambda text: warnings.warn(text, RuntimeWarning, stacklevel=3)))(summary)
    train = _concat(episodes[: settings.episodes])
    val = _concat(episodes[settings.episodes :])
    _atomic_savez(val_path, val)
    _atomic_savez(out_path, train)
    return out_path, val_path


def _collect(settings, total, workers, progress) -> list[tuple[dict[str, np.ndarray], dict[str, int]]]:
    results: list[tuple[dict[str, np.ndarray], dict[str, int]]] = []
    if workers <= 1:
        _init_worker(settings)
        try:
            for i in range(total):
                results.append(_run_episode(i))
                if progress:
                    progress(i + 1, total)
        finally:
            _WORKER.pop("restore")()  # this process's MuJoCo warnings go where they went before
            _WORKER.pop("env").close()
        return results
    context = mp.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        for i, episode in enumerate(pool.imap(_run_episode, range(total))):
            results.append(episode)
            if progress:
                progress(i + 1, total)
    return results


def _warning_summary(per_episode: list[dict[str, int]]) -> str:
    """``MuJoCo warned 12 times in 3 of 1,100 episodes: 'Linesearch objective is not convex' (12)``, or ``""``."""
    counts: Counter[str] = Counter()
    for episode in per_episode:
        counts.update(episode)
    if not counts:
        return ""
    episodes = sum(1 for episode in per_episode if episode)
    common = counts.most_common()
    messages = "; ".join(f"'{message.strip()}' ({n:,})" for message, n in common[:3])
    if len(common) > 3:
        messages += f"; {len(common) - 3} other messages ({sum(n for _, n in common[3:]):,})"
    times = f"{counts.total():,} time{'s' if counts.total() != 1 else ''}"
    return (
        f"MuJoCo warned {times} in {episodes:,} of {len(per_episode):,} episodes: {messages}. "
        "The episodes are kept as OGBench's own generator would keep them (it runs the same simulator)."
    )


def _concat(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    temporary = path.with_name(f".{path.stem}.partial-{os.getpid()}.npz")
    try:
        np.savez_compressed(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
