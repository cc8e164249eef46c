"""Recording speed and size: our HDF5 writer against one PNG per stream per frame.

    python benchmarks/bench_record.py [--frames 1000] [--style flat] [--clips 200] [--loop-frames 300]

1. Writer: the same `--frames` frames at 256x512 (rgb, semantic, depth, rendered by the embedded
   world while the autopilot drives) go through `Recorder` (its own thread, Zstandard) and through
   `cv2.imwrite` (8-bit RGB PNG, 8-bit label PNG, 16-bit depth PNG in centimetres), timed from the
   first frame handed over until the last byte is written and the file closed.
2. Reads: random 8-frame clips (rgb, semantic, depth) from the session against the PNG folder.
3. Loop cost: `drivesim run --headless --frames N` with and without `--record` (whole command
   wall time and loop fps, best of 5 alternating runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from drivesim_carla.agents import make_agent
from drivesim_carla.loop import ClosedLoop
from drivesim_carla.recorders import Recorder
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.synth import load_synthesizer
from drivesim_carla.taps import RunInfo, Step
from drivesim_carla.world import make_world


class Keep:
    def __init__(self):
        self.steps: list[Step] = []
        self.info: RunInfo | None = None

    def on_reset(self, info):
        self.info = info

    def on_step(self, step):
        self.steps.append(step)

    def on_close(self):
        pass


def render(frames: int, style: str, seed: int) -> Keep:
    spec = load_scenario("default")
    world = make_world("embedded", spec, seed, cameras=spec.camera_specs(512, 256), style=style)
    keep = Keep()
    ClosedLoop(world, make_agent("autopilot"), load_synthesizer("none"), taps=[keep]).run(
        frames, seed=seed, info={"scenario_text": spec.to_yaml()})
    return keep


def write_h5(keep: Keep, path: Path, codec: str) -> float:
    rec = Recorder(path, codec=codec)
    rec.on_reset(keep.info)
    t0 = time.perf_counter()
    for step in keep.steps:
        rec.on_step(step)
    rec.on_close()
    return time.perf_counter() - t0


def write_png(keep: Keep, folder: Path) -> float:
    folder.mkdir()
    t0 = time.perf_counter()
    for i, step in enumerate(keep.steps):
        cam = step.frame.camera
        cv2.imwrite(str(folder / f"{i:06d}_rgb.png"), cam.rgb[..., ::-1])
        cv2.imwrite(str(folder / f"{i:06d}_semantic.png"), cam.semantic)
        cv2.imwrite(str(folder / f"{i:06d}_depth.png"), np.clip(cam.depth * 100.0, 0, 65535).astype(np.uint16))
    return time.perf_counter() - t0


def read_clips(starts: np.ndarray, h5: Path, png: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    with h5py.File(h5, "r") as f:
        g = f["cameras/front"]
        for s in starts:
            _ = g["rgb"][s:s + 8], g["semantic"][s:s + 8], g["depth"][s:s + 8].astype(np.float32)
    t_h5 = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in starts:
        for i in range(s, s + 8):
            _ = (cv2.imread(str(png / f"{i:06d}_rgb.png"))[..., ::-1],
                 cv2.imread(str(png / f"{i:06d}_semantic.png"), cv2.IMREAD_UNCHANGED),
                 cv2.imread(str(png / f"{i:06d}_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 100.0)
    return t_h5, time.perf_counter() - t0


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def loop_cost(frames: int, seed: int, tmp: Path) -> None:
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    base = [sys.executable, "-m", "drivesim_carla.cli", "run", "--headless", "--quiet", "--frames", str(frames),
            "--seed", str(seed)]
    results: dict[str, list[tuple[float, float]]] = {"run": [], "run --record": []}
    for k in range(5):
        for name in results:
            extra = ["--record", str(tmp / f"loop{k}.h5")] if "record" in name else []
            summary = tmp / f"s{k}.json"
            t0 = time.perf_counter()
            subprocess.run(base + extra + ["--summary", str(summary)], check=True, env=env, capture_output=True)
            results[name].append((time.perf_counter() - t0, json.loads(summary.read_text())["fps"]))
    wall = {k: min(w for w, _ in v) for k, v in results.items()}
    fps = {k: statistics.median(f for _, f in v) for k, v in results.items()}
    print(f"\nloop cost, {frames} frames 256x512 rgb+semantic+depth (best of 5 alternating runs' wall, median loop fps):")
    for name in results:
        print(f"  drivesim {name:13s} wall {wall[name]:6.2f} s   loop {fps[name]:6.1f} fps")
    print(f"  recording adds {100 * (wall['run --record'] / wall['run'] - 1):+.1f}% wall time "
          f"(bar: at most +25%), loop fps ratio {fps['run --record'] / fps['run']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--style", default="flat", choices=["flat", "textured"])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--loop-frames", type=int, default=300, help="0 skips the loop-cost part")
    args = ap.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}; h5py {h5py.__version__} HDF5 "
          f"{h5py.version.hdf5_version}; OpenCV {cv2.__version__}")
    keep = render(args.frames, args.style, args.seed)
    n = len(keep.steps)
    with tempfile.TemporaryDirectory(dir=".") as tmp_name:
        tmp = Path(tmp_name)
        t_png = write_png(keep, tmp / "png")
        png_bytes = folder_bytes(tmp / "png")
        print(f"\nwriter, {n} frames 256x512 rgb+semantic+depth, style {args.style}:")
        print(f"  PNG (cv2.imwrite x3)   {n / t_png:7.1f} frames/s   {png_bytes / n / 1e3:7.1f} kB/frame")
        for codec in ("zstd", "none"):
            path = tmp / f"{codec}.h5"
            t = write_h5(keep, path, codec)
            size = path.stat().st_size
            print(f"  HDF5 {codec:6s}            {n / t:7.1f} frames/s   {size / n / 1e3:7.1f} kB/frame   "
                  f"speed x{t_png / t:.2f}, size x{size / png_bytes:.2f} of PNG")
        rng = np.random.default_rng(0)
        starts = rng.integers(0, n - 8, args.clips)
        t_h5, t_pngr = read_clips(starts, tmp / "zstd.h5", tmp / "png")
        print(f"\nrandom 8-frame clips ({args.clips}), rgb+semantic+depth:")
        print(f"  HDF5 {args.clips / t_h5:7.1f} clips/s   PNG {args.clips / t_pngr:7.1f} clips/s   "
              f"x{t_pngr / t_h5:.2f}")
        if args.loop_frames:
            loop_cost(args.loop_frames, args.seed, tmp)


if __name__ == "__main__":
    main()
