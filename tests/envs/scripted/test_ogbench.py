"""Dataset generation with OGBench's oracles: layout, determinism, validation split, safe writes."""

import numpy as np
import pytest

from chunkrl.envs.ogbench import validation_path
from chunkrl.envs.scripted.ogbench import GenerationSettings, generate_dataset, official_settings


def test_generated_file_has_ogbench_layout_and_a_validation_split(tiny_puzzle_dataset):
    with np.load(tiny_puzzle_dataset) as data:
        assert set(data.files) == {"observations", "actions", "terminals", "qpos", "qvel", "button_states"}
        assert data["observations"].shape == (402, 55)
        assert data["actions"].shape == (402, 5)
        assert data["terminals"].dtype == bool
        # each stored episode ends with one terminal flag (OGBench marks the last stored row)
        np.testing.assert_array_equal(np.flatnonzero(data["terminals"]), [200, 401])
        assert np.abs(data["actions"]).max() <= 1.0
    with np.load(validation_path(tiny_puzzle_dataset)) as val:
        assert val["observations"].shape == (201, 55)


def test_official_settings_follow_ogbench():
    assert official_settings("scene-play-v0").episodes == 1000
    assert official_settings("cube-triple-play-v0").episodes == 3000
    assert official_settings("puzzle-3x3-noisy-v0").p_random_action == 0.2
    assert official_settings("cube-double-noisy-v0").p_random_action == 0.1
    s = official_settings("scene-play-v0")
    assert (s.noise, s.noise_smoothing, s.max_episode_steps) == (0.1, 0.5, 1001)
    assert s.env_id == "scene-v0"


def test_unknown_dataset_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean: scene-play-v0"):
        official_settings("scene-plai-v0")


def test_generation_is_identical_with_one_or_two_workers(tmp_path):
    settings = GenerationSettings(dataset="puzzle-3x3-play-v0", episodes=2, max_episode_steps=31, seed=7)
    one, _ = generate_dataset(settings, tmp_path / "a" / "d.npz", workers=1)
    two, _ = generate_dataset(settings, tmp_path / "b" / "d.npz", workers=2)
    with np.load(one) as a, np.load(two) as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_noisy_data_with_random_actions_are_identical_run_to_run(tmp_path):
    # p_random_action 0.5: about half the steps take a uniform random action from the action space's generator
    settings = GenerationSettings(
        dataset="puzzle-3x3-noisy-v0", episodes=2, max_episode_steps=31, p_random_action=0.5, seed=7
    )
    first, _ = generate_dataset(settings, tmp_path / "a" / "d.npz", workers=1)
    again, _ = generate_dataset(settings, tmp_path / "b" / "d.npz", workers=2)
    with np.load(first) as a, np.load(again) as b:
        np.testing.assert_array_equal(a["actions"], b["actions"])
        np.testing.assert_array_equal(a["observations"], b["observations"])


def test_existing_files_are_never_overwritten_without_asking(tiny_puzzle_dataset):
    before = tiny_puzzle_dataset.read_bytes()
    settings = GenerationSettings(dataset="puzzle-3x3-play-v0", episodes=1, max_episode_steps=11)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_dataset(settings, tiny_puzzle_dataset)
    assert tiny_puzzle_dataset.read_bytes() == before


def test_no_partial_file_is_left_behind(tmp_path):
    settings = GenerationSettings(dataset="puzzle-3x3-play-v0", episodes=1, max_episode_steps=11)
    generate_dataset(settings, tmp_path / "d.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d-val.npz", "d.npz"]


def test_mujoco_warnings_are_counted_and_said_once(tmp_path, monkeypatch):
    """MuJoCo's warnings during collection (a few hundred on the scene data, one log line each through dm_control)
    become one summary; afterwards this process's warnings go where they went before."""
    import mujoco

    from chunkrl.envs.scripted import ogbench as generator

    make_oracles = generator._make_oracles

    def oracles_that_warn_once(env, settings):
        oracles = make_oracles(env, settings)
        for oracle in oracles.values():
            select, calls = oracle.select_action, []

            def select_action(ob, info, select=select, calls=calls):
                if not calls:  # a real MuJoCo warning, through MuJoCo's own handler
                    mujoco.mj_printModel(env.unwrapped.model, str(tmp_path / "missing" / "model.txt"))
                calls.append(1)
                return select(ob, info)

            oracle.select_action = select_action
        return oracles

    monkeypatch.setattr(generator, "_make_oracles", oracles_that_warn_once)
    before: list[str] = []
    original = mujoco.get_mju_user_warning()  # dm_control's, when another test imported it
    mujoco.set_mju_user_warning(before.append)
    notices: list[str] = []
    settings = GenerationSettings(dataset="puzzle-3x3-play-v0", episodes=1, max_episode_steps=11)
    try:
        generate_dataset(settings, tmp_path / "d.npz", notice=notices.append)
        assert notices == [
            "MuJoCo warned 1 time in 1 of 2 episodes: "
            f"'Could not open file '{tmp_path / 'missing' / 'model.txt'}' for writing mjModel' (1). "
            "The episodes are kept as OGBench's own generator would keep them (it runs the same simulator)."
        ]
        assert before == []
        mujoco.mj_printModel(mujoco.MjModel.from_xml_string("<mujoco/>"), str(tmp_path / "missing" / "again.txt"))
        assert len(before) == 1 and "again.txt" in before[0]
    finally:
        mujoco.set_mju_user_warning(original)


def test_warning_summary_names_the_commonest_messages():
    summary = generator_summary([{"a": 2}, {}, {"b": 1, "c": 1, "d": 1, "e": 3}])
    assert summary.startswith(
        "MuJoCo warned 8 times in 2 of 3 episodes: 'e' (3); 'a' (2); 'b' (1); 2 other messages (2)."
    )
    assert generator_summary([{}, {}]) == ""


def generator_summary(per_episode):
    from chunkrl.envs.scripted.ogbench import _warning_summary

    return _warning_summary(per_episode)
