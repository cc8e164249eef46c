"""The closed loop: world -> synthesizer -> agent -> control, with taps watching every step.

`ClosedLoop` steps: `reset(seed)` starts an episode and returns the first `Observation`;
`step(control=None)` applies `control` (or the driving agent's choice) for one tick and returns
the `Step`; `end()` closes the episode's taps and returns its summary. `run()` is a thin driver
over them. People (the live view, manual takeover) and real-time pacing are wrappers and taps
around it (`drivesim_carla.live`), not branches inside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .agents.base import Agent, Observation
from .errors import DrivesimError
from .metrics import Metrics
from .synth import Synthesizer
from .taps import RunInfo, Step, Tap
from .types import Control, Frame
from .world.base import World

log = logging.getLogger(__name__)


class StopEpisode(Exception):
    """Raised by whatever advances the loop (e.g. the live view's quit) to end the episode early."""


@dataclass
class LoopResult:
    summary: dict
    last_frame: Frame | None = None
    interrupted: bool = False
    terminated: bool = False  # the route was completed


class ClosedLoop:
    """One world, one synthesizer, an optional agent and taps, stepped one tick at a time.

    `driver` is whoever chooses the control when `step()` is given none: the episode's `agent`
    unless a wrapper hands the wheel to someone else (a person at the keyboard). Without an
    agent (`agent=None`) the loop is driven from outside, as the Gymnasium environment does.
    """

    def __init__(self, world: World, agent: Agent | None, synth: Synthesizer, *,
                 taps: Sequence[Tap] = (), info: dict | None = None):
        self.world, self.agent, self.synth = world, agent, synth
        self.driver: Agent | None = agent
        self.user_taps: list[Tap] = list(taps)
        self.info = dict(info or {})
        self.metrics = Metrics()
        self.obs: Observation | None = None
        self.loop_fps = 0.0
        self.steps = 0
        self._chosen: Control | None = None  # the driver's choice from the current observation
        self._open = False
        self._last = 0.0

    @property
    def taps(self) -> list[Tap]:
        return [self.metrics, *self.user_taps]

    # ----- stepping -----------------------------------------------------------------------------
    def reset(self, seed: int) -> Observation:
        """Start an episode (ending a running one): the world's first frame, seen through the
        synthesizer. Taps hear `on_reset`; the driver makes its first choice."""
        self.end()
        frame = self.world.reset(seed)
        if self.agent is not None:
            self.agent.reset(self.world.route, seed)
        self.driver = self.agent
        self.metrics = Metrics()
        info = RunInfo(world=self.world.name, map_name=self.world.map_name, seed=seed, fps=self.world.fps,
                       cameras=list(self.world.cameras), style=getattr(self.world, "style", ""),
                       weather=getattr(self.world, "weather", ""),
                       agent=self.agent.name if self.agent is not None else "external",
                       synth=self.synth.name, route=self.world.route, **self.info)
        self._open = True
        for tap in self.taps:
            tap.on_reset(info)
        self.obs = Observation(frame, self._see(frame)[0], self.world.route)
        self._chosen = self._decide()
        self.steps, self.loop_fps = 0, 0.0
        self._last = time.perf_counter()
        return self.obs

    def step(self, control: Control | None = None) -> Step:
        """Apply `control` (None: the driver's choice from the current observation) for one tick.

        The returned `Step` holds the new frame, what the agent sees of it, and the driver's
        choice from it (None when the loop has no driver)."""
        if not self._open or self.obs is None:
            raise DrivesimError("call reset() before step()")
        if control is None:
            control = self._chosen
            if control is None:
                raise DrivesimError("step() without a control needs an agent to choose one")
        frame = self.world.tick(control)
        image, synth_ms = self._see(frame)
        self.obs = Observation(frame, image, self.world.route)
        self._chosen = self._decide()
        now = time.perf_counter()
        dt = max(now - self._last, 1e-9)
        self.loop_fps = 1.0 / dt if self.steps == 0 else 0.9 * self.loop_fps + 0.1 / dt
        step = Step(frame, image, self._chosen, synth_ms, self.loop_fps,
                    manual=self.driver is not self.agent)
        for tap in self.taps:
            tap.on_step(step)
        self.steps += 1
        self._last = time.perf_counter()
        return step

    def end(self) -> dict | None:
        """Close the running episode's taps (recorders finish their file); its summary, or None
        when no episode runs."""
        if not self._open:
            return None
        self._open = False
        for tap in self.taps:
            tap.on_close()
        return self.metrics.summary()

    # ----- the driver -----------------------------------------------------------------------------
    def run(self, frames: int, *, seed: int, stop_at_route_end: bool = False, progress=None,
            step: Callable[[], Step] | None = None) -> LoopResult:
        """Reset, then step `frames` times (fewer if the route ends and `stop_at_route_end`, or on
        Ctrl-C / `StopEpisode`). `step` replaces `self.step` (e.g. `live.Interactive(...).step`)."""
        advance = step or self.step
        frame = self.reset(seed).frame
        done = 0
        interrupted = terminated = False
        start = time.perf_counter()
        try:
            while done < frames:
                frame = advance().frame
                done += 1
                if progress is not None:
                    progress.update(1)
                if stop_at_route_end and frame.ego.route_completion >= 0.999:
                    terminated = True
                    break
        except (KeyboardInterrupt, StopEpisode):
            interrupted = True
        finally:  # taps close even when the world or the agent fails
            wall = time.perf_counter() - start
            self.end()
        summary = self.metrics.summary()
        summary.update(wall_seconds=round(wall, 4), fps=round(done / max(wall, 1e-9), 2),
                       terminated=terminated, interrupted=interrupted)
        return LoopResult(summary, frame, interrupted, terminated)

    # ----- helpers ---------------------------------------------------------------------------------
    def _see(self, frame: Frame) -> tuple:
        t0 = time.perf_counter()
        image = self.synth(frame)
        return image, (time.perf_counter() - t0) * 1000.0

    def _decide(self) -> Control | None:
        return self.driver.act(self.obs) if self.driver is not None else None
