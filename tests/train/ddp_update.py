"""Run by tests/train/test_distributed.py under torchrun: DDP updates of chunk PPO on 2 ranks, the actor's rate
adapted (desired_kl) from the ranks' mean KL between them."""

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
config = ChunkPPOConfig(width=16, layers=1, heads=2, hidden_dims=(16,), desired_kl=1e-3, target_kl=None)
agent = ChunkPPOAgent(3, 2, 2, config, tokenizer=tokenizer)
agent.distribute()
observations = torch.randn(8, 3)  # each rank its own batch (seeded apart)
encoded, log_pi, values, _ = agent.collect(observations)
batch = RolloutBatch(observations, encoded, log_pi, values, torch.randn(8), torch.randn(8))
before = torch.nn.utils.parameters_to_vector(agent.parameters()).detach().clone()
kls = []
for _ in range(3):  # as the on-policy loop does: each rank's own KL, their mean for the rule
    kls.append(float(agent.update(batch)["ppo/approx_kl"]))
    agent.adapt_learning_rate(distributed.mean(kls[-1]))
after = torch.nn.utils.parameters_to_vector(agent.parameters()).detach()
local = torch.tensor([agent.optimizer.param_groups[0]["lr"], kls[-1]], dtype=torch.float64)
both = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
dist.all_gather(both, local)
distributed.settle(local, *both)  # before exit: the workers let go of them
rates, local_kls = [float(b[0]) for b in both], [float(b[1]) for b in both]
mean_of_ranks = distributed.mean(float(rank + 1))  # 1 and 2: 1.5 on both
gathered = [torch.zeros_like(after) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, after)
distributed.settle(after, *gathered)  # before exit: the workers let go of them
starts = [torch.zeros_like(before) for _ in range(dist.get_world_size())]
dist.all_gather(starts, before)
distributed.settle(before, *starts)  # before exit: the workers let go of them
if rank == 0:
    same_start = all(torch.equal(starts[0], s) for s in starts)
    same_after = all(torch.equal(gathered[0], g) for g in gathered)
    moved = not torch.equal(starts[0], gathered[0])
    print(f"same_start={same_start} same_after={same_after} moved={moved}")
    print(f"same_rate={rates[0] == rates[1]} kls_differ={local_kls[0] != local_kls[1]} mean={mean_of_ranks}")
    sys.stdout.flush()
del agent  # as a run ends
distributed.finish()
