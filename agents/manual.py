"""The manual agent: a person drives with the keyboard of the viewer's window.

W/Up throttle, S/Down brake, A/D or Left/Right steer (ramped), Space hand brake, R reverse.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from ..errors import DrivesimError  # noqa: E402
from ..route import Route  # noqa: E402
from ..types import Control  # noqa: E402
from .base import Agent, Observation  # noqa: E402

if TYPE_CHECKING:
    from ..viewer import Viewer

THROTTLE_KEYS = frozenset({pygame.K_w, pygame.K_UP})
BRAKE_KEYS = frozenset({pygame.K_s, pygame.K_DOWN})
LEFT_KEYS = frozenset({pygame.K_a, pygame.K_LEFT})
RIGHT_KEYS = frozenset({pygame.K_d, pygame.K_RIGHT})
HAND_BRAKE_KEYS = frozenset({pygame.K_SPACE})
REVERSE_KEYS = frozenset({pygame.K_r})


class ManualAgent(Agent):
    """Keyboard driving through a `Viewer`'s held keys (`viewer.pressed`).

    Steering moves towards full lock (`max_steer`, like CARLA's manual_control) by `steer_step`
    per `act()` while A/D is held, and back to 0 by `return_step` when released. R toggles
    reverse on its key press. Deterministic given the sequence of held keys.
    """

    name = "manual"

    def __init__(self, viewer: Viewer | None, *, steer_step: float = 0.05,
                 return_step: float = 0.1, max_steer: float = 0.7):
        if viewer is None or viewer.headless:
            raise DrivesimError("the manual agent needs a window: drop --headless")
        self.viewer = viewer
        self.steer_step, self.return_step, self.max_steer = steer_step, return_step, max_steer
        self.steer = 0.0
        self.reverse = False
        self._reverse_held = False

    def reset(self, route: Route, seed: int | None = None) -> None:
        self.steer = 0.0
        self.reverse = False
        self._reverse_held = False

    def act(self, obs: Observation) -> Control:
        keys = self.viewer.pressed
        left, right = bool(keys & LEFT_KEYS), bool(keys & RIGHT_KEYS)
        target = self.max_steer * (int(right) - int(left))
        step = self.steer_step if target != 0.0 else self.return_step
        self.steer = _towards(self.steer, target, step)
        reverse_held = bool(keys & REVERSE_KEYS)
        if reverse_held and not self._reverse_held:
            self.reverse = not self.reverse
        self._reverse_held = reverse_held
        return Control(
            throttle=1.0 if keys & THROTTLE_KEYS else 0.0,
            steer=round(self.steer, 6),
            brake=1.0 if keys & BRAKE_KEYS else 0.0,
            hand_brake=bool(keys & HAND_BRAKE_KEYS),
            reverse=self.reverse,
        )


def _towards(value: float, target: float, step: float) -> float:
    if value < target:
        return min(value + step, target)
    return max(value - step, target)
