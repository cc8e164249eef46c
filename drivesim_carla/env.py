"""`DriveEnv`: one drivesim episode as a Gymnasium environment (`drivesim/Drive-v0`).

    import gymnasium as gym
    env = gym.make("drivesim_carla.env:drivesim/Drive-v0", config={"scenario": "default", "width": 256,
                   "height": 128}, render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

The episode is assembled from an `EpisodeConfig` (world, scenario, synthesizer, size, style,
weather, endpoint) exactly as `drivesim run` assembles it, but without an agent: the actions drive.

- Observation (`Dict`): `image`, the primary camera as the agent sees it (`h w 3` uint8,
  synthesized when a synthesizer is set); `speed` (m/s, `(1,)` float32); `command`, the route's
  navigation command ahead (CARLA's RoadOption, an index into `COMMANDS`); with `observe=`
  also `semantic` (`h w` uint8 CARLA tags) and `depth` (`h w` float32 metres).
- Action (`Box`, float32): `(steer, throttle, brake)` in `[-1, 1] x [0, 1] x [0, 1]`.
  `DiscreteActions` turns it into a `Discrete` space over a table of such triples.
- Reward (weights in `RewardConfig`): `progress` per metre of route progress, plus
  `collision`, `lane_invasion` and `off_road` for each such event of the step, plus `step` every
  step. Defaults: 1.0, -50, -5, -10, 0.
- `terminated`: the route is completed, or a collision happened and `end_on_collision` (default);
  `truncated`: the episode reached its frame limit (the config's `frames`, else the scenario's).
- `info`: the run's metrics so far (`route_completion`, `distance_m`, `collisions`,
  `lane_invasions`, `off_road`, `frames`, `sim_seconds`) and the step's `events`.
- `reset(seed=S)` starts the episode `drivesim run --seed S` starts; `reset()` without a seed
  draws one from the environment's own generator (`self.np_random`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .configs import Strict, validate
from .episode import Episode, EpisodeConfig, assemble
from .errors import DrivesimError
from .route import RoadOption
from .types import Control

ENV_ID = "drivesim/Drive-v0"
COMMANDS = tuple(RoadOption)  # the index in `obs["command"]`
EXTRA_STREAMS = ("semantic", "depth")
MAX_SPEED = 100.0  # m/s, the bound of the speed observation
FAR = 1000.0  # m, the depth of the sky (CARLA's far plane)
COMMAND_LOOKAHEAD = 10.0  # m of route ahead whose turn is announced


class RewardConfig(Strict):
    """Reward weights: per metre of route progress, per event, and per step."""

    progress: float = 1.0
    collision: float = -50.0
    lane_invasion: float = -5.0
    off_road: float = -10.0
    step: float = 0.0


class DriveEnv(gym.Env):
    """A drivesim episode, stepped by a Gymnasium agent. See the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: EpisodeConfig | dict | None = None, *, render_mode: str | None = None,
                 reward: RewardConfig | dict | None = None, observe: tuple[str, ...] = (),
                 end_on_collision: bool = True):
        if render_mode not in (None, "rgb_array"):
            raise DrivesimError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        unknown = [s for s in observe if s not in EXTRA_STREAMS]
        if unknown:
            raise DrivesimError(f"observe: unknown stream(s) {', '.join(unknown)}; valid: {', '.join(EXTRA_STREAMS)}")
        config = config if isinstance(config, EpisodeConfig) else EpisodeConfig.from_dict(config or {})
        if any(v is not None for v in (config.outputs.record, config.outputs.video, config.outputs.summary)):
            raise DrivesimError("DriveEnv writes no outputs; drop outputs from its config (record with "
                                "`drivesim record`, or wrap the env in gymnasium's RecordVideo)")
        self.config = config.with_(agent=None, perception=None, window=False)
        self.reward_config = reward if isinstance(reward, RewardConfig) else validate(RewardConfig, reward or {},
                                                                                       "reward")
        self.render_mode = render_mode
        self.observe = tuple(observe)
        self.end_on_collision = end_on_collision
        self.episode: Episode = assemble(self.config, primary_streams=self.observe)
        self.max_frames = self.episode.frames
        self.metadata = {**self.metadata, "render_fps": self.episode.world.fps}
        cam = self.episode.world.cameras[0]
        h, w = cam.height, cam.width
        obs_spaces: dict[str, spaces.Space] = {
            "image": spaces.Box(0, 255, (h, w, 3), np.uint8),
            "speed": spaces.Box(0.0, MAX_SPEED, (1,), np.float32),
            "command": spaces.Discrete(len(COMMANDS)),
        }
        if "semantic" in self.observe:
            obs_spaces["semantic"] = spaces.Box(0, 255, (h, w), np.uint8)
        if "depth" in self.observe:
            obs_spaces["depth"] = spaces.Box(0.0, FAR, (h, w), np.float32)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32),
                                       dtype=np.float32)
        self._progress = 0.0

    @property
    def loop(self):
        return self.episode.loop

    # ----- Gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise DrivesimError(f"DriveEnv.reset takes no options (got {sorted(options)}); "
                                "put episode settings in the env's config")
        world_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        obs = self.loop.reset(world_seed)
        self._progress = obs.frame.ego.route_progress
        return self._observation(obs), self._info([])

    def step(self, action):
        steer, throttle, brake = (float(v) for v in np.asarray(action, np.float32).reshape(3))
        step = self.loop.step(Control(throttle=throttle, steer=steer, brake=brake))
        frame = step.frame
        r = self.reward_config
        progress = frame.ego.route_progress
        reward = r.progress * (progress - self._progress) + r.step
        self._progress = progress
        for event in frame.events:
            reward += getattr(r, event.kind, 0.0)
        collided = any(e.kind == "collision" for e in frame.events)
        terminated = frame.ego.route_completion >= 0.999 or (self.end_on_collision and collided)
        truncated = not terminated and self.loop.steps >= self.max_frames
        return self._observation(self.loop.obs), float(reward), terminated, truncated, self._info(frame.events)

    def render(self):
        if self.render_mode != "rgb_array" or self.loop.obs is None:
            return None
        return self.loop.obs.image

    def close(self) -> None:
        self.episode.close()

    # ----- helpers ------------------------------------------------------------------------------
    def _observation(self, obs) -> dict[str, Any]:
        frame = obs.frame
        out = {
            "image": obs.image,
            "speed": np.array([min(frame.ego.speed, MAX_SPEED)], np.float32),
            "command": COMMANDS.index(obs.route.command_at(frame.ego.route_progress, COMMAND_LOOKAHEAD)),
        }
        cam = frame.camera
        if "semantic" in self.observe:
            out["semantic"] = cam.semantic
        if "depth" in self.observe:
            out["depth"] = np.minimum(cam.depth, FAR)
        return out

    def _info(self, events) -> dict[str, Any]:
        m = self.loop.metrics
        return {"route_completion": m.route_completion, "distance_m": m.distance,
                "collisions": m.events["collision"], "lane_invasions": m.events["lane_invasion"],
                "off_road": m.events["off_road"], "frames": m.frames, "sim_seconds": m.sim_seconds,
                "events": [e.kind for e in events]}


class DiscreteActions(gym.ActionWrapper):
    """A `Discrete` action space over a table of `(steer, throttle, brake)` triples. The default
    table: coast, accelerate, brake, and accelerate while steering half and fully left and right."""

    TABLE = ((0.0, 0.0, 0.0), (0.0, 0.6, 0.0), (0.0, 0.0, 1.0), (-0.5, 0.4, 0.0), (0.5, 0.4, 0.0),
             (-1.0, 0.3, 0.0), (1.0, 0.3, 0.0))

    def __init__(self, env: gym.Env, table: tuple[tuple[float, float, float], ...] = TABLE):
        super().__init__(env)
        self.table = np.asarray(table, np.float32).reshape(-1, 3)
        if not env.action_space.contains(self.table.min(0)) or not env.action_space.contains(self.table.max(0)):
            raise DrivesimError("DiscreteActions: every triple must lie in the env's action space")
        self.action_space = spaces.Discrete(len(self.table))

    def action(self, action) -> np.ndarray:
        return self.table[int(action)]


def register() -> None:
    """Register `drivesim/Drive-v0` with Gymnasium (done when this module is imported)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="drivesim_carla.env:DriveEnv")


register()
