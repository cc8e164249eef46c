"""Step `DriveEnv` on `--world carla` against a server; print one JSON line about what it saw.

    python env_client.py PORT STEPS
"""

from __future__ import annotations

import json
import sys

import numpy as np

from drivesim_carla.env import DriveEnv

port, steps = int(sys.argv[1]), int(sys.argv[2])
env = DriveEnv({"world": "carla", "endpoint": {"port": port, "timeout": 20.0}, "width": 96, "height": 48,
                "frames": steps}, render_mode="rgb_array")
try:
    obs, info = env.reset(seed=2)
    shapes = {k: list(np.shape(v)) for k, v in obs.items()}
    total, ended = 0.0, None
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.5, 0.0], np.float32))
        total += reward
        ended = (bool(terminated), bool(truncated))
    print(json.dumps({"shapes": shapes, "in_space": bool(env.observation_space.contains(obs)), "reward": total,
                      "distance": info["distance_m"], "frames": info["frames"], "ended": ended,
                      "rgb_std": float(env.render().std())}))
finally:
    env.close()
