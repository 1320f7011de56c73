"""Seeds trained together with stacked parameters update exactly as separate agents would."""

import copy

import numpy as np
import pytest
import torch

from chunkrl.agents.flow.best_of_n import BestOfNAgent
from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.fql import FQLAgent
from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.agents.sac.sac import ChunkedSACAgent
from chunkrl.agents.stack import SeedStack
from chunkrl.nets.act import ACTActorConfig
from chunkrl.nets.noise import GeneratorNoise
from tests.agents.test_fql import ACT, OBS, H, batch

FLOW = dict(actor_hidden_dims=(16, 16), critic_hidden_dims=(16, 16), flow_steps=3, alpha=10.0)
MAKERS = {
    "qc-fql": lambda: FQLAgent(OBS, ACT, H, FlowAgentConfig(**FLOW)),
    "qc": lambda: BestOfNAgent(OBS, ACT, H, FlowAgentConfig(**FLOW, num_samples=4)),
    "qc-rlpd": lambda: ChunkedSACAgent(
        OBS, ACT, H, SACAgentConfig(actor_hidden_dims=(16, 16), critic_hidden_dims=(16, 16), bc_alpha=0.1)
    ),
}


def lanes_and_twins(method, seeds):
    """Agents built with each seed, and separate deep copies of them (the "separate runs")."""
    lanes = []
    for seed in seeds:
        torch.manual_seed(seed)
        agent = MAKERS[method]()
        agent.noise = GeneratorNoise(100 + seed)
        lanes.append(agent)
    twins = [copy.deepcopy(agent) for agent in lanes]
    return lanes, twins


@pytest.mark.parametrize("method", sorted(MAKERS))
def test_a_stacked_update_is_each_seeds_separate_update(method):
    seeds = (0, 1, 2)
    lanes, twins = lanes_and_twins(method, seeds)
    stack = SeedStack(lanes)
    for step in range(3):  # several steps: Adam's moments, Polyak targets and counters carry over
        batches = [batch(size=16, seed=10 * step + s) for s in range(len(seeds))]
        stacked_metrics = stack.update(batches)
        for twin, b, metrics in zip(twins, batches, stacked_metrics, strict=True):
            separate = twin.update(b)
            torch.testing.assert_close(metrics["loss/total"], separate["loss/total"], rtol=1e-5, atol=1e-6)
    for lane, twin in zip(lanes, twins, strict=True):
        for (name, a), (_, b) in zip(lane.state_dict().items(), twin.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{method}: {name} differs")
    # the lanes really differ from each other (their own seeds, data and draws)
    first = [p for p in lanes[0].parameters()][0]
    assert not torch.allclose(first, [p for p in lanes[1].parameters()][0])


def test_lanes_act_with_the_stacked_weights_and_their_own_generators():
    lanes, twins = lanes_and_twins("qc-fql", (0, 1))
    stack = SeedStack(lanes)
    stack.update([batch(seed=1), batch(seed=2)])
    for twin, b in zip(twins, [batch(seed=1), batch(seed=2)], strict=True):
        twin.update(b)
    observation = np.linspace(-1, 1, OBS).astype(np.float32)
    for lane, twin in zip(lanes, twins, strict=True):
        np.testing.assert_allclose(lane.act(observation), twin.act(observation), rtol=1e-5, atol=1e-6)


def test_a_lanes_optimizer_state_round_trips_through_its_own_optimizer():
    lanes, _ = lanes_and_twins("qc-rlpd", (0, 1))
    stack = SeedStack(lanes)
    stack.update([batch(seed=1), batch(seed=2)])
    for s in range(2):
        stack.export_optimizer(s)
    saved = [copy.deepcopy(lane.optimizer.state_dict()) for lane in lanes]
    expected = {k: v.clone() for k, v in next(iter(stack.optimizer.state.values())).items()}
    stack.optimizer.state.clear()
    for lane, state in zip(lanes, saved, strict=True):
        lane.optimizer.load_state_dict(state)
    stack.import_optimizer()
    for k, v in next(iter(stack.optimizer.state.values())).items():
        torch.testing.assert_close(v, expected[k])


def test_dropout_is_refused_with_what_to_do():
    config = SACAgentConfig(actor="act", act=ACTActorConfig(width=16, heads=2, feedforward=32, dropout=0.1))
    agents = [ChunkedSACAgent(OBS, ACT, H, config) for _ in range(2)]
    with pytest.raises(ValueError, match="dropout"):
        SeedStack(agents, noise_seeds=[0, 1])


def test_lanes_must_share_one_config():
    a = MAKERS["qc-fql"]()
    b = FQLAgent(OBS, ACT, H, FlowAgentConfig(**{**FLOW, "alpha": 3.0}))
    with pytest.raises(ValueError, match="same config"):
        SeedStack([a, b], noise_seeds=[0, 1])
