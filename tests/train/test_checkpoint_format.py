"""Checkpoints written before the architecture change (December 2026 layout: one ``horizon``, every family's
config section saved) still load and act exactly as they did.

The fixtures were written by chunkrl at commit d568b42 with tiny networks on a tiny generated puzzle-3x3
dataset; ``expected_chunks.json`` holds the deterministic chunk each one answered then for a fixed
observation."""

import json
from pathlib import Path

import numpy as np
import pytest

from chunkrl.policy import Policy

FIXTURES = Path(__file__).parent.parent / "fixtures" / "format_2026_12"
EXPECTED = json.loads((FIXTURES / "expected_chunks.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_checkpoint_acts_as_it_did(name):
    policy = Policy.from_pretrained(FIXTURES / name, device="cpu", deterministic=True)
    expected = EXPECTED[name]
    chunk = policy.predict_chunk(np.asarray(expected["observation"], np.float32))
    np.testing.assert_allclose(chunk, np.asarray(expected["chunk"]), rtol=1e-5, atol=1e-6)


def test_an_old_run_config_resolves_its_one_horizon_into_the_three_named_lengths():
    from chunkrl.config import load_config, resolve_method

    config = resolve_method(load_config(FIXTURES / "qc-fql-run" / "config.yaml"))
    assert (config.horizon, config.critic_horizon, config.actor_chunk, config.execute_horizon) == (3, 3, 3, None)
