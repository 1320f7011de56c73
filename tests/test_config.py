"""Configs: presets load, files round-trip, unknown keys are rejected, methods resolve."""

from pathlib import Path

import pytest

from chunkrl.config import TrainConfig, check_values, load_config, resolve_method, save_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)


def test_save_then_load_gives_the_same_config(tmp_path):
    config = load_config(PRESETS[0])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_a_saved_config_holds_only_its_family_section_and_loads_back_whole(tmp_path):
    import yaml

    config = resolve_method(TrainConfig(agent="cpql"))
    save_config(config, tmp_path / "c.yaml")
    saved = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert "cpql" in saved and not {"flow", "sac", "diffusion", "ppo"} & set(saved)
    assert load_config(tmp_path / "c.yaml") == config


def test_unknown_keys_are_rejected_with_the_valid_ones_listed(tmp_path):
    (tmp_path / "bad.yaml").write_text("offline_step: 3\n")
    with pytest.raises(ValueError, match="unknown option.*offline_step"):
        load_config(tmp_path / "bad.yaml")


def test_fql_is_one_step_without_chunking_and_fql_n_keeps_the_horizon():
    fql = resolve_method(TrainConfig(agent="fql", horizon=5))
    assert fql.horizon == 1 and fql.flow.action_chunking is False
    fql_n = resolve_method(TrainConfig(agent="fql-n", horizon=5))
    assert fql_n.horizon == 5 and fql_n.flow.action_chunking is False
    qc = resolve_method(TrainConfig(agent="qc-fql"))
    assert qc.horizon == 5 and qc.flow.action_chunking is True
    assert (fql.critic_horizon, fql.actor_chunk) == (1, 1) and (qc.critic_horizon, qc.actor_chunk) == (5, 5)


def test_the_three_named_lengths_default_to_the_horizon_and_are_resolved_into_the_config():
    config = resolve_method(TrainConfig(agent="qc-rlpd", horizon=4))
    assert (config.critic_horizon, config.actor_chunk, config.execute_horizon) == (4, 4, None)
    seed_000 = resolve_method(TrainConfig(agent="qc-fql", horizon=3, actor_chunk=8))  # actor 8, critic 3
    assert (seed_000.critic_horizon, seed_000.actor_chunk) == (3, 8)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"agent": "cpql", "critic_horizon": 3, "actor_chunk": 8}, "must equal the actor's chunk.*qc-fql, qc, "),
        ({"agent": "qc-fql", "critic_horizon": 8, "actor_chunk": 3}, "critic_horizon 8 > actor_chunk 3"),
        ({"agent": "fql", "actor_chunk": 4}, "one action at a time; it takes no .*actor_chunk"),
    ],
)
def test_lengths_an_agent_cannot_train_with_are_refused_with_the_reason(changes, message):
    with pytest.raises(ValueError, match=message):
        resolve_method(TrainConfig(**changes))


def test_execute_horizon_is_bounded_by_the_actor_chunk_not_the_critic_horizon():
    check_values(TrainConfig(agent="qc-fql", horizon=2, actor_chunk=6, execute_horizon=6))
    with pytest.raises(ValueError, match="between 1 and the actor's chunk 6"):
        check_values(TrainConfig(agent="qc-fql", horizon=2, actor_chunk=6, execute_horizon=7))


@pytest.mark.parametrize(
    ("method", "section", "eta", "norm", "targets"),
    [
        ("diffusion-ql", "diffusion", 0.005, 10.0, ("polyak", "ema")),  # Diffusion-QL's code
        ("cpql", "cpql", 0.005, 8.0, ("ema", "online")),  # CPQL's code's target rules, η measured (README)
    ],
)
def test_offline_diffusion_methods_declare_their_data_and_schedule(method, section, eta, norm, targets):
    resolved = resolve_method(TrainConfig(agent=method))
    assert (resolved.boundary, resolved.online_steps, resolved.offline_steps) == ("truncate", 0, 1_000_000)
    settings = getattr(resolved, section)
    assert (settings.eta, settings.max_grad_norm, (settings.target_update, settings.next_actor)) == (eta, norm, targets)
    chosen = resolve_method(TrainConfig(agent=method, boundary="mask", online_steps=5))
    assert (chosen.boundary, chosen.online_steps) == ("mask", 5)  # the user's values win
    flow = resolve_method(TrainConfig(agent="qc-fql"))
    assert (flow.boundary, flow.online_steps) == ("mask", 1_000_000)


def test_every_agent_section_checks_its_own_values():
    from chunkrl.agents.diffusion.config import CPQLConfig, DiffusionQLConfig
    from chunkrl.nets.unet1d import UNetConfig

    bad = TrainConfig(
        diffusion=DiffusionQLConfig(steps=0, num_critics=1, unet=UNetConfig(channels=(12,))), cpql=CPQLConfig(scales=1)
    )
    with pytest.raises(ValueError) as error:
        check_values(bad)
    for text in ("diffusion.steps", "diffusion.num_critics", "diffusion.unet.channels", "cpql.scales"):
        assert text in str(error.value)


def test_ppo_values_that_compare_false_with_everything_are_refused_too():
    from chunkrl.agents.ppo.config import ChunkPPOConfig

    bad = ChunkPPOConfig(clip=float("nan"), target_kl=-1.0, entropy_coef=float("inf"), value_clip=float("nan"))
    problems = " ".join(bad.problems("ppo"))
    for text in ("ppo.clip must be a number > 0 (got nan)", "ppo.target_kl must be a number > 0 (got -1.0)",
                 "ppo.entropy_coef must be a number >= 0 (got inf)", "ppo.value_clip"):  # fmt: skip
        assert text in problems
    assert ChunkPPOConfig(target_kl=None, value_clip=None).problems("ppo") == []  # None: off


def test_best_of_n_methods_get_their_sample_counts_unless_set():
    assert resolve_method(TrainConfig(agent="qc")).flow.num_samples == 64  # puzzle-3x3 (Table 5)
    assert resolve_method(TrainConfig(agent="bfn-n")).flow.num_samples == 4
    bfn = resolve_method(TrainConfig(agent="bfn"))
    assert bfn.flow.num_samples == 4 and bfn.horizon == 1 and bfn.flow.action_chunking is False
    from chunkrl.agents.flow.config import FlowAgentConfig

    custom = resolve_method(TrainConfig(agent="qc", flow=FlowAgentConfig(num_samples=16)))
    assert custom.flow.num_samples == 16


def test_the_rlpd_family_learns_online_with_prior_data_and_its_own_bc_weight():
    qc_rlpd = resolve_method(TrainConfig(agent="qc-rlpd"))
    assert qc_rlpd.offline_steps == 0 and qc_rlpd.replay == "symmetric"
    assert qc_rlpd.sac.bc_alpha == 0.01 and qc_rlpd.horizon == 5
    rlpd_ac = resolve_method(TrainConfig(agent="rlpd-ac"))
    assert rlpd_ac.sac.bc_alpha == 0.0 and rlpd_ac.horizon == 5
    rlpd = resolve_method(TrainConfig(agent="rlpd"))
    assert rlpd.horizon == 1 and rlpd.sac.bc_alpha == 0.0
    from chunkrl.agents.sac.config import SACAgentConfig

    tuned = resolve_method(TrainConfig(agent="qc-rlpd", offline_steps=10, sac=SACAgentConfig(bc_alpha=0.1)))
    assert tuned.sac.bc_alpha == 0.1 and tuned.offline_steps == 10


def test_flow_methods_pretrain_offline_and_share_the_replay_with_the_dataset():
    config = resolve_method(TrainConfig(agent="qc"))
    assert config.offline_steps == 1_000_000 and config.replay == "shared"
    assert resolve_method(TrainConfig(agent="qc-fql", replay="symmetric")).replay == "symmetric"


def test_the_rlpd_family_warms_up_with_random_actions_and_flow_agents_with_their_policy():
    assert resolve_method(TrainConfig(agent="qc-rlpd")).warmup == "random"
    assert resolve_method(TrainConfig(agent="rlpd")).warmup == "random"
    assert resolve_method(TrainConfig(agent="qc-fql")).warmup == "policy"
    assert resolve_method(TrainConfig(agent="qc")).warmup == "policy"
    assert resolve_method(TrainConfig(agent="rlpd-ac", warmup="policy")).warmup == "policy"


# The paper's appendix D.3 (arXiv 2507.07969), copied by hand: Table 4 (alpha) and Table 5 (N).
PAPER_ALPHA = {
    "qc-fql": {"scene": 300, "puzzle-3x3": 300, "cube-double": 300, "cube-triple": 100, "cube-quadruple": 100},
    "fql": {"scene": 300, "puzzle-3x3": 100, "cube-double": 300, "cube-triple": 300, "cube-quadruple": 300},
    "fql-n": {"scene": 100, "puzzle-3x3": 100, "cube-double": 100, "cube-triple": 100, "cube-quadruple": 100},
}
PAPER_SAMPLES = {
    "qc": {"scene": 32, "puzzle-3x3": 64, "cube-double": 32, "cube-triple": 32, "cube-quadruple": 32},
    "bfn": {"scene": 4, "puzzle-3x3": 4, "cube-double": 4, "cube-triple": 4, "cube-quadruple": 4},
    "bfn-n": {"scene": 4, "puzzle-3x3": 4, "cube-double": 4, "cube-triple": 4, "cube-quadruple": 4},
}


def env_of(domain: str) -> str:
    return f"{domain}-play-singletask-task2-v0"


@pytest.mark.parametrize("method", sorted(PAPER_ALPHA))
def test_alpha_defaults_to_the_papers_value_for_each_domain(method):
    for domain, alpha in PAPER_ALPHA[method].items():
        assert resolve_method(TrainConfig(agent=method, env=env_of(domain))).flow.alpha == alpha, domain
    # a domain the paper did not tune: the official code's default
    assert resolve_method(TrainConfig(agent=method, env=env_of("cube-single"))).flow.alpha == 100


@pytest.mark.parametrize("method", sorted(PAPER_SAMPLES))
def test_best_of_n_samples_default_to_the_papers_value_for_each_domain(method):
    for domain, samples in PAPER_SAMPLES[method].items():
        assert resolve_method(TrainConfig(agent=method, env=env_of(domain))).flow.num_samples == samples, domain


@pytest.mark.parametrize("path", [p for p in PRESETS if p.parent.name == "paper"], ids=lambda p: p.name)
def test_paper_presets_use_the_papers_tables(path):
    config = load_config(path)
    domain = config.env.split("-play-")[0]
    if config.agent in PAPER_ALPHA:
        assert config.flow.alpha == PAPER_ALPHA[config.agent][domain]
    if config.agent in PAPER_SAMPLES:
        assert config.flow.num_samples == PAPER_SAMPLES[config.agent][domain]
    sparse_domains = {"scene", "puzzle-3x3"}  # the paper sparsifies these two, and only these
    assert config.sparse == (domain in sparse_domains)
    resolved = resolve_method(config)
    assert (resolved.batch_size, resolved.discount, resolved.horizon in (1, 5)) == (256, 0.99, True)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unambiguous_values_are_converted_to_their_field_types(tmp_path):
    # YAML 1.1 reads 3e-4 and 1e5 (no dot) as strings: both are still clearly numbers
    config = load_config(write(tmp_path, 'sparse: "false"\noffline_steps: 1e5\nflow:\n  learning_rate: 3e-4\n'))
    assert config.sparse is False
    assert config.offline_steps == 100_000 and isinstance(config.offline_steps, int)
    assert config.flow.learning_rate == pytest.approx(3e-4)
    json_file = write(tmp_path, '{"horizon": 5.0, "flow": {"actor_hidden_dims": [8, 8]}}', "c.json")
    assert load_config(json_file).horizon == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('horizon: "five"', r"horizon: 'five' is not a valid int"),
        ("horizon: 2.5", r"horizon: 2.5 is not a whole number"),
        ("offline_steps: 2.5e0", r"offline_steps: '2.5e0' is not a whole number"),
        ("sparse: maybe", r"sparse: 'maybe' is not a valid bool"),
        ("boundary: trunc", r"boundary: 'trunc' is not a valid Optional\[Literal\['mask', 'truncate'\]"),
        ("flow:\n  actor_hidden_dims: wide", r"flow.actor_hidden_dims: 'wide'"),
        ("flow: 3", r"flow: expected a mapping"),
        ("eval_episodes: true", r"eval_episodes: True is not a valid int"),
        ("- agent: qc", r"expected a mapping of option names"),
        ("", r"is empty"),
        ("agent: [qc\n", r"is not valid YAML"),
    ],
)
def test_bad_values_are_rejected_with_the_key_the_value_and_the_expected_type(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, text))


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"eval_episodes": 0}, "eval_episodes must be >= 1"),
        ({"log_interval": 0}, "log_interval must be >= 1"),
        ({"online_steps": -5}, "online_steps must be >= 0"),
        ({"offline_steps": -1}, "offline_steps must be >= 0"),
        ({"horizon": -2}, "horizon must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"keep_checkpoints": 0}, "keep_checkpoints must be >= 1"),
        ({"execute_horizon": 7}, "execute_horizon must be between 1 and the actor's chunk 5"),
        ({"discount": 1.5}, r"discount must be in \[0, 1\]"),
    ],
)
def test_values_that_could_only_fail_later_are_rejected_up_front(changes, message):
    import dataclasses

    from chunkrl.config import check_values

    with pytest.raises(ValueError, match=message):
        check_values(dataclasses.replace(TrainConfig(), **changes))


def test_every_problem_is_reported_at_once():
    import dataclasses

    from chunkrl.config import check_values

    with pytest.raises(ValueError, match="eval_episodes.*log_interval"):
        check_values(dataclasses.replace(TrainConfig(), eval_episodes=0, log_interval=0))
    check_values(TrainConfig())  # the defaults are valid


@pytest.mark.parametrize(
    ("config_text", "flags", "message"),
    [
        ('horizon: "five"\n', [], "horizon: 'five'"),
        ("agent: qc-fql\n", ["--eval-episodes", "0"], "eval_episodes must be >= 1"),
        ("agent: fql\n", ["--execute-horizon", "3"], "execute_horizon must be between 1 and the actor's chunk 1"),
    ],
)
def test_a_bad_config_stops_the_cli_before_anything_is_created(tmp_path, capsys, config_text, flags, message):
    from chunkrl.cli import main

    run = tmp_path / "run"
    code = main(["train", "--config", str(write(tmp_path, config_text)), "--run-dir", str(run), *flags])
    assert code == 2
    assert message in capsys.readouterr().err.replace("\n", "")
    assert not run.exists()


def test_temporal_ensembling_needs_a_query_every_step_and_a_chunk_per_decision_is_refused():
    check_values(TrainConfig(temporal_ensemble=0.01))
    with pytest.raises(ValueError, match="temporal_ensemble queries every step"):
        check_values(TrainConfig(temporal_ensemble=0.01, execute_horizon=3))
    with pytest.raises(ValueError, match="temporal ensembling does not apply"):
        resolve_method(TrainConfig(agent="chunk-ppo", temporal_ensemble=0.01))
