"""The ALOHA simulator's state mode and chunk steps (needs the aloha extra, installed by the dev extra)."""

import numpy as np
import pytest

from chunkrl.envs.aloha import STATE_LAYOUT, AlohaEnv
from chunkrl.envs.executor import ChunkStepEnv


def test_state_observation_layout_and_no_rendering(monkeypatch):
    env = AlohaEnv("aloha-transfer-cube")

    def no_render(*args, **kwargs):
        raise AssertionError("state mode rendered a camera")

    monkeypatch.setattr(type(env.physics), "render", no_render)
    pose = np.array([0.1, 0.5, 0.05, 1.0, 0.0, 0.0, 0.0])
    observation, info = env.reset(seed=3, options={"object_poses": pose})
    assert observation.shape == (35,) and env.observation_space.shape == (35,)
    qpos, qvel, objects = (observation[STATE_LAYOUT[k]] for k in ("qpos", "qvel", "objects"))
    start_arm = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0]  # the robot's start pose, both arms
    np.testing.assert_allclose(qpos[:6], start_arm, atol=1e-6)
    np.testing.assert_allclose(qpos[7:13], start_arm, atol=1e-6)
    np.testing.assert_allclose(objects, pose, atol=1e-6)
    np.testing.assert_allclose(qvel, 0.0, atol=1e-6)
    hold = qpos.copy()
    for _ in range(5):
        observation, reward, terminated, truncated, info = env.step(hold)
    assert reward == 0.0 and not terminated and not truncated
    assert observation[STATE_LAYOUT["objects"]][2] < 0.05  # the cube falls onto the table


def test_insertion_has_two_object_poses():
    env = AlohaEnv("aloha-insertion")
    observation, _ = env.reset(seed=0)
    assert observation.shape == (42,)


def test_same_seed_same_cube_and_time_limit():
    env = AlohaEnv("aloha-transfer-cube", max_episode_steps=7)
    first, _ = env.reset(seed=5)
    second, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first, second)
    chunked = ChunkStepEnv(env, horizon=4, gamma=0.5)
    observation, _ = chunked.reset(seed=5)
    hold = np.repeat(observation[None, :14], 4, axis=0)
    _, _, _, truncated, info = chunked.step(hold)
    assert info["tau"] == 4 and not truncated
    _, _, _, truncated, info = chunked.step(hold)
    assert info["tau"] == 3 and truncated  # the time limit cut the second chunk after 3 of its 4 actions


def test_pixel_mode_renders_or_says_how_to_fix_it():
    env = AlohaEnv("aloha-transfer-cube", obs_mode="pixels", image_size=(48, 64))
    try:
        observation, _ = env.reset(seed=0)
    except RuntimeError as error:
        assert "MUJOCO_GL=egl" in str(error)
        pytest.skip(f"no OpenGL here: {error}")
    assert observation["top"].shape == (48, 64, 3) and observation["state"].shape == (35,)


def test_a_diverged_simulation_ends_the_episode_as_a_terminal_failure_and_says_so(monkeypatch):
    env = AlohaEnv("aloha-transfer-cube")
    observation, _ = env.reset(seed=0)

    def diverge(action):
        raise env._physics_error("Physics state is invalid. Warning(s) raised: mjWARN_BADQACC")

    monkeypatch.setattr(env._env, "step", diverge)
    chunked = ChunkStepEnv(env, horizon=3, gamma=0.5)
    _, reward, terminated, truncated, info = chunked.step(np.repeat(observation[None, :14], 3, axis=0))
    # no bootstrapping from a diverged state: terminal (not a time-limit truncation), a failure, counted
    assert terminated and not truncated and reward == 0.0
    assert info["diverged"] and not info["success"] and info["tau"] == 1 and "BADQACC" in info["physics_error"]


def test_state_parts_choose_columns_of_the_full_state_for_the_env_and_the_dataset(tmp_path):
    from chunkrl.data.sources.aloha_scripted import load_scripted
    from chunkrl.envs.aloha import state_columns

    full, cut = AlohaEnv("aloha-transfer-cube"), AlohaEnv("aloha-transfer-cube", state_parts=("qpos", "objects"))
    observation, _ = full.reset(seed=3)
    chosen, _ = cut.reset(seed=3)
    assert cut.observation_space.shape == (21,) and chosen.shape == (21,)
    np.testing.assert_array_equal(chosen, np.concatenate([observation[:14], observation[28:]]))
    np.testing.assert_array_equal(state_columns(("objects", "qpos"), 42)[:3], [28, 29, 30])  # the order given
    steps = 4
    arrays = {
        "observations": np.arange(steps * 35, dtype=np.float32).reshape(steps, 35),
        "next_observations": -np.arange(steps * 35, dtype=np.float32).reshape(steps, 35),
        "actions": np.zeros((steps, 14), np.float32),
        "rewards": np.zeros(steps, np.float32),
        "terminals": np.zeros(steps, bool),
        "ends": np.array([False, False, False, True]),
    }
    np.savez(tmp_path / "demos.npz", **arrays)
    store = load_scripted(tmp_path / "demos.npz", state_parts=("qpos", "objects"))
    np.testing.assert_array_equal(
        store.observations[:steps], arrays["observations"][:, state_columns(("qpos", "objects"), 35)]
    )
    np.testing.assert_array_equal(store.next_observations[1, :14], -np.arange(35, 49))
    with pytest.raises(ValueError, match="choose one or more of qpos, qvel, objects"):
        AlohaEnv("aloha-transfer-cube", state_parts=("qpos", "velocity"))
