"""Real recordings for the reader, dataset and export tests, each made once per test process.

Test modules wrap these in session-scoped fixtures; the cache here lets several modules share
one recording. Tests that change a file must work on a copy.
"""

from __future__ import annotations

from pathlib import Path

from drivesim_carla.episode import EpisodeConfig, assemble

_CACHE: dict[tuple, Path] = {}


def record(tmp_path_factory, scenario: str, frames: int, seed: int, style: str = "flat",
           size: tuple[int, int] = (128, 64)) -> Path:
    """A session of `frames` frames of the embedded world, `size` = (width, height)."""
    key = (scenario, frames, seed, style, size)
    if key not in _CACHE:
        path = tmp_path_factory.mktemp("recordings") / f"{scenario}_seed{seed}_{style}.h5"
        config = EpisodeConfig(scenario=scenario, seed=seed, frames=frames, style=style, width=size[0],
                               height=size[1], outputs={"record": path})
        with assemble(config) as episode:
            episode.run()
        _CACHE[key] = path
    return _CACHE[key]


def all_streams(tmp_path_factory) -> Path:
    """24 frames, cameras front and rear with rgb, semantic, depth, instance and flow."""
    return record(tmp_path_factory, "all_streams", 24, seed=0)


def front_only(tmp_path_factory) -> Path:
    """10 frames of another domain (textured), camera front with rgb, semantic and depth."""
    return record(tmp_path_factory, "default", 10, seed=4, style="textured")
