"""The closed loop: world -> synthesizer -> agent -> control, with taps watching every step."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .agents.base import Agent, Observation
from .metrics import Metrics
from .synth import Synthesizer
from .taps import RunInfo, Step, Tap
from .types import Control, Frame
from .world.base import World

log = logging.getLogger(__name__)


@dataclass
class LoopResult:
    summary: dict
    last_frame: Frame | None = None
    interrupted: bool = False
    terminated: bool = False  # the route was completed


class ClosedLoop:
    """Runs one episode. The viewer (optional) is a tap that can also pause the loop, hand the
    wheel to a person, or quit."""

    def __init__(self, world: World, agent: Agent, synth: Synthesizer, *,
                 taps: Sequence[Tap] = (), viewer=None, realtime: bool = False):
        self.world, self.agent, self.synth = world, agent, synth
        self.viewer = viewer
        self.metrics = Metrics()
        self.taps: list[Tap] = [self.metrics, *taps] + ([viewer] if viewer is not None else [])
        self.realtime = realtime
        self._manual: Agent | None = None

    def run(self, frames: int, *, seed: int, stop_at_route_end: bool = False,
            info: dict | None = None, progress=None) -> LoopResult:
        """Run `frames` ticks (fewer if the route ends and `stop_at_route_end`)."""
        frame = self.world.reset(seed)
        self.agent.reset(self.world.route, seed)
        run_info = RunInfo(world=self.world.name, map_name=self.world.map_name, seed=seed,
                           fps=self.world.fps, cameras=list(self.world.cameras),
                           style=getattr(self.world, "style", ""),
                           weather=getattr(self.world, "weather", ""), agent=self.agent.name,
                           synth=self.synth.name, route=self.world.route, **(info or {}))
        for tap in self.taps:
            tap.on_reset(run_info)
        control = self._act(frame, self._see(frame)[0], manual=False)
        manual = paused = interrupted = terminated = False
        loop_fps, done = 0.0, 0
        start = last = due = time.perf_counter()
        try:
            while done < frames:
                if self.viewer is not None:
                    commands = self.viewer.poll()
                    if "quit" in commands:
                        interrupted = True
                        break
                    paused ^= "pause" in commands
                    manual ^= "manual" in commands
                    if paused:
                        self.viewer.redraw()
                        time.sleep(1 / 30)
                        continue
                frame = self.world.tick(control)
                image, synth_ms = self._see(frame)
                control = self._act(frame, image, manual)
                now = time.perf_counter()
                dt = max(now - last, 1e-9)
                loop_fps = 1.0 / dt if done == 0 else 0.9 * loop_fps + 0.1 / dt
                step = Step(frame, image, control, synth_ms, loop_fps, manual)
                for tap in self.taps:
                    tap.on_step(step)
                done += 1
                if progress is not None:
                    progress.update(1)
                if self.realtime:  # keep ticks 1/fps apart in wall time, catching up if late
                    due = max(due + 1.0 / self.world.fps, time.perf_counter() - 0.25)
                    time.sleep(max(0.0, due - time.perf_counter()))
                last = time.perf_counter()
                if stop_at_route_end and frame.ego.route_completion >= 0.999:
                    terminated = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:  # taps close even when the world or the agent fails (recorders finish their file)
            wall = time.perf_counter() - start
            for tap in self.taps:
                tap.on_close()
        summary = self.metrics.summary()
        summary.update(wall_seconds=round(wall, 4), fps=round(done / max(wall, 1e-9), 2),
                       terminated=terminated, interrupted=interrupted)
        return LoopResult(summary, frame, interrupted, terminated)

    def _see(self, frame: Frame):
        t0 = time.perf_counter()
        image = self.synth(frame)
        return image, (time.perf_counter() - t0) * 1000.0

    def _act(self, frame: Frame, image, manual: bool) -> Control:
        obs = Observation(frame, image, self.world.route)
        if manual:
            if self._manual is None:
                from .agents.manual import ManualAgent

                self._manual = ManualAgent(self.viewer)
            return self._manual.act(obs)
        return self.agent.act(obs)
