"""Scripted ALOHA demonstrations for transfer-cube, saved as a chunkrl dataset.

The script moves the two grippers through end-effector waypoints in the mocap-driven version of the
task: the right arm approaches the cube from above, descends, grasps, lifts it to a meeting point in
the middle of the table; the left arm comes to the meeting point from the other side, closes on the
cube, the right gripper opens, and both arms withdraw. Positions are interpolated linearly between
waypoints and orientations spherically. Each step's joint positions (and the commanded gripper
openings) are recorded, then replayed as joint targets in the joint-space task with the same cube
pose; only replays that reach the success reward are kept. The dataset holds those replays: state
observations, joint actions, the staged reward, terminal on success.

On MuJoCo 3.x the replay succeeds less often than on the 2.x versions the ACT scripts were written for
(contacts and the mocap weld behave differently), so generation counts attempts and keeps going until
the requested number of successful episodes is reached; the success rate is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from chunkrl.errors import DatasetError

DATASETS = {"aloha-transfer-cube-scripted": "aloha-transfer-cube"}
MEET = np.array([0.0, 0.5, 0.25])
"""Where the two grippers meet to hand the cube over (table frame, metres)."""
GRASP_HEIGHT = -0.015
"""Height of the right gripper's grasp above the cube's initial centre (metres)."""
TILT = -60.0
"""Pitch of the right gripper towards the cube when grasping (degrees)."""


@dataclass
class Waypoint:
    step: int
    position: np.ndarray
    rotation: Rotation
    gripper: float  # 0 closed, 1 open


def _interpolate(waypoints: list[Waypoint], steps: int) -> np.ndarray:
    """[steps, 8] mocap targets (xyz, quaternion w-first, gripper) through the waypoints."""
    times = np.array([w.step for w in waypoints], dtype=np.float64)
    t = np.clip(np.arange(1, steps + 1, dtype=np.float64), times[0], times[-1])
    positions = np.stack([np.interp(t, times, [w.position[i] for w in waypoints]) for i in range(3)], axis=1)
    rotations = Slerp(times, Rotation.concatenate([w.rotation for w in waypoints]))(t)
    quaternions = rotations.as_quat()[:, [3, 0, 1, 2]]  # scipy is x, y, z, w; MuJoCo is w, x, y, z
    grippers = np.interp(t, times, [w.gripper for w in waypoints])
    return np.concatenate([positions, quaternions, grippers[:, None]], axis=1)


def transfer_cube_plan(
    cube: np.ndarray,
    left_start: np.ndarray,
    right_start: np.ndarray,
    steps: int,
    grasp_height: float = GRASP_HEIGHT,
    tilt: float = TILT,
) -> np.ndarray:
    """End-effector actions [steps, 16] (left then right: xyz, quaternion, gripper) for a cube at ``cube``."""
    left_rest = Rotation.from_quat(left_start[[4, 5, 6, 3]])
    right_rest = Rotation.from_quat(right_start[[4, 5, 6, 3]])
    pick = right_rest * Rotation.from_euler("y", tilt, degrees=True)  # tilt down towards the cube
    receive = Rotation.from_euler("x", 90, degrees=True)  # left gripper turned to take the cube from the side
    left = [
        Waypoint(0, left_start[:3], left_rest, 0.0),
        Waypoint(100, MEET + [-0.1, 0.0, -0.02], receive, 1.0),  # wait beside the meeting point, open
        Waypoint(260, MEET + [0.02, 0.0, -0.02], receive, 1.0),  # move in around the cube
        Waypoint(310, MEET + [0.02, 0.0, -0.02], receive, 0.0),  # close on it
        Waypoint(360, MEET + [-0.1, 0.0, -0.02], receive, 0.0),  # take it away
        Waypoint(steps, MEET + [-0.1, 0.0, -0.02], receive, 0.0),
    ]
    right = [
        Waypoint(0, right_start[:3], right_rest, 0.0),
        Waypoint(90, cube + [0.0, 0.0, 0.08], pick, 1.0),  # above the cube, open
        Waypoint(130, cube + [0.0, 0.0, grasp_height], pick, 1.0),  # down around it
        Waypoint(170, cube + [0.0, 0.0, grasp_height], pick, 0.0),  # grasp
        Waypoint(200, MEET + [0.05, 0.0, 0.0], pick, 0.0),  # lift towards the meeting point
        Waypoint(220, MEET, pick, 0.0),
        Waypoint(310, MEET, pick, 1.0),  # let go once the left gripper holds it
        Waypoint(360, MEET + [0.1, 0.0, 0.0], pick, 1.0),  # withdraw
        Waypoint(steps, MEET + [0.1, 0.0, 0.0], pick, 1.0),
    ]
    return np.concatenate([_interpolate(left, steps), _interpolate(right, steps)], axis=1)


def scripted_joint_trajectory(ee_env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the script in the end-effector task; (joint targets [steps, 14], cube pose)."""
    from gym_aloha.constants import normalize_puppet_gripper_position

    ee_env.reset(seed=seed)
    raw = ee_env.raw_observation
    cube = raw["env_state"][:3].copy()
    poses = ee_env.unwrapped._task.object_poses.copy()
    plan = transfer_cube_plan(cube, raw["mocap_pose_left"], raw["mocap_pose_right"], steps)
    targets = np.empty((steps, 14))
    for t in range(steps):
        ee_env.step(plan[t])
        raw = ee_env.raw_observation
        targets[t] = raw["qpos"]
        grippers = normalize_puppet_gripper_position(raw["gripper_ctrl"][[0, 2]])
        targets[t, [6, 13]] = grippers  # the commanded opening, not the fingers' lagging position
    return targets, poses


def replay(env, targets: np.ndarray, poses: np.ndarray) -> dict[str, np.ndarray] | None:
    """Replay joint targets in the joint-space task; the episode's steps if it succeeded, else None."""
    observation, _ = env.reset(options={"object_poses": poses})
    record = {k: [] for k in ("observations", "actions", "rewards", "terminals", "next_observations")}
    for action in targets:
        next_observation, reward, terminated, truncated, info = env.step(action)
        for key, value in zip(record, (observation, action, reward, terminated, next_observation), strict=True):
            record[key].append(value)
        observation = next_observation
        if terminated or truncated:
            break
    if not info["success"]:
        return None
    arrays = {k: np.asarray(v, dtype=bool if k == "terminals" else np.float32) for k, v in record.items()}
    arrays["ends"] = np.zeros(len(arrays["rewards"]), dtype=bool)
    arrays["ends"][-1] = True
    return arrays


def generate_scripted(
    dataset: str,
    out: Path,
    episodes: int,
    seed: int = 0,
    max_attempts: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Generate ``episodes`` successful scripted episodes into ``out`` (npz); returns the counts.

    ``progress(successes, attempts)`` is called after every attempt. Gives up with an error after
    ``max_attempts`` (default 20 per requested episode) without writing anything."""
    from chunkrl.envs.aloha import MAX_EPISODE_STEPS, AlohaEnv

    if dataset not in DATASETS:
        raise DatasetError(f"unknown scripted dataset '{dataset}'; available: {', '.join(DATASETS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; chunkrl does not overwrite datasets (pass --overwrite to replace it)")
    name = DATASETS[dataset]
    ee_env = AlohaEnv(name, end_effector=True)
    env = AlohaEnv(name)
    max_attempts = max_attempts or 20 * episodes
    kept, attempts = [], 0
    while len(kept) < episodes:
        if attempts >= max_attempts:
            raise DatasetError(
                f"only {len(kept)} of {attempts} scripted episodes succeeded; stopped after {max_attempts} attempts"
            )
        targets, poses = scripted_joint_trajectory(ee_env, seed + attempts, MAX_EPISODE_STEPS)
        episode = replay(env, targets, poses)
        attempts += 1
        if episode is not None:
            kept.append(episode)
        if progress is not None:
            progress(len(kept), attempts)
    arrays = {k: np.concatenate([e[k] for e in kept]) for k in kept[0]}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(out)
    return {
        "episodes": len(kept),
        "attempts": attempts,
        "success_rate": len(kept) / attempts,
        "steps": len(arrays["rewards"]),
    }
