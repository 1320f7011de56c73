"""The ALOHA bimanual simulator (the ``gym-aloha`` package's MuJoCo tasks) as gymnasium environments.

Tasks: ``aloha-transfer-cube`` (the right arm picks up a cube and hands it to the left arm) and
``aloha-insertion`` (each arm picks up one part; the peg goes into the socket). Both have the staged
reward of the ACT paper, 0 to 4 at every step (transfer-cube: 1 right gripper touches the cube,
2 lifted, 3 left gripper touches it, 4 handed over in the air), and an episode succeeds, and ends,
when the reward reaches 4. Episodes are cut at ``max_episode_steps`` (400, the ACT paper's length).
With ``hold_success`` the step that succeeds also pays 4 for every step left (the reward of holding the
success to the time limit), so that a success is worth more to RL than any failure.
Actions: 14 absolute joint targets (per arm 6 joints and a gripper opening in [0, 1]), at 50 Hz.

Observation modes:
- ``state`` (default): a flat vector, rendered never, so that learning runs on a CPU:
  ``[qpos (14), qvel (14), object pose (7 per object: position, quaternion)]`` = 35 numbers for
  transfer-cube, 42 for insertion (``STATE_LAYOUT``), or the parts chosen with ``state_parts`` (the
  run's ``--state-keys``), e.g. ``qpos objects`` as ACT, whose policies read joint positions, not
  velocities;
- ``pixels``: a dict with the ``top`` camera image (``height`` x ``width`` x 3, uint8) and ``state``
  (the vector above). gym-aloha renders three cameras every step; this mode renders only the cameras
  asked for. Rendering needs OpenGL: headless machines use ``MUJOCO_GL=egl`` (set by default when no
  display is found) or ``MUJOCO_GL=osmesa``.

The object pose of each episode comes from the environment's own generator (seeded by ``reset``), not
from gym-aloha's module-level ``BOX_POSE``, so that several environments live in one process.
"""

from __future__ import annotations

import os

import gymnasium
import numpy as np
from gymnasium import spaces

TASKS = {"aloha-transfer-cube": "transfer_cube", "aloha-insertion": "insertion"}
MAX_EPISODE_STEPS = 400
SUCCESS_REWARD = 4.0
OBJECTS = {"transfer_cube": 1, "insertion": 2}
STATE_LAYOUT = {"qpos": slice(0, 14), "qvel": slice(14, 28), "objects": slice(28, None)}
"""Where each part of the full state vector lies (objects: 7 numbers per object, position then quaternion)."""
STATE_PARTS = tuple(STATE_LAYOUT)
"""The parts of the state, in the full vector's order."""


def state_columns(parts: tuple[str, ...], state_dim: int) -> np.ndarray:
    """Indices of the full state vector (``state_dim`` numbers) that make up ``parts``, in their order: how a
    dataset of full states is cut to the observation of an environment made with ``state_parts=parts``."""
    unknown = [p for p in parts if p not in STATE_LAYOUT]
    if unknown or len(set(parts)) != len(parts) or not parts:
        raise ValueError(
            f"ALOHA state parts {list(parts)}: choose one or more of {', '.join(STATE_PARTS)}, each once "
            "(e.g. --state-keys qpos objects: joint positions and object poses, without velocities)"
        )
    return np.concatenate([np.arange(state_dim)[STATE_LAYOUT[p]] for p in parts])


MOCAP_WELD_SOLIMP = (0.9, 0.95, 0.001)
"""Impedance of the welds that pull the grippers to their mocap targets in the end-effector tasks.

gym-aloha's models give them ``solimp=".25 .25 0.001"``, tuned for the MuJoCo 2.x the ACT scripts were written
for. On MuJoCo 3.x that weld is too weak against the arms' joint friction (frictionloss 30-60): the gripper
lags several centimetres behind its target and about four grasps in five miss. MuJoCo's default impedance
(used here) keeps the gripper within millimetres of the target."""
INSTALL_HINT = 'The ALOHA tasks need the aloha extra: pip install -e ".[aloha]" (or pip install "chunkrl[aloha]").'


def _import_aloha():
    if os.environ.get("MUJOCO_GL") is None and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless: EGL rendering (set before dm_control is imported)
    try:
        from dm_control import mujoco
        from dm_control.rl import control
        from gym_aloha import constants
        from gym_aloha.tasks import sim, sim_end_effector
    except ImportError as error:
        raise RuntimeError(f"{INSTALL_HINT} ({error})") from None
    return mujoco, control, constants, sim, sim_end_effector


def sample_object_poses(task: str, rng: np.random.Generator) -> np.ndarray:
    """Initial object poses (7 numbers each), in the ranges of the ACT paper's scripted data."""
    if task == "transfer_cube":
        position = rng.uniform([0.0, 0.4, 0.05], [0.2, 0.6, 0.05])
        return np.concatenate([position, [1.0, 0.0, 0.0, 0.0]])
    peg = rng.uniform([0.1, 0.4, 0.05], [0.2, 0.6, 0.05])
    socket = rng.uniform([-0.2, 0.4, 0.05], [-0.1, 0.6, 0.05])
    return np.concatenate([peg, [1.0, 0.0, 0.0, 0.0], socket, [1.0, 0.0, 0.0, 0.0]])


def _task_class(task: str, end_effector: bool):
    """gym-aloha's task class, with the object pose set per environment and rendering on request."""
    _, _, _, sim, sim_ee = _import_aloha()
    if end_effector:
        base = {"transfer_cube": sim_ee.TransferCubeEndEffectorTask, "insertion": sim_ee.InsertionEndEffectorTask}[task]
    else:
        base = {"transfer_cube": sim.TransferCubeTask, "insertion": sim.InsertionTask}[task]

    class Task(base):
        object_poses: np.ndarray | None = None
        cameras: tuple[str, ...] = ()
        image_size: tuple[int, int] = (480, 640)

        def initialize_episode(self, physics):
            # dm_control calls this inside ``physics.reset_context()`` (which resets the data on entry): no
            # nested context here, or it would wipe the arm pose just set.
            if end_effector:
                self.initialize_robots(physics)
                align_mocap_targets(physics)
            else:
                physics.named.data.qpos[:16] = sim.START_ARM_POSE
                np.copyto(physics.data.ctrl, sim.START_ARM_POSE)
            physics.data.qpos[16 : 16 + len(self.object_poses)] = self.object_poses
            super(base, self).initialize_episode(physics)  # dm_control's base: skips gym-aloha's global pose

        def get_observation(self, physics):
            observation = {
                "qpos": self.get_qpos(physics),
                "qvel": self.get_qvel(physics),
                "env_state": physics.data.qpos[16:].copy(),
            }
            if end_effector:
                observation["mocap_pose_left"] = np.concatenate([physics.data.mocap_pos[0], physics.data.mocap_quat[0]])
                observation["mocap_pose_right"] = np.concatenate(
                    [physics.data.mocap_pos[1], physics.data.mocap_quat[1]]
                )
                observation["gripper_ctrl"] = physics.data.ctrl.copy()
            observation["images"] = {c: render(physics, c, *self.image_size) for c in self.cameras}
            return observation

    return Task


def align_mocap_targets(physics) -> None:
    """Put each mocap target where its weld already holds the gripper in the start pose.

    gym-aloha sets the targets to fixed numbers that assume the weld joins mocap and gripper at no offset; on
    MuJoCo 3.x the weld keeps the offset the two bodies have in the model's reference pose (``eq_data``'s
    relative pose, 13.5 cm along the gripper), so the first step yanked each arm towards its target: the
    demonstrations' first joint targets were a jump no policy could imitate from the start state."""
    import mujoco

    model, data = physics.model.ptr, physics.data.ptr
    mujoco.mj_kinematics(model, data)
    for weld in np.flatnonzero(physics.model.eq_type == mujoco.mjtEq.mjEQ_WELD):
        mocap = physics.model.body_mocapid[physics.model.eq_obj1id[weld]]
        gripper = physics.model.eq_obj2id[weld]
        offset, relative = physics.model.eq_data[weld, 3:6], physics.model.eq_data[weld, 6:10]
        inverse, quat, position = np.empty(4), np.empty(4), np.empty(3)
        mujoco.mju_negQuat(inverse, relative)
        mujoco.mju_mulQuat(quat, physics.data.xquat[gripper], inverse)  # gripper = mocap * relative
        mujoco.mju_rotVecQuat(position, offset, quat)  # gripper position = mocap + R(mocap) offset
        physics.data.mocap_quat[mocap] = quat
        physics.data.mocap_pos[mocap] = physics.data.xpos[gripper] - position


def render(physics, camera: str, height: int, width: int) -> np.ndarray:
    """One camera image; an OpenGL failure becomes an error that says how to fix it."""
    try:
        return physics.render(height=height, width=width, camera_id=camera)
    except Exception as error:  # dm_control raises several kinds (FatalError, AttributeError, GLFWError)
        raise RuntimeError(
            f"rendering the ALOHA camera '{camera}' failed ({type(error).__name__}: {error}). Pixel observations need "
            "OpenGL: on a headless machine set MUJOCO_GL=egl (with libegl1) or MUJOCO_GL=osmesa (with libosmesa6), "
            "or use the state mode (--obs-mode state), which never renders."
        ) from None


class AlohaEnv(gymnasium.Env):
    """An ALOHA task; ``obs_mode`` ``state`` or ``pixels``; ``end_effector=True`` is the mocap-driven
    version used by the scripted demonstrations (actions: per arm xyz, quaternion, gripper)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        name: str = "aloha-transfer-cube",
        obs_mode: str = "state",
        max_episode_steps: int = MAX_EPISODE_STEPS,
        cameras: tuple[str, ...] = ("top",),
        image_size: tuple[int, int] = (480, 640),
        end_effector: bool = False,
        state_parts: tuple[str, ...] = STATE_PARTS,
        hold_success: bool = False,
    ):
        if name not in TASKS:
            raise ValueError(f"unknown ALOHA task '{name}'; available: {', '.join(TASKS)}")
        if obs_mode not in ("state", "pixels"):
            raise ValueError(f"obs_mode must be 'state' or 'pixels' (got '{obs_mode}')")
        mujoco, control, constants, _, _ = _import_aloha()
        self.name, self.task, self.obs_mode = name, TASKS[name], obs_mode
        self.max_episode_steps, self.end_effector = max_episode_steps, end_effector
        self.hold_success = hold_success
        prefix = "bimanual_viperx_end_effector_" if end_effector else "bimanual_viperx_"
        physics = mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / f"{prefix}{self.task}.xml"))
        if end_effector:
            physics.model.eq_solimp[:, :3] = MOCAP_WELD_SOLIMP
        task = _task_class(self.task, end_effector)()
        task.cameras = tuple(cameras) if obs_mode == "pixels" else ()
        task.image_size = image_size
        self._task = task
        self._env = control.Environment(
            physics, task, float("inf"), control_timestep=constants.DT, n_sub_steps=None, flat_observation=False
        )
        self.physics = physics
        self.state_columns = state_columns(tuple(state_parts), 28 + 7 * OBJECTS[self.task])
        state_space = spaces.Box(-np.inf, np.inf, (len(self.state_columns),), np.float32)
        if obs_mode == "state":
            self.observation_space = state_space
        else:
            images = {c: spaces.Box(0, 255, (*image_size, 3), np.uint8) for c in task.cameras}
            self.observation_space = spaces.Dict({**images, "state": state_space})
        if end_effector:
            self.action_space = spaces.Box(-np.inf, np.inf, (16,), np.float32)
        else:  # joint limits of each arm (the actuators' control ranges); gripper openings in [0, 1]
            arm = physics.model.actuator_ctrlrange[:6]
            low = np.concatenate([arm[:, 0], [0.0], arm[:, 0], [0.0]])
            high = np.concatenate([arm[:, 1], [1.0], arm[:, 1], [1.0]])
            self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self._physics_error = control.PhysicsError if hasattr(control, "PhysicsError") else mujoco.PhysicsError
        self._rng = np.random.default_rng()
        self._steps = 0
        self.raw_observation: dict = {}

    def _observation(self, raw: dict):
        self.raw_observation = raw
        state = np.concatenate([raw["qpos"], raw["qvel"], raw["env_state"]]).astype(np.float32)[self.state_columns]
        if self.obs_mode == "state":
            return state
        return {**raw["images"], "state": state}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        poses = (options or {}).get("object_poses")
        self._task.object_poses = (
            np.asarray(poses, dtype=np.float64) if poses is not None else sample_object_poses(self.task, self._rng)
        )
        self._steps = 0
        step = self._env.reset()
        return self._observation(step.observation), {"success": False, "object_poses": self._task.object_poses.copy()}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if not self.end_effector:
            action = np.clip(action, self.action_space.low, self.action_space.high)
        self._steps += 1
        try:
            step = self._env.step(action)
        except self._physics_error as error:
            # a wild action made the simulation diverge: the episode ends here as a failure, and its state is no
            # state to bootstrap a value from (terminal, not a time-limit truncation)
            observation = self._observation(self._task.get_observation(self.physics))
            return observation, 0.0, True, False, {"success": False, "diverged": True, "physics_error": str(error)}
        reward = float(step.reward)
        success = reward >= SUCCESS_REWARD
        truncated = not success and self._steps >= self.max_episode_steps
        if success and self.hold_success:  # the reward of holding the success until the time limit
            reward += SUCCESS_REWARD * max(self.max_episode_steps - self._steps, 0)
        info = {"success": success, "diverged": False}
        return self._observation(step.observation), reward, success, truncated, info

    def render(self):
        return render(self.physics, "top", *self._task.image_size)
