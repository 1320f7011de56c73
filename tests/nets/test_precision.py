"""--precision: what each mode changes, and that nothing leaks out of an update or a query."""

import numpy as np
import pytest
import torch

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.fql import FQLAgent
from chunkrl.nets.precision import autocast, check_precision, matmul_precision
from tests.agents.test_fql import ACT, OBS, H, batch
from tests.agents.test_ppo import tokenizer_for


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


def built(method: str, **changes):
    """Any method's agent at small sizes (bf16), as the run would build it."""
    from chunkrl.agents.registry import build_agent
    from chunkrl.config import TrainConfig, from_dict, resolve_method

    torch.manual_seed(0)
    config = resolve_method(from_dict(TrainConfig, {"agent": method, "precision": "bf16", "horizon": 4, **changes}))
    tokens = {"tokenizer": tokenizer_for(4, ACT)} if method == "chunk-ppo" else {}
    return build_agent(config, OBS, ACT, torch.device("cpu"), **tokens)


def query(agent, observations, cached: bool):
    """A sampled action query with the agent's noise seeded: through ``act`` (bf16 weight copies) or through
    ``act_tensor`` under autocast, which casts the fp32 weights as it goes."""
    torch.manual_seed(7)
    if cached:
        return agent.act(observations)
    with torch.inference_mode(), autocast("bf16", agent.device):
        return agent.act_tensor(torch.as_tensor(observations)).float().numpy()


@pytest.mark.parametrize(
    ("method", "changes"),
    [("qc-fql", {}), ("qc", {}), ("dqc", {"sparse": True, "critic_horizon": 8}), ("qc-rlpd", {}),
     ("qc-rlpd", {"sac": {"actor": "act"}}), ("diffusion-ql", {}), ("cpql", {}),
     ("chunk-ppo", {"ppo": {"actor": "gaussian"}}), ("chunk-ppo", {"ppo": {"width": 16, "heads": 2}})],
)  # fmt: skip
def test_bf16_queries_use_weight_copies_made_again_after_every_change(method, changes):
    """bf16 action queries read bfloat16 copies of the weights instead of casting each weight at each query: the
    same chunks as autocast's casts, bit for bit, before and after an optimizer step and a checkpoint load."""
    agent = built(method, **changes)
    observations = np.random.default_rng(0).normal(size=(3, OBS)).astype(np.float32)
    np.testing.assert_array_equal(query(agent, observations, True), query(agent, observations, False))
    first = agent.acting_weights.pairs
    assert first and all(p.dtype == torch.float32 and w.dtype == torch.bfloat16 for p, w in first)
    agent.act(observations)
    assert agent.acting_weights.pairs is first  # no weight changed: the same copies

    with torch.no_grad():  # an optimizer step on every weight
        for p in agent.parameters():
            p.grad = torch.ones_like(p)
    for optimizer in agent.optimizers().values():
        optimizer.step()
    np.testing.assert_array_equal(query(agent, observations, True), query(agent, observations, False))
    assert agent.acting_weights.pairs is not first

    other = built(method, **changes)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    agent.load_state_dict(other.state_dict())  # other weights, loaded
    np.testing.assert_array_equal(query(agent, observations, True), query(agent, observations, False))
