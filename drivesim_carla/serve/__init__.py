"""`drivesim serve`: the embedded world behind CARLA 0.9.16's RPC and streaming protocol."""
