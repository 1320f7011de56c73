"""Scripted ALOHA demonstrations (transfer-cube and insertion), saved as chunkrl datasets.

Each script moves the two grippers through end-effector waypoints (the ACT paper's) in the mocap-driven
version of the task. Transfer-cube: the right arm picks the cube up and carries it to a meeting point;
the left arm closes on it there and the right one lets go. Insertion: each arm picks up its part (right
the peg, left the socket), lifts it to either side of the meeting point, and the two move together until
the peg is in. Positions are interpolated linearly between waypoints and orientations spherically. Each
step's joint positions (and the commanded gripper openings) are recorded, then replayed as joint targets
in the joint-space task with the same object poses; only replays that reach the success reward are kept
(the dataset holds them: state observations, joint actions, the staged reward, terminal on success).
Generation counts attempts and reports the success rate.

On MuJoCo 3.x two things differ from the 2.x the ACT scripts were written for, both handled in
``chunkrl.envs.aloha``: the mocap welds were too soft (``MOCAP_WELD_SOLIMP``), and the arms were yanked
towards their targets at the first step (``align_mocap_targets``; the scripts now first move each gripper
to their start over ``SETTLE_STEPS`` steps). With both, the scripts succeed in 100 of 100 attempts for each
task (seeds 0-99, MuJoCo 3.8.1), and the demonstrations start from the rest pose without a jump.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from chunkrl.errors import DatasetError

DATASETS = {"aloha-transfer-cube-scripted": "aloha-transfer-cube", "aloha-insertion-scripted": "aloha-insertion"}
MEET = np.array([0.0, 0.5, 0.25])
"""Where the two grippers meet to hand the cube over (table frame, metres)."""
GRASP_HEIGHT = -0.015
"""Height of the right gripper's grasp above the cube's initial centre (metres)."""
TILT = -60.0
"""Pitch of the right gripper towards the cube when grasping (degrees)."""
SETTLE_STEPS = 20
"""Steps over which each gripper first moves from its rest pose to the start of ACT's scripts (``SCRIPT_START``)."""
SCRIPT_START = np.array([0.31718881, 0.5, 0.29525084])
"""The right gripper's mocap target when ACT's scripts begin (gym-aloha's start target; the left one mirrored in x)."""
INSERT_MEET = np.array([0.0, 0.5, 0.15])
"""Where the peg meets the socket in the insertion task (table frame, metres)."""
INSERT_LIFT = 0.00715
"""How much higher the right gripper holds the peg than the left holds the socket (metres)."""


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


def transfer_cube_plan(objects: np.ndarray, left_start: np.ndarray, right_start: np.ndarray, steps: int) -> np.ndarray:
    """End-effector actions [steps, 16] (left then right: xyz, quaternion, gripper) for a cube at ``objects[:3]``.

    The grippers start where they rest (``left_start``, ``right_start``: xyz, quaternion w-first); orientations
    are those of ACT's scripts, relative to the mocap frame's identity. The right gripper, pitched towards
    the cube, picks it up and carries it to the meeting point; the left
    gripper, turned to take it from the side, closes on it there; the right one lets go and withdraws."""
    cube = objects[:3]
    left_rest = Rotation.from_quat(left_start[[4, 5, 6, 3]])
    right_rest = Rotation.from_quat(right_start[[4, 5, 6, 3]])
    pick = Rotation.from_euler("y", TILT, degrees=True)  # tilt down towards the cube
    receive = Rotation.from_euler("x", 90, degrees=True)  # left gripper turned to take the cube from the side
    left = [
        Waypoint(0, left_start[:3], left_rest, 0.0),
        Waypoint(SETTLE_STEPS, SCRIPT_START * [-1, 1, 1], Rotation.identity(), 0.0),
        Waypoint(100, MEET + [-0.1, 0.0, -0.02], receive, 1.0),  # wait beside the meeting point, open
        Waypoint(260, MEET + [0.02, 0.0, -0.02], receive, 1.0),  # move in around the cube
        Waypoint(310, MEET + [0.02, 0.0, -0.02], receive, 0.0),  # close on it
        Waypoint(360, MEET + [-0.1, 0.0, -0.02], receive, 0.0),  # take it away
        Waypoint(steps, MEET + [-0.1, 0.0, -0.02], receive, 0.0),
    ]
    right = [
        Waypoint(0, right_start[:3], right_rest, 0.0),
        Waypoint(SETTLE_STEPS, SCRIPT_START, Rotation.identity(), 0.0),
        Waypoint(90, cube + [0.0, 0.0, 0.08], pick, 1.0),  # above the cube, open
        Waypoint(130, cube + [0.0, 0.0, GRASP_HEIGHT], pick, 1.0),  # down around it
        Waypoint(170, cube + [0.0, 0.0, GRASP_HEIGHT], pick, 0.0),  # grasp
        Waypoint(200, MEET + [0.05, 0.0, 0.0], pick, 0.0),  # lift towards the meeting point
        Waypoint(220, MEET, pick, 0.0),
        Waypoint(310, MEET, pick, 1.0),  # let go once the left gripper holds it
        Waypoint(360, MEET + [0.1, 0.0, 0.0], pick, 1.0),  # withdraw
        Waypoint(steps, MEET + [0.1, 0.0, 0.0], pick, 1.0),
    ]
    return np.concatenate([_interpolate(left, steps), _interpolate(right, steps)], axis=1)


def insertion_plan(objects: np.ndarray, left_start: np.ndarray, right_start: np.ndarray, steps: int) -> np.ndarray:
    """End-effector actions [steps, 16] for the peg at ``objects[:3]`` and the socket at ``objects[7:10]``.

    Each arm, pitched down (the right by -60 degrees about y, the left by +60), picks up its part from
    above; both lift their part to either side of the insertion point and move towards each other until the
    peg slides into the socket."""
    peg, socket = objects[:3], objects[7:10]
    left_rest = Rotation.from_quat(left_start[[4, 5, 6, 3]])
    right_rest = Rotation.from_quat(right_start[[4, 5, 6, 3]])
    pick_right = Rotation.from_euler("y", -60, degrees=True)
    pick_left = Rotation.from_euler("y", 60, degrees=True)
    lift = [0.0, 0.0, INSERT_LIFT]
    left = [
        Waypoint(0, left_start[:3], left_rest, 0.0),
        Waypoint(SETTLE_STEPS, SCRIPT_START * [-1, 1, 1], Rotation.identity(), 0.0),
        Waypoint(120, socket + [0.0, 0.0, 0.08], pick_left, 1.0),  # above the socket, open
        Waypoint(170, socket + [0.0, 0.0, -0.03], pick_left, 1.0),  # down around it
        Waypoint(220, socket + [0.0, 0.0, -0.03], pick_left, 0.0),  # grasp
        Waypoint(285, INSERT_MEET + [-0.1, 0.0, 0.0], pick_left, 0.0),  # lift it to the left of the meeting point
        Waypoint(340, INSERT_MEET + [-0.05, 0.0, 0.0], pick_left, 0.0),  # move in
        Waypoint(steps, INSERT_MEET + [-0.05, 0.0, 0.0], pick_left, 0.0),
    ]
    right = [
        Waypoint(0, right_start[:3], right_rest, 0.0),
        Waypoint(SETTLE_STEPS, SCRIPT_START, Rotation.identity(), 0.0),
        Waypoint(120, peg + [0.0, 0.0, 0.08], pick_right, 1.0),
        Waypoint(170, peg + [0.0, 0.0, -0.03], pick_right, 1.0),
        Waypoint(220, peg + [0.0, 0.0, -0.03], pick_right, 0.0),
        Waypoint(285, INSERT_MEET + [0.1, 0.0, 0.0] + lift, pick_right, 0.0),
        Waypoint(340, INSERT_MEET + [0.05, 0.0, 0.0] + lift, pick_right, 0.0),  # push the peg in
        Waypoint(steps, INSERT_MEET + [0.05, 0.0, 0.0] + lift, pick_right, 0.0),
    ]
    return np.concatenate([_interpolate(left, steps), _interpolate(right, steps)], axis=1)


PLANS = {"transfer_cube": transfer_cube_plan, "insertion": insertion_plan}


def scripted_joint_trajectory(ee_env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the task's script in the end-effector task; (joint targets [steps, 14], object poses)."""
    from gym_aloha.constants import normalize_puppet_gripper_position

    ee_env.reset(seed=seed)
    raw = ee_env.raw_observation
    poses = ee_env.unwrapped._task.object_poses.copy()
    plan = PLANS[ee_env.task](raw["env_state"].copy(), raw["mocap_pose_left"], raw["mocap_pose_right"], steps)
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
