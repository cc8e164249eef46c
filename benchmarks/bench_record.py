"""Recording speed and size: our HDF5 writer against one PNG per stream per frame.

    python benchmarks/bench_record.py [--frames 1000] [--style flat] [--clips 200] [--loop-frames 300]
                                      [--codecs 0]

1. Writer: the same `--frames` frames at 256x512 (rgb, semantic, depth, rendered by the embedded
   world while the autopilot drives) go through `Recorder` (its own thread, Zstandard) and through
   `cv2.imwrite` (8-bit RGB PNG, 8-bit label PNG, 16-bit depth PNG in centimetres), timed from the
   first frame handed over until the last byte is written and the file closed.
2. Reads: random 8-frame clips (rgb, semantic, depth) from the session against the PNG folder.
3. Loop cost: `drivesim run --headless --frames N` with and without `--record` (whole command
   wall time and loop fps, best of 5 alternating runs).
4. Codecs (`--codecs N`, off by default): the first N frames through HDF5's own filter pipeline
   with each candidate (h5py's gzip and lzf, hdf5plugin's LZ4, Blosc and Zstd), one frame per
   chunk: frames/s and kB/frame per stream, the measurement behind the recorder's Zstd level 1.
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

from drivesim_carla.episode import EpisodeConfig, assemble
from drivesim_carla.recorders import Recorder
from drivesim_carla.taps import RunInfo, Step


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
    keep = Keep()
    config = EpisodeConfig(scenario="default", seed=seed, frames=frames, width=512, height=256, style=style)
    with assemble(config, taps=[keep]) as episode:
        episode.run()
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


CANDIDATE_CODECS = {
    "gzip-1": dict(compression="gzip", compression_opts=1), "lzf": dict(compression="lzf"),
    "lz4": hdf5plugin.LZ4(), "blosc-lz4": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc-zstd-1": hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "zstd-1": hdf5plugin.Zstd(clevel=1), "zstd-3": hdf5plugin.Zstd(clevel=3),
}


def compare_codecs(keep: Keep, n: int, tmp: Path) -> None:
    """Each candidate filter on each stream of the first `n` frames, one frame per chunk."""
    cams = [step.frame.camera for step in keep.steps[:n]]
    streams = {"rgb": [c.rgb for c in cams], "semantic": [c.semantic for c in cams],
               "depth": [c.depth.astype(np.float16) for c in cams]}
    print(f"\ncodecs through HDF5's filter pipeline, {len(cams)} frames, one frame per chunk (kB/frame, frames/s):")
    print("  " + " " * 13 + "".join(f"{k:>20s}" for k in streams) + f"{'all three':>20s}")
    for name, options in CANDIDATE_CODECS.items():
        cells, total_s, total_b = [], 0.0, 0
        with h5py.File(tmp / f"codec-{name}.h5", "w") as f:
            for stream, frames in streams.items():
                d = f.create_dataset(stream, (len(frames), *frames[0].shape), frames[0].dtype,
                                     chunks=(1, *frames[0].shape), **options)
                t0 = time.perf_counter()
                for i, a in enumerate(frames):
                    d[i] = a
                f.flush()
                dt = time.perf_counter() - t0
                size = d.id.get_storage_size()
                total_s, total_b = total_s + dt, total_b + size
                cells.append(f"{size / len(frames) / 1e3:8.1f} {len(frames) / dt:7.0f}/s")
        cells.append(f"{total_b / len(cams) / 1e3:8.1f} {len(cams) / total_s:7.0f}/s")
        print(f"  {name:13s}" + "".join(f"{c:>20s}" for c in cells))


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
    print(f"\nloop cost, {frames} frames 256x512 rgb+semantic+depth "
          "(best of 5 alternating runs' wall, median loop fps):")
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
    ap.add_argument("--codecs", type=int, default=0, help="compare HDF5 codecs on this many frames (0: skip)")
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
        if args.codecs:
            compare_codecs(keep, args.codecs, tmp)
        if args.loop_frames:
            loop_cost(args.loop_frames, args.seed, tmp)


if __name__ == "__main__":
    main()
