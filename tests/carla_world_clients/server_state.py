"""Print what a CARLA server holds as one JSON line: its settings and its actors.

    python server_state.py PORT [TIMEOUT]
"""

from __future__ import annotations

import json
import sys

import carla


def main() -> None:
    port = int(sys.argv[1])
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(float(sys.argv[2]) if len(sys.argv) > 2 else 20.0)
    world = client.get_world()
    s = world.get_settings()
    actors = {str(a.id): a.type_id for a in world.get_actors()}
    print(json.dumps({"synchronous_mode": s.synchronous_mode,
                      "fixed_delta_seconds": s.fixed_delta_seconds, "actors": actors}))


if __name__ == "__main__":
    main()
