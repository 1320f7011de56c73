"""QC / BFN-n / BFN: best-of-N selection, the TD target's selection rules, BC-only actor."""

import numpy as np
import pytest
import torch
from torch import nn

from chunkrl.agents.flow import best_of_n
from chunkrl.agents.flow.best_of_n import BestOfNAgent
from chunkrl.agents.flow.config import FlowAgentConfig
from tests.agents.test_fql import ACT, OBS, H, batch


def config(**overrides):
    base = dict(actor_hidden_dims=(32, 32), critic_hidden_dims=(32, 32), flow_steps=3, num_samples=8)
    return FlowAgentConfig(**{**base, **overrides})


class DistanceCritic(nn.Module):
    """A known critic: Q_e(s, a) = -||a - goal||^2 + e (two members)."""

    def __init__(self, goal):
        super().__init__()
        self.goal = goal

    def forward(self, observations, actions):
        q = -(actions - self.goal).square().sum(-1)
        return torch.stack([q, q + 1.0])


def test_select_best_picks_the_argmax_of_the_critic_for_each_state():
    agent = BestOfNAgent(OBS, ACT, H, config(num_samples=4))
    goal = torch.full((H * ACT,), 0.5)
    candidates = torch.stack([torch.full((H * ACT,), v) for v in (0.0, 0.4, 0.9, -1.0, 0.6, 0.45, 0.1, 1.0)])
    agent.candidates = lambda observations: (observations.repeat_interleave(4, dim=0), candidates)
    chosen, scores = agent.select_best(DistanceCritic(goal), torch.zeros(2, OBS))  # two states, four candidates each
    torch.testing.assert_close(chosen, torch.stack([candidates[1], candidates[5]]))  # 0.4 and 0.45 are closest
    expected = torch.tensor([-(0.1**2) * H * ACT, -(0.05**2) * H * ACT]) + 0.5  # mean over the two members
    torch.testing.assert_close(scores, expected)


CANDIDATE_LEVELS = (0.0, 0.4, 0.9, -1.0, 0.6, 0.45, 0.1, 1.0)  # two states, four candidates each


def agent_with_disagreeing_critics(selection):
    """An agent whose online critic prefers chunks near 0.5 and whose target critic prefers chunks near
    -1, with the N candidates at s' fixed to CANDIDATE_LEVELS."""
    agent = BestOfNAgent(OBS, ACT, H, config(num_samples=4, target_selection=selection))
    agent.critic = DistanceCritic(torch.full((H * ACT,), 0.5))
    agent.target_critic = DistanceCritic(torch.full((H * ACT,), -1.0))
    candidates = torch.stack([torch.full((H * ACT,), v) for v in CANDIDATE_LEVELS])
    agent.candidates = lambda observations: (observations.repeat_interleave(4, dim=0), candidates)
    return agent


def test_the_target_scores_with_the_target_critic_the_chunk_the_online_critic_picks():
    agent = agent_with_disagreeing_critics("critic")
    values = agent.next_values(torch.zeros(2, OBS))
    # the online critic picks 0.4 and 0.45 (closest to 0.5); the target critic values them:
    # mean over its members of -(level + 1)^2 * D and that + 1
    d = H * ACT
    torch.testing.assert_close(values, torch.tensor([-(1.4**2) * d + 0.5, -(1.45**2) * d + 0.5]))


def test_the_target_critic_rule_picks_and_scores_with_the_target_critic():
    agent = agent_with_disagreeing_critics("target_critic")
    values = agent.next_values(torch.zeros(2, OBS))
    # the target critic's own best: -1.0 in the first state (distance 0), 0.1 in the second (1.1 away)
    torch.testing.assert_close(values, torch.tensor([0.5, -(1.1**2) * H * ACT + 0.5]))


def test_an_unknown_target_selection_is_rejected():
    with pytest.raises(ValueError, match="target_selection"):
        BestOfNAgent(OBS, ACT, H, config(target_selection="both"))


def test_candidates_are_one_batched_flow_pass_over_n_times_the_batch():
    agent = BestOfNAgent(OBS, ACT, H, config(num_samples=8))
    calls = []
    agent.flow.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    agent.candidates(torch.zeros(3, OBS))
    assert calls == [24] * agent.config.flow_steps


@pytest.mark.parametrize("chunking", [True, False])
def test_act_returns_chunks_within_bounds(chunking):
    agent = BestOfNAgent(OBS, ACT, H, config(action_chunking=chunking))
    chunk = agent.act(np.zeros(OBS, np.float32))
    assert chunk.shape == ((H, ACT) if chunking else (1, ACT))
    assert np.abs(chunk).max() <= 1.0


def test_the_actor_loss_is_behaviour_cloning_only_and_training_reduces_it():
    torch.manual_seed(0)
    agent = BestOfNAgent(OBS, ACT, H, config())
    b = batch(size=64)
    first = agent.update(b)
    for _ in range(100):
        last = agent.update(b)
    assert set(first) == {
        "critic/loss",
        "critic/q_mean",
        "critic/target_mean",
        "actor/loss",
        "actor/bc_flow_loss",
        "loss/total",
    }
    assert last["actor/bc_flow_loss"] < first["actor/bc_flow_loss"]
    assert last["critic/loss"] < first["critic/loss"]


def test_zero_samples_is_rejected():
    with pytest.raises(ValueError, match="num_samples"):
        BestOfNAgent(OBS, ACT, H, config(num_samples=0))


def test_cpu_blocks_choose_exactly_what_one_pass_chooses(monkeypatch):
    """Scoring the candidates in blocks of observations (the CPU path) changes nothing but speed."""
    agent = BestOfNAgent(OBS, ACT, H, config(num_samples=4))
    observations = torch.randn(10, OBS)
    noise = torch.randn(40, H * ACT)  # fixed candidates, looked up by the observation they belong to

    def fixed_candidates(obs):
        rows = torch.cat([torch.nonzero((observations == o).all(1))[0] for o in obs])
        index = (rows[:, None] * 4 + torch.arange(4)).flatten()
        return obs.repeat_interleave(4, dim=0), agent.flow_actions(obs.repeat_interleave(4, dim=0), noise[index])

    agent.candidates = fixed_candidates
    with torch.no_grad():
        whole = agent._select_best(agent.critic, observations)
        monkeypatch.setattr(best_of_n, "CPU_CANDIDATE_ROWS", 12)  # blocks of 3 observations: 3 + 3 + 3 + 1
        assert agent.block_size == 3
        blocked = agent.select_best(agent.critic, observations)
    torch.testing.assert_close(blocked[0], whole[0])
    torch.testing.assert_close(blocked[1], whole[1])
