"""The scripted ALOHA demonstrations: the end-effector task follows its targets, and both scripts succeed."""

import numpy as np
import pytest

from chunkrl.envs.aloha import MAX_EPISODE_STEPS, AlohaEnv
from chunkrl.envs.scripted.aloha import (
    INSERT_LIFT,
    INSERT_MEET,
    insertion_plan,
    replay,
    scripted_joint_trajectory,
    transfer_cube_plan,
)


def weld_error(env: AlohaEnv, arm: int) -> float:
    """Distance (m) between a gripper and where its mocap weld wants it."""
    physics = env.physics
    body = ("vx300s_left/gripper_link", "vx300s_right/gripper_link")[arm]
    quat = physics.data.mocap_quat[arm]
    w, v = quat[0], quat[1:]
    offset = physics.model.eq_data[arm, 3:6]
    rotated = offset + 2 * w * np.cross(v, offset) + 2 * np.cross(v, np.cross(v, offset))  # quaternion rotation
    return float(np.linalg.norm(physics.data.mocap_pos[arm] + rotated - physics.named.data.xpos[body]))


def test_the_grippers_follow_their_mocap_targets_closely():
    env = AlohaEnv("aloha-transfer-cube", end_effector=True)
    env.reset(seed=1)
    raw = env.raw_observation
    plan = transfer_cube_plan(raw["env_state"], raw["mocap_pose_left"], raw["mocap_pose_right"], MAX_EPISODE_STEPS)
    errors = []
    for t in range(170):
        env.step(plan[t])
        if t >= 20:  # after the first steps from the rest pose
            errors.append(max(weld_error(env, 0), weld_error(env, 1)))
    assert max(errors) < 0.01  # gym-aloha's own weld impedance lags by 3-10 cm here on MuJoCo 3.x


def test_insertion_plan_passes_through_its_waypoints():
    objects = np.array([0.15, 0.45, 0.05, 1, 0, 0, 0, -0.15, 0.55, 0.05, 1, 0, 0, 0], dtype=np.float64)
    left_start = np.array([-0.3, 0.5, 0.3, 1, 0, 0, 0])
    right_start = np.array([0.3, 0.5, 0.3, 1, 0, 0, 0])
    plan = insertion_plan(objects, left_start, right_start, 400)
    # step t is row t-1; left: xyz, quat, gripper; right from column 8
    np.testing.assert_allclose(plan[169, :3], [-0.15, 0.55, 0.02])  # left above the socket, down 3 cm
    np.testing.assert_allclose(plan[169, 8:11], [0.15, 0.45, 0.02])  # right around the peg
    assert plan[169, 7] == 1.0 and plan[219, 7] == 0.0 and plan[219, 15] == 0.0  # open, then grasped
    np.testing.assert_allclose(plan[339, 8:11], INSERT_MEET + [0.05, 0, INSERT_LIFT])
    np.testing.assert_allclose(plan[339, :3], INSERT_MEET + [-0.05, 0, 0])
    # the right gripper pitched -60 degrees about y from its rest orientation: w = cos 30, y = -sin 30
    np.testing.assert_allclose(plan[339, 11:15], [np.cos(np.pi / 6), 0, -np.sin(np.pi / 6), 0], atol=1e-12)
    np.testing.assert_allclose(plan[339, 3:7], [np.cos(np.pi / 6), 0, np.sin(np.pi / 6), 0], atol=1e-12)


@pytest.mark.parametrize("task", ["aloha-transfer-cube", "aloha-insertion"])
def test_the_script_succeeds_on_seeded_poses(task):
    ee_env, env = AlohaEnv(task, end_effector=True), AlohaEnv(task)
    for seed in (0, 1, 2):
        targets, poses = scripted_joint_trajectory(ee_env, seed, MAX_EPISODE_STEPS)
        episode = replay(env, targets, poses)
        assert episode is not None, f"the {task} script failed on seed {seed}"
        assert episode["rewards"][-1] == 4.0 and episode["terminals"][-1] and episode["ends"][-1]
        assert episode["actions"].shape[1] == 14 and len(episode["rewards"]) < MAX_EPISODE_STEPS
        grippers = episode["actions"][:, [6, 13]]
        assert grippers.min() >= -0.05 and grippers.max() <= 1.05  # commanded openings, normalised


def test_with_hold_success_the_succeeding_step_pays_the_top_reward_for_every_step_left():
    ee_env = AlohaEnv("aloha-transfer-cube", end_effector=True)
    targets, poses = scripted_joint_trajectory(ee_env, 0, MAX_EPISODE_STEPS)
    plain = replay(AlohaEnv("aloha-transfer-cube"), targets, poses)
    held = replay(AlohaEnv("aloha-transfer-cube", hold_success=True), targets, poses)
    steps = len(plain["rewards"])  # the step that succeeds is step `steps`: 400 - steps are left after it
    assert len(held["rewards"]) == steps and held["terminals"][-1]
    np.testing.assert_array_equal(held["rewards"][:-1], plain["rewards"][:-1])  # the stages pay as before
    assert plain["rewards"][-1] == 4.0 and held["rewards"][-1] == 4.0 + 4.0 * (MAX_EPISODE_STEPS - steps)


def test_the_arms_start_where_their_targets_are_and_demonstrations_start_smoothly():
    env = AlohaEnv("aloha-transfer-cube", end_effector=True)
    env.reset(seed=0)
    raw = env.raw_observation
    joints = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]  # both arms without the grippers
    start = raw["qpos"][joints].copy()
    env.step(np.concatenate([raw["mocap_pose_left"], [0.0], raw["mocap_pose_right"], [0.0]]))  # hold still
    assert np.abs(env.raw_observation["qpos"][joints] - start).max() < 0.005
    targets, _ = scripted_joint_trajectory(env, 0, MAX_EPISODE_STEPS)
    arms = targets[:, joints]
    assert np.abs(arms[0] - start).max() < 0.02  # no jump at the start
    assert np.abs(np.diff(arms, axis=0)).max() < 0.1  # nor anywhere later (radians per 20 ms step)
