"""Real recordings for the reader, dataset and export tests, each made once per test process.

Test modules wrap these in session-scoped fixtures; the cache here lets several modules share
one recording. Tests that change a file must work on a copy.
"""

from __future__ import annotations

from pathlib import Path

from drivesim_carla.agents import make_agent
from drivesim_carla.loop import ClosedLoop
from drivesim_carla.recorders.hdf5 import Recorder
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.synth import load_synthesizer
from drivesim_carla.world import make_world

_CACHE: dict[tuple, Path] = {}


def record(tmp_path_factory, scenario: str, frames: int, seed: int, style: str = "flat",
           size: tuple[int, int] = (128, 64)) -> Path:
    """A session of `frames` frames of the embedded world, `size` = (width, height)."""
    key = (scenario, frames, seed, style, size)
    if key not in _CACHE:
        path = tmp_path_factory.mktemp("recordings") / f"{scenario}_seed{seed}_{style}.h5"
        spec = load_scenario(scenario)
        world = make_world("embedded", spec, seed, cameras=spec.camera_specs(*size), style=style)
        loop = ClosedLoop(world, make_agent("autopilot"), load_synthesizer("none"), taps=[Recorder(path)])
        loop.run(frames, seed=seed, info={"scenario_text": spec.to_yaml()})
        _CACHE[key] = path
    return _CACHE[key]


def all_streams(tmp_path_factory) -> Path:
    """24 frames, cameras front and rear with rgb, semantic, depth, instance and flow."""
    return record(tmp_path_factory, "all_streams", 24, seed=0)


def front_only(tmp_path_factory) -> Path:
    """10 frames of another domain (textured), camera front with rgb, semantic and depth."""
    return record(tmp_path_factory, "default", 10, seed=4, style="textured")
