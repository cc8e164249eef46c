"""Closed-loop speed: `drivesim run --headless` frames/s at 256x512, by render style.

    python benchmarks/bench_loop.py [--frames 400] [--seed 3]

Runs the same loop as the CLI (embedded world, autopilot, synth none, metrics tap) in-process
after a warm-up episode, so numba compilation is not counted. Uses every core it is given.
"""

from __future__ import annotations

import argparse
import os
import time

from drivesim_carla.agents import make_agent
from drivesim_carla.loop import ClosedLoop
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.synth import load_synthesizer
from drivesim_carla.world import make_world


def run(style: str, frames: int, seed: int, scenario: str) -> dict:
    spec = load_scenario(scenario)
    world = make_world("embedded", spec, seed, cameras=spec.camera_specs(512, 256), style=style)
    loop = ClosedLoop(world, make_agent("autopilot"), load_synthesizer("none"))
    t0 = time.perf_counter()
    result = loop.run(frames, seed=seed)
    result.summary["total_seconds"] = time.perf_counter() - t0
    return result.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--scenario", default="default")
    args = ap.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    run("flat", 5, args.seed, args.scenario)  # warm-up: numba kernels, town cache
    run("textured", 5, args.seed, args.scenario)
    for style in ("flat", "textured"):
        s = run(style, args.frames, args.seed, args.scenario)
        print(f"closed loop  {style:9s} 256x512 rgb+semantic+depth  {s['frames']} frames  "
              f"{s['fps']:6.1f} fps (loop)   reset+loop {s['total_seconds']:.2f} s")


if __name__ == "__main__":
    main()
