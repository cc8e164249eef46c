"""Collision and lane-invasion sensors, NPC traffic and weather through the public `carla` API.
Drives across the lane markings into whatever is at the kerb; prints what it saw as JSON.

usage: events.py PORT
"""

import json
import queue
import sys

import carla
import numpy as np


def mean_rgb(q: queue.Queue, frame: int) -> float:
    image = q.get(timeout=10.0)
    assert image.frame == frame
    return float(np.frombuffer(image.raw_data, np.uint8).reshape(-1, 4)[:, :3].mean())


def main(port: int) -> None:
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(10.0)
    world = client.get_world()
    original = world.get_settings()
    weather = world.get_weather()
    settings = world.get_settings()
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = 0.05
    world.apply_settings(settings)
    library = world.get_blueprint_library()
    vehicle = world.spawn_actor(library.find("vehicle.audi.a2"),
                                world.get_map().get_spawn_points()[5])
    events = {"collision": [], "lane": []}
    collision = world.spawn_actor(library.find("sensor.other.collision"), carla.Transform(),
                                  attach_to=vehicle)
    collision.listen(lambda e: events["collision"].append(
        [e.frame, e.other_actor.type_id, e.actor.id == vehicle.id]))
    lane = world.spawn_actor(library.find("sensor.other.lane_invasion"), carla.Transform(),
                             attach_to=vehicle)
    lane.listen(lambda e: events["lane"].append(
        [e.frame, [str(m.type) for m in e.crossed_lane_markings]]))
    bp = library.find("sensor.camera.rgb")
    bp.set_attribute("image_size_x", "64")
    bp.set_attribute("image_size_y", "32")
    camera = world.spawn_actor(bp, carla.Transform(carla.Location(z=2.0)), attach_to=vehicle)
    images = queue.Queue()
    camera.listen(images.put)
    out = {}
    try:
        out["day"] = mean_rgb(images, world.tick())
        npc = world.get_actors().filter("vehicle.embedded.*")[0]
        before = npc.get_transform().location
        for i in range(150):
            vehicle.apply_control(carla.VehicleControl(throttle=0.7, steer=0.3 if i > 30 else 0.0))
            mean_rgb(images, world.tick())
        out["npc_moved"] = npc.get_transform().location.distance(before)
        world.set_weather(carla.WeatherParameters.ClearNight)
        out["night"] = mean_rgb(images, world.tick())
        out["sun"] = world.get_weather().sun_altitude_angle
        out["events"] = events
    finally:
        for s in (camera, collision, lane):
            s.stop()
            s.destroy()
        vehicle.destroy()
        world.set_weather(weather)
        world.apply_settings(original)
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]))
