"""Every camera kind at once, on a vehicle, on the spectator and fixed in the world, in
synchronous mode: reports, per tick, whether each image carries the world's frame, and a few
decoded values. Prints JSON.

usage: cameras.py PORT TICKS
"""

import json
import queue
import sys

import carla
import numpy as np

KINDS = ("rgb", "semantic_segmentation", "depth", "instance_segmentation", "optical_flow")


def camera(world, library, kind, size, tf, parent=None):
    bp = library.find(f"sensor.camera.{kind}")
    bp.set_attribute("image_size_x", str(size[0]))
    bp.set_attribute("image_size_y", str(size[1]))
    return world.spawn_actor(bp, tf, attach_to=parent) if parent else world.spawn_actor(bp, tf)


def decode(kind: str, image) -> dict:
    if kind == "optical_flow":
        flow = np.frombuffer(image.raw_data, np.float32).reshape(image.height, image.width, 2)
        return {"flow_finite": bool(np.isfinite(flow).all()), "flow_max": float(np.abs(flow).max())}
    px = np.frombuffer(image.raw_data, np.uint8).reshape(image.height, image.width, 4)
    if kind == "depth":
        r, g, b = (px[:, :, k].astype(np.int64) for k in (2, 1, 0))
        code = r + g * 256 + b * 65536
        metres = code / (256**3 - 1) * 1000.0
        return {"depth_min": float(metres.min()), "depth_max": float(metres.max())}
    if kind == "semantic_segmentation":
        return {"tags": sorted(int(t) for t in np.unique(px[:, :, 2]))}
    if kind == "instance_segmentation":
        ids = px[:, :, 1].astype(np.int64) + px[:, :, 0].astype(np.int64) * 256
        return {"instance_tags": sorted(int(t) for t in np.unique(px[:, :, 2])),
                "objects": int(len(np.unique(ids)))}
    return {"alpha": int(px[:, :, 3].min()), "mean": float(px[:, :, :3].mean())}


def main(port: int, ticks: int) -> None:
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(10.0)
    world = client.get_world()
    original = world.get_settings()
    settings = world.get_settings()
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = 0.05
    world.apply_settings(settings)
    library = world.get_blueprint_library()
    spawn = world.get_map().get_spawn_points()[11]
    vehicle = world.spawn_actor(library.find("vehicle.tesla.model3"), spawn)
    mount = carla.Transform(carla.Location(x=1.5, z=1.7))
    kinds = {f"ego_{k}": k for k in KINDS}
    cams = {name: camera(world, library, k, (128, 64), mount, vehicle) for name, k in kinds.items()}
    kinds["ego_wide_rgb"] = "rgb"
    cams["ego_wide_rgb"] = camera(world, library, "rgb", (96, 96), mount, vehicle)
    above = carla.Transform(spawn.location + carla.Location(z=40.0), carla.Rotation(pitch=-90.0))
    kinds["fixed"] = "semantic_segmentation"
    cams["fixed"] = camera(world, library, "semantic_segmentation", (64, 64), above)
    kinds["spectator"] = "depth"
    cams["spectator"] = camera(world, library, "depth", (64, 32), carla.Transform(),
                               world.get_spectator())
    queues = {name: queue.Queue() for name in cams}
    for name, cam in cams.items():
        cam.listen(queues[name].put)
    aligned, last = [], {}
    try:
        for _ in range(ticks):
            vehicle.apply_control(carla.VehicleControl(throttle=0.5))
            frame = world.tick()
            got = {name: q.get(timeout=10.0) for name, q in queues.items()}
            aligned.append(all(img.frame == frame for img in got.values()))
            last = got
        out = {"aligned": aligned,
               "sizes": {n: [img.width, img.height] for n, img in last.items()},
               "moved": vehicle.get_transform().location.distance(spawn.location),
               "camera_z": cams["ego_rgb"].get_transform().location.z}
        for name, img in last.items():
            out[name] = decode(kinds[name], img)
    finally:
        for cam in cams.values():
            cam.stop()
            cam.destroy()
        vehicle.destroy()
        world.apply_settings(original)
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
