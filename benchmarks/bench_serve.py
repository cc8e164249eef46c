"""`drivesim serve` speed: a synchronous CARLA client at 256x512 with rgb+semantic+depth, and
`drivesim run` through the server (`--world carla`) against the embedded world in process.

    python benchmarks/bench_serve.py [--frames 300] [--seed 0] [--style flat]

Starts `drivesim serve` in its own process (the `carla` client holds the GIL). The client part
runs here: synchronous mode, one vehicle, three cameras, each tick waits for all three images
and copies them out of the client's buffers as a recorder would.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAMERAS = ("rgb", "semantic_segmentation", "depth")


def start_server(seed: int, style: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "drivesim_carla.cli", "serve", "--port", "0",
                             "--seed", str(seed), "--style", style], stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    return proc, int(line.split(" on ")[1].split(":")[1].split()[0])


def client_fps(port: int, frames: int, width: int = 512, height: int = 256) -> float:
    """Ticks per second of a synchronous client that receives every camera's image."""
    import carla

    client = carla.Client("127.0.0.1", port)
    client.set_timeout(20.0)
    world = client.get_world()
    settings = world.get_settings()
    settings.synchronous_mode, settings.fixed_delta_seconds = True, 0.05
    world.apply_settings(settings)
    library = world.get_blueprint_library()
    vehicle = world.spawn_actor(library.find("vehicle.tesla.model3"),
                                world.get_map().get_spawn_points()[0])
    queues, sensors = [], []
    for kind in CAMERAS:
        bp = library.find(f"sensor.camera.{kind}")
        bp.set_attribute("image_size_x", str(width))
        bp.set_attribute("image_size_y", str(height))
        sensors.append(world.spawn_actor(bp, carla.Transform(carla.Location(x=1.5, z=1.7)),
                                         attach_to=vehicle))
        queues.append(queue.Queue())
        sensors[-1].listen(queues[-1].put)

    def tick() -> None:
        vehicle.apply_control(carla.VehicleControl(throttle=0.4))
        frame = world.tick()
        for q in queues:
            image = q.get(timeout=20.0)
            assert image.frame == frame
            np.frombuffer(image.raw_data, np.uint8).copy()

    for _ in range(20):
        tick()
    t0 = time.perf_counter()
    for _ in range(frames):
        tick()
    fps = frames / (time.perf_counter() - t0)
    for s in sensors:
        s.stop()
        s.destroy()
    vehicle.destroy()
    settings.synchronous_mode, settings.fixed_delta_seconds = False, None
    world.apply_settings(settings)
    return fps


def run_fps(frames: int, seed: int, style: str, *extra: str) -> float:
    """fps from the summary of `drivesim run --headless` (after a short warm-up run)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "s.json"
        base = [sys.executable, "-m", "drivesim_carla.cli", "run", "--headless", "--quiet",
                "--seed", str(seed), "--style", style, "--width", "512", "--height", "256",
                "--summary", str(summary), *extra]
        subprocess.run([*base, "--frames", "10"], check=True, capture_output=True)
        subprocess.run([*base, "--frames", str(frames)], check=True, capture_output=True)
        return json.loads(summary.read_text())["fps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--style", default="flat")
    args = ap.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    proc, port = start_server(args.seed, args.style)
    try:
        fps = client_fps(port, args.frames)
        print(f"synchronous carla client, 256x512 rgb+semantic+depth ({args.style})  {fps:6.1f} fps")
        served = run_fps(args.frames, args.seed, args.style, "--world", "carla", "--port", str(port))
    finally:
        proc.terminate()
        proc.wait()
    embedded = run_fps(args.frames, args.seed, args.style, "--world", "embedded")
    print(f"drivesim run --world carla (drivesim serve)       {served:6.1f} fps")
    print(f"drivesim run --world embedded                      {embedded:6.1f} fps")
    print(f"ratio served / embedded                             {served / embedded:6.2f}")


if __name__ == "__main__":
    main()
