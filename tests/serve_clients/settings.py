"""Episode settings across clients. MODE `restore`: synchronous mode for a few ticks, then the
original settings back (CARLA's synchronous_mode.py pattern); `leave`: synchronous mode and exit
as is; `read`: only report. Prints the settings found on arrival and on leaving as JSON.

usage: settings.py PORT MODE
"""

import json
import sys

import carla


def as_dict(s) -> dict:
    return {"synchronous_mode": s.synchronous_mode, "no_rendering_mode": s.no_rendering_mode,
            "fixed_delta_seconds": s.fixed_delta_seconds, "substepping": s.substepping,
            "max_substeps": s.max_substeps}


def main(port: int, mode: str) -> None:
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(10.0)
    world = client.get_world()
    original = world.get_settings()
    out = {"found": as_dict(original)}
    if mode != "read":
        settings = world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = 0.1
        world.apply_settings(settings)
        start = world.get_snapshot()
        frames = [world.tick() for _ in range(5)]
        end = world.get_snapshot()
        out["ticks"] = [f - start.frame for f in frames]
        out["sim_seconds"] = end.timestamp.elapsed_seconds - start.timestamp.elapsed_seconds
        out["delta"] = end.timestamp.delta_seconds
        if mode == "restore":
            world.apply_settings(original)
    out["left"] = as_dict(world.get_settings())
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
