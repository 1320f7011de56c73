"""Chunk-level PPO for tokenized (FAST-style) or Gaussian chunk policies, and its imitation pre-training."""
