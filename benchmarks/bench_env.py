"""What the Gymnasium environment costs: `DriveEnv` steps/s against `drivesim run`'s loop fps on
the same scenario and size, and 1 vs 2 `AsyncVectorEnv` worker processes.

    python benchmarks/bench_env.py [--frames 300] [--size 256x512] [--scenario default] [--seed 3]

1. `drivesim run`: the episode the CLI assembles (embedded world, autopilot), loop fps.
2. `DriveEnv`: the same episode stepped through `env.step`, with the autopilot's actions computed
   from the env's loop (so both pay for the same agent); steps/s over the stepping.
   Both alternate twice and the best of each is kept (the machine is shared).
3. `AsyncVectorEnv` with 1 and 2 workers, constant throttle: total env steps/s.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

from drivesim_carla.agents.autopilot import Autopilot
from drivesim_carla.env import DriveEnv
from drivesim_carla.episode import EpisodeConfig, assemble


def loop_fps(config: dict, frames: int, seed: int) -> float:
    with assemble(EpisodeConfig(**config, seed=seed, frames=frames)) as episode:
        return episode.run().summary["fps"]


def env_fps(env: DriveEnv, frames: int, seed: int) -> float:
    pilot = Autopilot(target_speed=env.episode.scenario.ego.target_speed)
    env.reset(seed=seed)
    pilot.reset(env.loop.obs.route)
    t0 = time.perf_counter()
    for _ in range(frames):
        c = pilot.act(env.loop.obs)
        env.step(np.array([c.steer, c.throttle, c.brake], np.float32))
    return frames / (time.perf_counter() - t0)


def vector_fps(config: dict, workers: int, frames: int, seed: int) -> float:
    vec = gym.vector.AsyncVectorEnv([lambda: DriveEnv({**config, "frames": frames + 10}) for _ in range(workers)])
    try:
        vec.reset(seed=[seed + i for i in range(workers)])
        action = np.tile(np.array([0.0, 0.3, 0.0], np.float32), (workers, 1))
        for _ in range(5):  # warm-up in each process
            vec.step(action)
        t0 = time.perf_counter()
        for _ in range(frames):
            vec.step(action)
        return workers * frames / (time.perf_counter() - t0)
    finally:
        vec.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="256x512", help="HxW")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    config = {"scenario": args.scenario, "width": w, "height": h}
    print(f"cores available: {len(os.sched_getaffinity(0))}; {args.scenario} at {w}x{h}, {args.frames} frames")
    loop_fps(config, 5, args.seed)  # warm-up: numba kernels, town cache
    env = DriveEnv({**config, "frames": args.frames + 10})
    try:
        runs, envs = [], []
        for _ in range(2):
            runs.append(loop_fps(config, args.frames, args.seed))
            envs.append(env_fps(env, args.frames, args.seed))
    finally:
        env.close()
    run, stepped = max(runs), max(envs)
    print(f"drivesim run (episode.run)      {run:7.1f} fps   (runs: {', '.join(f'{v:.1f}' for v in runs)})")
    print(f"DriveEnv.step, same actions     {stepped:7.1f} steps/s (runs: {', '.join(f'{v:.1f}' for v in envs)})")
    print(f"env cost                        {100 * (run / stepped - 1):+6.1f} % of the loop's time per frame")
    one = vector_fps(config, 1, args.frames, args.seed)
    two = vector_fps(config, 2, args.frames, args.seed)
    print(f"AsyncVectorEnv, 1 worker        {one:7.1f} steps/s")
    print(f"AsyncVectorEnv, 2 workers       {two:7.1f} steps/s  ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
