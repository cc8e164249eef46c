"""The least a client does: server version, the world, one tick in asynchronous mode.

usage: probe.py PORT
"""

import json
import sys

import carla

client = carla.Client("127.0.0.1", int(sys.argv[1]))
client.set_timeout(10.0)
world = client.get_world()
print(json.dumps({"version": client.get_server_version(), "map": world.get_map().name,
                  "frame": world.wait_for_tick().frame}))
