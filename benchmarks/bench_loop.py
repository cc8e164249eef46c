"""Closed-loop speed: `drivesim run --headless` frames/s at 256x512, by render style.

    python benchmarks/bench_loop.py [--frames 400] [--seed 3]

Runs the episode the CLI runs (`episode.assemble`: embedded world, autopilot, synth none) in-process
after a warm-up episode, so numba compilation is not counted. Uses every core it is given.
"""

from __future__ import annotations

import argparse
import os
import time

from drivesim_carla.episode import EpisodeConfig, assemble


def run(style: str, frames: int, seed: int, scenario: str) -> dict:
    config = EpisodeConfig(scenario=scenario, seed=seed, frames=frames, width=512, height=256, style=style)
    t0 = time.perf_counter()
    with assemble(config) as episode:
        result = episode.run()
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
