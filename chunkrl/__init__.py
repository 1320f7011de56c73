"""chunkrl: reinforcement learning with action chunking."""

import os

if "DISPLAY" not in os.environ:
    # Headless machines: let MuJoCo pick EGL instead of failing over to GLFW with an X11 warning.
    os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Policy":  # imported on first use: `import chunkrl` stays light
        from chunkrl.policy import Policy

        return Policy
    raise AttributeError(f"module 'chunkrl' has no attribute {name!r}")
