"""Agents, one package per family (flow, sac, diffusion, ppo); ``registry`` resolves a method name to its agent,
config section and declared needs."""
