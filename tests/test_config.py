"""Configs: presets load, files round-trip, unknown keys are rejected, methods resolve."""

from pathlib import Path

import pytest

from chunkrl.config import TrainConfig, load_config, save_config
from chunkrl.train.setup import resolve_method

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)


def test_save_then_load_gives_the_same_config(tmp_path):
    config = load_config(PRESETS[0])
    save_config(config, tmp_path / "c.yaml")
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


def test_best_of_n_methods_get_their_sample_counts_unless_set():
    assert resolve_method(TrainConfig(agent="qc")).flow.num_samples == 32
    assert resolve_method(TrainConfig(agent="bfn-n")).flow.num_samples == 4
    bfn = resolve_method(TrainConfig(agent="bfn"))
    assert bfn.flow.num_samples == 4 and bfn.horizon == 1 and bfn.flow.action_chunking is False
    from chunkrl.agents.configs import FlowAgentConfig

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
    from chunkrl.agents.configs import SACAgentConfig

    tuned = resolve_method(TrainConfig(agent="qc-rlpd", offline_steps=10, sac=SACAgentConfig(bc_alpha=0.1)))
    assert tuned.sac.bc_alpha == 0.1 and tuned.offline_steps == 10


def test_flow_methods_pretrain_offline_and_share_the_replay_with_the_dataset():
    config = resolve_method(TrainConfig(agent="qc"))
    assert config.offline_steps == 1_000_000 and config.replay == "shared"
    assert resolve_method(TrainConfig(agent="qc-fql", replay="symmetric")).replay == "symmetric"
