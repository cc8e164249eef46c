"""A person in the loop: the live view's commands and real-time pacing, as a wrapper and a tap
around `ClosedLoop` rather than branches inside it.

`Interactive(loop, viewer).step` is a drop-in for `loop.step`: it polls the window first, stays
paused while the person says so, hands the wheel to the keyboard (`ManualAgent`) and back, and
ends the episode on quit. `Pacer` keeps ticks 1/fps apart in wall time.
"""

from __future__ import annotations

import time

from .loop import ClosedLoop, StopEpisode
from .taps import RunInfo, Step

PAUSED_POLL_S = 1 / 30


class Interactive:
    """Steps `loop` under the commands of `viewer` (quit, pause, take the wheel)."""

    def __init__(self, loop: ClosedLoop, viewer):
        self.loop, self.viewer = loop, viewer
        self.paused = False
        self._manual = None

    def step(self) -> Step:
        while True:
            commands = self.viewer.poll()
            if "quit" in commands:
                raise StopEpisode("quit from the window")
            self.paused ^= "pause" in commands
            if "manual" in commands:
                self._toggle_manual()
            if not self.paused:
                return self.loop.step()
            self.viewer.redraw()
            time.sleep(PAUSED_POLL_S)

    def _toggle_manual(self) -> None:
        """The keyboard drives from the next decision on; pressed again, the episode's agent."""
        if self.loop.driver is not self.loop.agent:
            self.loop.driver = self.loop.agent
            return
        if self._manual is None:
            from .agents.manual import ManualAgent

            self._manual = ManualAgent(self.viewer)
        self.loop.driver = self._manual


class Pacer:
    """A tap that holds each step until 1/fps after the last one (real time), catching up when late
    by at most a quarter of a second."""

    def __init__(self, fps: float, max_lag: float = 0.25):
        self.period, self.max_lag = 1.0 / fps, max_lag
        self.due = 0.0

    def on_reset(self, info: RunInfo) -> None:
        self.due = time.perf_counter()

    def on_step(self, step: Step) -> None:
        self.due = max(self.due + self.period, time.perf_counter() - self.max_lag)
        time.sleep(max(0.0, self.due - time.perf_counter()))

    def on_close(self) -> None:
        pass
