"""The carla backend's speed: `drivesim run --world carla` against `drivesim serve` next to
`drivesim run --world embedded`, headless, at the same size, seed and frame count.

    python benchmarks/bench_carla.py [--frames 400] [--seed 3] [--width 512] [--height 256]
                                     [--scenario default]

Starts `drivesim serve` on a free port, then runs both commands as separate processes and reads
the loop fps from their `--summary` files (the loop only: connecting, spawning and numba's first
compilation are not counted; an embedded warm-up run fills numba's cache first). The bar: the
carla backend reaches at least half the embedded fps. With two cores, server and client share
them, as they would on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = re.compile(r"serving .* on \S+:(\d+)")


def free_port() -> int:
    """A free TCP port whose neighbour (the streaming port, P+1) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def start_server(port: int, timeout: float = 120.0) -> subprocess.Popen:
    """`drivesim serve --port P`, once it prints its ready line."""
    proc = subprocess.Popen([sys.executable, "-m", "drivesim_carla.cli", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    for line in proc.stdout:  # type: ignore[union-attr]
        if READY.search(line):
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"drivesim serve did not get ready on port {port}")


def drive(world: str, args: argparse.Namespace, out: Path, port: int | None = None) -> dict:
    summary = out / f"{world}.json"
    cmd = [sys.executable, "-m", "drivesim_carla.cli", "run", "--world", world, "--headless",
           "--quiet", "--frames", str(args.frames), "--seed", str(args.seed), "--scenario",
           args.scenario, "--width", str(args.width), "--height", str(args.height),
           "--summary", str(summary)]
    if port is not None:
        cmd += ["--port", str(port), "--timeout", "30"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed:\n{r.stderr}")
    return json.loads(summary.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--scenario", default="default")
    args = ap.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        warm = argparse.Namespace(**{**vars(args), "frames": 5})
        drive("embedded", warm, out)  # numba's cache, the town cache on disk
        embedded = drive("embedded", args, out)
        port = free_port()
        server = start_server(port)
        try:
            carla = drive("carla", args, out, port)
        finally:
            server.terminate()
            server.wait(timeout=30)
    size = f"{args.height}x{args.width}"
    for name, s in (("embedded", embedded), ("carla", carla)):
        print(f"drivesim run --world {name:8s} {size}  {s['frames']} frames  {s['fps']:6.1f} fps "
              f"(loop)  {s['distance_m']:.0f} m driven, {s['collisions']} collisions")
    ratio = carla["fps"] / max(embedded["fps"], 1e-9)
    print(f"carla / embedded fps: {ratio:.2f} (bar: at least 0.50)")


if __name__ == "__main__":
    main()
