"""chunkrl: reinforcement learning with action chunking."""

__version__ = "0.1.0"
