"""Run by tests/train/test_distributed.py under torchrun: one DDP update of chunk PPO on 2 ranks."""

import sys

import numpy as np
import torch
import torch.distributed as dist

from chunkrl.agents.ppo.config import ChunkPPOConfig
from chunkrl.agents.ppo.ppo import ChunkPPOAgent
from chunkrl.data.rollouts import RolloutBatch
from chunkrl.nets.tokenizer import ChunkTokenizer
from chunkrl.train import distributed

rank = distributed.init()
torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
tokenizer = ChunkTokenizer(2, 2, -np.ones(2), np.ones(2), scale=2.0)
agent = ChunkPPOAgent(3, 2, 2, ChunkPPOConfig(width=16, layers=1, heads=2, hidden_dims=(16,)), tokenizer=tokenizer)
agent.distribute()
observations = torch.randn(8, 3)  # each rank its own batch (seeded apart)
encoded, log_pi, values, _ = agent.collect(observations)
batch = RolloutBatch(observations, encoded, log_pi, values, torch.randn(8), torch.randn(8))
before = torch.nn.utils.parameters_to_vector(agent.parameters()).detach().clone()
agent.update(batch)
after = torch.nn.utils.parameters_to_vector(agent.parameters()).detach()
gathered = [torch.zeros_like(after) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, after)
starts = [torch.zeros_like(before) for _ in range(dist.get_world_size())]
dist.all_gather(starts, before)
if rank == 0:
    same_start = all(torch.equal(starts[0], s) for s in starts)
    same_after = all(torch.equal(gathered[0], g) for g in gathered)
    moved = not torch.equal(starts[0], gathered[0])
    print(f"same_start={same_start} same_after={same_after} moved={moved}")
    sys.stdout.flush()
distributed.finish()
