"""--precision: what each mode changes, and that nothing leaks out of an update or a query."""

import numpy as np
import pytest
import torch

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.fql import FQLAgent
from chunkrl.nets.precision import autocast, check_precision, matmul_precision
from tests.agents.test_fql import ACT, OBS, H, batch


def agent(precision):
    torch.manual_seed(0)
    a = FQLAgent(OBS, ACT, H, FlowAgentConfig(actor_hidden_dims=(32, 32), critic_hidden_dims=(32, 32), alpha=10.0))
    a.precision = precision
    return a


def test_bf16_runs_the_products_in_bfloat16_and_keeps_parameters_and_metrics_fp32():
    seen = []
    a = agent("bf16")
    a.critic.members.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    metrics = a.update(batch())
    assert torch.bfloat16 in seen
    assert all(p.dtype == torch.float32 for p in a.parameters())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in metrics.values())
    assert a.act(np.zeros(OBS, np.float32)).dtype == np.float32


def test_bf16_changes_results_only_at_bfloat16_resolution():
    observations = torch.randn(64, OBS)
    exact, rounded = agent("fp32"), agent("bf16")
    with torch.no_grad():
        reference = exact.critic(observations, torch.zeros(64, H * ACT))
        with autocast("bf16", torch.device("cpu")):
            approximate = rounded.critic(observations, torch.zeros(64, H * ACT)).float()
    assert not torch.equal(reference, approximate)
    torch.testing.assert_close(approximate, reference, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("precision", ["fp32", "bf16-matmul", "bf16"])
def test_every_precision_trains_and_leaves_the_global_setting_as_it_was(precision):
    before = torch.get_float32_matmul_precision()
    a = agent(precision)
    losses = [float(a.update(batch(seed=1))["critic/loss"]) for _ in range(30)]
    assert losses[-1] < losses[0]
    assert torch.get_float32_matmul_precision() == before


def test_bf16_matmul_is_set_only_inside_the_block():
    before = torch.get_float32_matmul_precision()
    with matmul_precision("bf16-matmul"):
        assert torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == before


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="fp32, bf16-matmul, bf16"):
        check_precision("fp16")
