"""Spawn and destroy actors through the public `carla` API; prints what it saw as JSON.

usage: spawn_destroy.py PORT
"""

import json
import sys

import carla


def ids(world) -> set[int]:
    """Actors after two ticks (the first may have been on its way before the last call)."""
    world.wait_for_tick()
    world.wait_for_tick()
    return {a.id for a in world.get_actors()}


def main(port: int) -> None:
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(10.0)
    world = client.get_world()
    library = world.get_blueprint_library()
    points = world.get_map().get_spawn_points()
    out = {"blueprints": sorted(bp.id for bp in library), "spawn_points": len(points)}
    bp = library.find("vehicle.lincoln.mkz_2020")
    bp.set_attribute("role_name", "hero")
    vehicle = world.spawn_actor(bp, points[0])
    camera = world.spawn_actor(library.find("sensor.camera.rgb"), carla.Transform(
        carla.Location(x=1.5, z=1.7)), attach_to=vehicle)
    seen = ids(world)
    out["spawned"] = [vehicle.id in seen, camera.id in seen]
    out["parent"] = camera.parent.id if camera.parent else None
    out["role_name"] = vehicle.attributes["role_name"]
    out["type_ids"] = [vehicle.type_id, camera.type_id]
    out["extent"] = [vehicle.bounding_box.extent.x, vehicle.bounding_box.extent.y]
    out["blocked"] = world.try_spawn_actor(bp, points[0]) is None
    try:
        world.spawn_actor(library.find("sensor.camera.depth"), carla.Transform(), attach_to=camera)
        out["sensor_on_sensor"] = "accepted"
    except RuntimeError as e:
        out["sensor_on_sensor"] = str(e)
    batch = client.apply_batch_sync([carla.command.SpawnActor(bp, points[40]),
                                     carla.command.DestroyActor(999_999)])
    out["batch"] = [[r.actor_id, r.error] for r in batch]
    out["destroyed"] = [camera.destroy(), vehicle.destroy()]
    out["destroyed"] += [client.apply_batch_sync([carla.command.DestroyActor(batch[0].actor_id)])[0].error]
    seen = ids(world)
    out["gone"] = [vehicle.id not in seen, camera.id not in seen, batch[0].actor_id not in seen]
    out["npcs"] = len(world.get_actors().filter("vehicle.embedded.*"))
    out["walkers"] = len(world.get_actors().filter("walker.*"))
    lights = world.get_actors().filter("traffic.traffic_light")
    out["lights"] = len(lights)
    stops = [tl.get_stop_waypoints() for tl in lights]
    out["light_stops"] = [len(wps) for wps in stops]
    out["light_stop_lanes"] = sorted({w.lane_id for wps in stops for w in wps})
    out["light_states"] = sorted({str(tl.state) for tl in lights})
    try:
        world.get_environment_objects()
        out["unsupported"] = "accepted"
    except RuntimeError as e:
        out["unsupported"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]))
