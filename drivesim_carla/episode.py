"""One episode as a library object: a typed config, and the one function that assembles it.

    config = EpisodeConfig(scenario="default", seed=3, frames=400, outputs={"summary": "run.json"})
    with assemble(config) as episode:
        result = episode.run()

`drivesim run`, `drivesim record`, the benchmarks, the Gymnasium environment and every later
command build their episodes here and nowhere else. A config round-trips through YAML and JSON
(`to_yaml`, `EpisodeConfig.from_yaml`), so a batch job or a report can say exactly what ran, and
its `id` (a digest of everything but the outputs) names the episode across runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import Field, field_validator

from .configs import Strict, read_yaml_mapping, validate
from .errors import DrivesimError
from .types import STREAMS, CameraSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .agents.base import Agent
    from .loop import ClosedLoop, LoopResult
    from .scenarios import Scenario
    from .synth import Synthesizer
    from .taps import Tap
    from .viewer import Viewer
    from .world.base import World

log = logging.getLogger(__name__)

Device = str  # auto | cpu | cuda | cuda:N (checked when the model loads)


class SynthConfig(Strict):
    """What replaces the world's rendering: `none`, or a generator's run or model directory."""

    model: str = "none"
    device: Device = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False


class PerceptionConfig(Strict):
    """A segmenter (an ADVENT run or converted model) the agent sees through (`obs.perception`)."""

    model: str
    device: Device = "auto"


class EndpointConfig(Strict):
    """Where a server-backed world (`carla`) is reached."""

    host: str = "127.0.0.1"
    port: int = Field(2000, ge=1, le=65535)
    timeout: float = Field(10.0, gt=0)
    map: str | None = None  # a map to load; None keeps the server's current one


class OutputsConfig(Strict):
    """What an episode writes. None of it is part of the episode's identity."""

    record: Path | None = None  # HDF5 session file
    video: Path | None = None  # mp4 of the viewer's panels
    summary: Path | None = None  # JSON summary
    flush_interval: float = Field(1.0, gt=0)
    codec: Literal["zstd", "none"] = "zstd"
    overwrite: bool = False


class EpisodeConfig(Strict):
    """Everything that decides what an episode is and what it writes."""

    world: str = "embedded"
    endpoint: EndpointConfig = EndpointConfig()
    scenario: str | dict = "default"  # a built-in name, a YAML file, or the scenario itself
    agent: str | None = "autopilot"  # None: the episode is driven from outside (the Gymnasium env)
    synth: SynthConfig = SynthConfig()
    perception: PerceptionConfig | None = None
    seed: int = 0
    frames: int | None = Field(None, ge=1)  # None: the scenario's, ending early at the route's end
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)
    style: str | None = None
    weather: str | None = None
    cameras: str | None = None  # e.g. "front:rgb+semantic+depth,rear:rgb" ("all" = every stream)
    window: bool = False  # a live window, when there is a display
    outputs: OutputsConfig = OutputsConfig()

    @field_validator("cameras")
    @classmethod
    def _camera_syntax(cls, v: str | None) -> str | None:
        if v is not None:
            parse_camera_spec(v)
        return v

    # ----- identity and round trips --------------------------------------------------------
    @property
    def id(self) -> str:
        """12 hex digits naming what runs (the outputs and the window are not part of it)."""
        what = self.model_dump(mode="json", exclude={"outputs", "window"})
        text = json.dumps(what, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict, source: str = "episode config") -> EpisodeConfig:
        return validate(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> EpisodeConfig:
        """A config from a YAML (or JSON, which is YAML) file; errors name the file and the key."""
        return validate(cls, read_yaml_mapping(Path(path), "episode config"), str(path))

    def with_(self, **changes) -> EpisodeConfig:
        """A validated copy with `changes`; a dict for a section merges into it
        (`config.with_(seed=4, synth={"model": "runs/p2p"})`)."""
        return validate(type(self), _merge(self.to_dict(), changes), "episode config")


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merge(out[key], value)
        out[key] = value
    return out


# ----- cameras ------------------------------------------------------------------------------------
def parse_camera_spec(spec: str) -> list[tuple[str, tuple[str, ...] | None]]:
    """`front:rgb+semantic,rear` -> [("front", ("rgb", "semantic")), ("rear", None)]."""
    out = []
    for part in spec.split(","):
        name, _, streams = part.strip().partition(":")
        if not name:
            raise ValueError(f"camera spec {spec!r}: an empty camera name; write e.g. front:rgb+semantic")
        if not streams:
            out.append((name, None))
            continue
        wanted = STREAMS if streams == "all" else tuple(streams.split("+"))
        unknown = [s for s in wanted if s not in STREAMS]
        if unknown:
            raise ValueError(f"unknown stream(s) {', '.join(unknown)}; valid: {', '.join(STREAMS)}, all")
        out.append((name, wanted))
    return out


def select_cameras(cameras: list[CameraSpec], spec: str | None) -> list[CameraSpec]:
    """Apply a camera spec (`NAME:STREAM+STREAM,...`) to the scenario's cameras."""
    if not spec:
        return cameras
    by_name = {c.name: c for c in cameras}
    chosen = []
    for name, wanted in parse_camera_spec(spec):
        if name not in by_name:
            raise DrivesimError(f"--cameras: no camera '{name}' in the scenario; it has: {', '.join(by_name)}")
        wanted = by_name[name].streams if wanted is None else wanted
        chosen.append(replace(by_name[name], streams=tuple(s for s in STREAMS if s in wanted)))
    return chosen


def with_streams(camera: CameraSpec, streams: tuple[str, ...]) -> CameraSpec:
    """The camera, also rendering what a synthesizer needs (a generator's semantic/instance input)."""
    wanted = set(camera.streams) | set(streams)
    return replace(camera, streams=tuple(s for s in STREAMS if s in wanted))


# ----- the assembled episode ----------------------------------------------------------------------
@dataclass
class Episode:
    """A world, an agent, a synthesizer and taps around a `ClosedLoop`, built from one config.

    Use as a context manager (or call `close`): the world gives back its simulator, the agent and
    the synthesizer free their models, even after an exception."""

    config: EpisodeConfig
    scenario: Scenario
    world: World
    agent: Agent | None
    synth: Synthesizer
    loop: ClosedLoop
    viewer: Viewer | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    @property
    def frames(self) -> int:
        """Ticks `run` takes: the config's, or the scenario's default."""
        return self.config.frames if self.config.frames is not None else self.scenario.frames

    def run(self, progress=None) -> LoopResult:
        """Drive the episode to its end (the frame count, or the route's end when no count was
        given), write the summary if asked, and return the loop's result."""
        step = None
        if self.viewer is not None and not self.viewer.headless:
            from .live import Interactive

            step = Interactive(self.loop, self.viewer).step
        result = self.loop.run(self.frames, seed=self.config.seed, stop_at_route_end=self.config.frames is None,
                               progress=progress, step=step)
        result.summary["scenario"] = self.scenario.name
        if self.config.outputs.record is not None:
            result.summary["recording"] = str(self.config.outputs.record)
        if self.config.outputs.summary is not None:
            write_json(self.config.outputs.summary, result.summary)
        return result

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Episode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assemble(config: EpisodeConfig | dict, *, primary_streams: tuple[str, ...] = (),
             taps: Sequence[Tap] = ()) -> Episode:
    """Build an episode: every check that can fail (outputs writable, scenario, cameras, model
    directories, the world's server) runs before anything is written, and whatever was built
    before a failure is closed again. `primary_streams`: streams the first camera renders besides
    its own and the synthesizer's (e.g. what an environment observes); `taps`: more taps to watch
    the loop, after the recorder and before the viewer."""
    from .agents import make_agent, with_perception
    from .loop import ClosedLoop
    from .synth import load_synthesizer
    from .world import make_world

    if isinstance(config, dict):
        config = EpisodeConfig.from_dict(config)
    out = config.outputs
    check_writable(out.video, "--video")
    check_writable(out.summary, "--summary")
    scenario = load_episode_scenario(config.scenario)
    cameras = select_cameras(scenario.camera_specs(config.width, config.height), config.cameras)
    taps = list(taps)
    stack = contextlib.ExitStack()
    with stack:
        if out.record is not None:
            from .recorders import Recorder

            taps.insert(0, Recorder(out.record, flush_interval=out.flush_interval, codec=out.codec,
                                 overwrite=out.overwrite))
        s = config.synth
        synth = load_synthesizer(s.model, device=s.device, precision=s.precision, compile=s.compile)
        stack.callback(synth.close)
        if cameras:
            cameras[0] = with_streams(cameras[0], (*synth.streams, *primary_streams))
        viewer = None
        if config.window or out.video is not None:
            from .viewer import Viewer

            viewer = Viewer(headless=not config.window, video=out.video)
        agent = _make_agent(config, scenario, viewer, make_agent, with_perception)
        if agent is not None:
            stack.callback(agent.close)
        e = config.endpoint
        world = make_world(config.world, scenario, config.seed, cameras=cameras, style=config.style,
                           weather=config.weather, host=e.host, port=e.port, timeout=e.timeout, carla_map=e.map)
        stack.callback(world.close)
        if viewer is not None:
            taps.append(viewer)
            if not viewer.headless:
                from .live import Pacer

                taps.append(Pacer(world.fps))
        loop = ClosedLoop(world, agent, synth, taps=taps, info={"scenario_text": scenario.to_yaml()})
        episode = Episode(config, scenario, world, agent, synth, loop, viewer, stack.pop_all())
    return episode


def _make_agent(config: EpisodeConfig, scenario: Scenario, viewer, make_agent, with_perception) -> Agent | None:
    if config.agent is None:
        if config.perception is not None:
            raise DrivesimError("perception needs an agent to see through it; set an agent or drop perception")
        return None
    p = config.perception
    agent = make_agent(config.agent, viewer=viewer, target_speed=scenario.ego.target_speed,
                       perception=p.model if p else None, perception_device=p.device if p else "auto")
    if p is not None and config.agent != "segmentation-autopilot":
        agent = with_perception(agent, p.model, p.device)
    return agent


def load_episode_scenario(scenario: str | dict) -> Scenario:
    from .scenarios import load_scenario, parse_scenario

    if isinstance(scenario, dict):
        return parse_scenario({"name": "inline", **scenario}, source="scenario")
    return load_scenario(scenario)


# ----- output helpers -------------------------------------------------------------------------------
def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_writable(path: Path | None, what: str) -> None:
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise DrivesimError(f"{what} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise DrivesimError(f"{what} {path}: folder {parent} is not writable")
