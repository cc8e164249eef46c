"""A plain CARLA client script, written only against the public `carla` API: synchronous mode,
a vehicle from the blueprint library, rgb and semantic cameras, 50 ticks of `VehicleControl`.

usage: plain_drive.py PORT OUT.npz
Saves the decoded images, frames, transforms, controls and the spawn point to OUT.npz.
"""

import json
import queue
import sys

import carla
import numpy as np

W, H, TICKS, SPAWN_POINT = 160, 96, 50, 7
MOUNT = carla.Transform(carla.Location(x=1.5, z=1.75), carla.Rotation(pitch=-5.0))


def control(i: int) -> carla.VehicleControl:
    return carla.VehicleControl(throttle=0.6, steer=0.15 if 20 <= i < 32 else 0.0)


def main(port: int, out: str) -> None:
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(10.0)
    world = client.get_world()
    original = world.get_settings()
    settings = world.get_settings()
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = 0.05
    world.apply_settings(settings)
    actors = []
    try:
        library = world.get_blueprint_library()
        spawn = world.get_map().get_spawn_points()[SPAWN_POINT]
        vehicle = world.spawn_actor(library.filter("vehicle.*")[0], spawn)
        actors.append(vehicle)
        queues = {}
        for name in ("rgb", "semantic_segmentation"):
            bp = library.find(f"sensor.camera.{name}")
            bp.set_attribute("image_size_x", str(W))
            bp.set_attribute("image_size_y", str(H))
            camera = world.spawn_actor(bp, MOUNT, attach_to=vehicle)
            actors.append(camera)
            queues[name] = queue.Queue()
            camera.listen(queues[name].put)
        rgb, semantic, frames, moves, controls = [], [], [], [], []
        for i in range(TICKS):
            c = control(i)
            vehicle.apply_control(c)
            frame = world.tick()
            images = {name: q.get(timeout=10.0) for name, q in queues.items()}
            pixels = {name: np.frombuffer(img.raw_data, np.uint8).reshape(H, W, 4).copy()
                      for name, img in images.items()}  # raw_data lives as long as the image
            rgb.append(pixels["rgb"][:, :, 2::-1])
            semantic.append(pixels["semantic_segmentation"][:, :, 2])
            frames.append((frame, images["rgb"].frame, images["semantic_segmentation"].frame))
            t = vehicle.get_transform()
            moves.append((t.location.x, t.location.y, t.rotation.yaw))
            controls.append((c.throttle, c.steer, c.brake))
        m = MOUNT
        np.savez(out, rgb=np.array(rgb), semantic=np.array(semantic), frames=np.array(frames),
                 transforms=np.array(moves), controls=np.array(controls, np.float32),
                 spawn=np.array([spawn.location.x, spawn.location.y, spawn.rotation.yaw]),
                 mount=np.array([m.location.x, m.location.y, m.location.z, m.rotation.pitch,
                                 m.rotation.yaw, m.rotation.roll], np.float32),
                 size=np.array([W, H]))
    finally:
        for actor in reversed(actors):
            if actor.type_id.startswith("sensor."):
                actor.stop()
            actor.destroy()
        world.apply_settings(original)
    print(json.dumps({"ticks": TICKS, "out": out}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
