"""Frames per second of the embedded world's renderer on ONE CPU core.

    python benchmarks/bench_render.py [--demo] [--frames 200] [--size 256x512] [--seed 0]

Pins itself to one core (and one numba thread), builds a realistic scene (the embedded world's
town, or with --demo the tests' demo town of `tests/render_demo.py`, ~2400 static boxes), drives
a camera along a road with ~50 dynamic boxes (cars, pedestrians) plus the traffic-light lamps,
warms up, and prints frames/s for each style x {rgb+semantic+depth, all five streams}.
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"  # before numba is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from drivesim_carla.labels import Tag  # noqa: E402
from drivesim_carla.types import CameraSpec, Transform  # noqa: E402
from drivesim_carla.world.embedded.render import Motion, Renderer  # noqa: E402
from drivesim_carla.world.embedded.scene import Boxes, Material  # noqa: E402

THREE = ("rgb", "semantic", "depth")
FIVE = ("rgb", "semantic", "depth", "instance", "flow")


def _cars_on(points: np.ndarray, headings: np.ndarray, start_inst: int) -> Boxes:
    """Two boxes (body, cabin) per car at the given x, y, yaw."""
    n = len(points)
    c, s = np.cos(headings), np.sin(headings)
    body_c = np.column_stack([points, np.full(n, 0.55)])
    cab_c = np.column_stack([points[:, 0] - 0.3 * c, points[:, 1] - 0.3 * s, np.full(n, 1.27)])
    colors = np.array([(180, 20, 20), (20, 40, 120), (220, 220, 220), (30, 30, 30)], np.uint8)
    return Boxes(
        np.concatenate([body_c, cab_c]),
        np.concatenate([np.tile([2.2, 0.95, 0.4], (n, 1)), np.tile([1.25, 0.85, 0.32], (n, 1))]),
        np.concatenate([headings, headings]),
        np.full(2 * n, Tag.CAR, np.uint8),
        np.tile(np.arange(start_inst, start_inst + n, dtype=np.int32), 2),
        np.full(2 * n, Material.CAR_PAINT, np.uint8),
        np.concatenate([colors[np.arange(n) % 4]] * 2),
    )


def demo_setup(seed: int):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from render_demo import demo_scene

    sc = demo_scene(seed)

    def frame_at(k: int):
        dyn, heads = sc.dynamic(k)
        ego = Transform(-70.0 + 0.5 * k, 1.75, 0.0, yaw=0.0)
        return ego, dyn, heads, {}

    return sc.ground, sc.static, sc.lights, frame_at, "demo town"


def town_setup(seed: int):
    from drivesim_carla.world.embedded.town import build_town  # noqa: PLC0415

    town = build_town(seed)
    lanes = sorted(town.lanes.values(), key=lambda lane: -lane.length)
    path = lanes[0].points
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    rng = np.random.default_rng(seed)
    spots = []
    for lane_id, dist in town.spawn_points[:25]:
        pts = town.lanes[lane_id].points
        d = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        x = np.interp(dist, d, pts[:, 0])
        y = np.interp(dist, d, pts[:, 1])
        k = min(int(np.searchsorted(d, dist)), len(pts) - 1)
        k0 = max(k - 1, 0)
        yaw = math.atan2(pts[k, 1] - pts[k0, 1], pts[k, 0] - pts[k0, 0]) if k > k0 else 0.0
        spots.append((x, y, yaw))
    spots = np.array(spots, np.float64).reshape(-1, 3)
    if len(spots) < 25:  # fill up with cars along the ego's lane
        extra = rng.uniform(10, cum[-1], 25 - len(spots))
        ex = np.column_stack([np.interp(extra, cum, path[:, 0]), np.interp(extra, cum, path[:, 1]),
                              np.zeros(len(extra))])
        spots = np.concatenate([spots, ex])
    dyn = _cars_on(spots[:, :2], spots[:, 2], 500000)

    def frame_at(k: int):
        s = (0.5 * k) % max(cum[-1] - 5.0, 1.0)
        x, y = np.interp(s, cum, path[:, 0]), np.interp(s, cum, path[:, 1])
        x2, y2 = np.interp(s + 1.0, cum, path[:, 0]), np.interp(s + 1.0, cum, path[:, 1])
        ego = Transform(float(x), float(y), 0.0, yaw=math.degrees(math.atan2(y2 - y, x2 - x)))
        heads = np.column_stack([spots[:, :2], np.full(len(spots), 0.7), spots[:, 2]])
        return ego, dyn, heads, {}

    return town.ground, town.static, town.lights, frame_at, f"town '{town.name}'"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", action="store_true", help="the tests' demo town instead of the embedded world's")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", default="256x512", help="HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--styles", default="flat,textured")
    ap.add_argument("--weather", default="clear")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    h, w = (int(v) for v in args.size.lower().split("x"))
    setup = demo_setup if args.demo else town_setup
    t0 = time.perf_counter()
    ground, static, lights, frame_at, name = setup(args.seed)
    print(f"scene: {name}, {len(static)} static boxes, {len(lights.radius)} lamps, "
          f"ground {ground.material.shape[1]}x{ground.material.shape[0]} cells "
          f"({time.perf_counter() - t0:.2f}s to build)")
    spec = CameraSpec(width=w, height=h, fov=90.0)
    for style in args.styles.split(","):
        t0 = time.perf_counter()
        r = Renderer(ground, static, lights, style=style, weather=args.weather, seed=args.seed)
        t_init = time.perf_counter() - t0
        for streams in (THREE, FIVE):
            ego0, dyn0, heads0, _ = frame_at(0)
            prev = ego0.compose(spec.mount)
            for k in range(5):  # warm up (compiles or loads the kernels)
                r.render(spec, prev, dyn0, frame=k, streams=streams, headlights=heads0,
                         motion=Motion(prev, {}) if "flow" in streams else None)
            frames = [frame_at(k) for k in range(args.frames)]
            n_dyn = np.mean([len(f[1]) for f in frames])
            t0 = time.perf_counter()
            for k, (ego, dyn, heads, objects) in enumerate(frames):
                pose = ego.compose(spec.mount)
                motion = Motion(prev, objects) if "flow" in streams else None
                r.render(spec, pose, dyn, frame=k, streams=streams, motion=motion, headlights=heads)
                prev = pose
            dt = time.perf_counter() - t0
            label = "+".join(streams) if streams is THREE else "all five streams"
            print(f"{style:9s} {args.weather:6s} {h}x{w} {label:22s} {args.frames / dt:7.1f} frames/s "
                  f"({1000 * dt / args.frames:.2f} ms/frame, {n_dyn:.0f} dynamic boxes, "
                  f"renderer init {t_init:.2f}s)")


if __name__ == "__main__":
    main()
