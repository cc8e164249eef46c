"""Drive `CarlaWorld` against a server for a few frames, then end as asked; print one JSON line
about the frames (shapes, dtypes, value ranges) before the ending.

    python drive_client.py PORT FRAMES {ok,raise,sigint}

`raise` raises RuntimeError inside the world's `with` block; `sigint` sends this process
SIGINT (Ctrl-C) there. The caller then checks that the server was left as it was.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np

from drivesim_carla.agents import make_agent
from drivesim_carla.agents.base import Observation
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.types import CameraSpec
from drivesim_carla.world import make_world

STREAMS = ("rgb", "semantic", "depth", "instance", "flow")


def road_flow(cam) -> list[float]:
    """Median flow on the road in the image's bottom quarter: (dv, du left half, du right half).
    Driving forward, the road below the horizon streams down and out to both sides."""
    h, w = cam.semantic.shape
    road = cam.semantic == 1
    road[: 3 * h // 4] = False
    left, right = road.copy(), road.copy()
    left[:, w // 2:] = False
    right[:, : w // 2] = False
    return [float(np.median(cam.flow[road][:, 1])), float(np.median(cam.flow[left][:, 0])),
            float(np.median(cam.flow[right][:, 0]))]


def describe(frames: list) -> dict:
    cam = frames[-1].cameras["front"]
    return {
        "frames": [f.frame for f in frames],
        "times": [round(f.time, 6) for f in frames],
        "shapes": {s: list(getattr(cam, s).shape) for s in STREAMS},
        "dtypes": {s: str(getattr(cam, s).dtype) for s in STREAMS},
        "tags": sorted(int(t) for t in np.unique(cam.semantic)),
        "depth": [float(cam.depth.min()), float(cam.depth.max())],
        "flow_max": float(np.abs(cam.flow).max()),
        "instances": int(len(np.unique(cam.instance))),
        "rgb_std": float(cam.rgb.std()),
        "flow_road": road_flow(cam),
        "speed": frames[-1].ego.speed,
        "progress": frames[-1].ego.route_progress,
        "route_length": None,
        "actors": len(frames[-1].actors),
        "lights": len(frames[-1].traffic_lights),
        "events": [e.kind for f in frames for e in f.events],
    }


def main() -> None:
    port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    spec = load_scenario("default")
    cams = [CameraSpec("front", 128, 64, 90.0, streams=STREAMS)]
    agent = make_agent("autopilot")
    with make_world("carla", spec, 2, cameras=cams, port=port, timeout=20.0) as world:
        frames = [world.reset()]
        agent.reset(world.route)
        for _ in range(n):
            control = agent.act(Observation(frames[-1], None, world.route))
            frames.append(world.tick(control))
        info = describe(frames)
        info["route_length"] = world.route.length
        info["spawned"] = [a.id for a in world._actors]
        print(json.dumps(info), flush=True)
        if mode == "raise":
            raise RuntimeError("raised inside the world's with block")
        if mode == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
            world.tick(control)  # the interrupt lands here or earlier


if __name__ == "__main__":
    main()
