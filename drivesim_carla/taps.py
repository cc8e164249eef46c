"""Taps: things that watch the closed loop (recorders, the viewer, metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .route import Route
from .types import CameraSpec, Control, Frame


@dataclass
class RunInfo:
    """What a tap learns when an episode starts."""

    world: str  # a world backend's name: "embedded", "carla", ...
    map_name: str
    seed: int
    fps: float  # simulation ticks per simulated second
    cameras: list[CameraSpec]
    style: str
    weather: str
    agent: str
    synth: str
    route: Route
    scenario_text: str = ""  # the scenario as YAML text
    extra: dict = field(default_factory=dict)


@dataclass
class Step:
    """One turn of the loop, after the agent has chosen its control."""

    frame: Frame
    agent_view: np.ndarray  # h w 3 uint8: the image the agent saw (synthesizer output)
    control: Control | None  # the driver's choice from this frame (None: the loop is driven from outside)
    synth_ms: float  # synthesizer latency for this frame
    loop_fps: float  # smoothed wall-clock loop rate
    manual: bool = False  # a person has the wheel


class Tap(Protocol):
    def on_reset(self, info: RunInfo) -> None: ...

    def on_step(self, step: Step) -> None: ...

    def on_close(self) -> None: ...
