"""The vehicle model every backend and agent shares: constants, a kinematic bicycle driven by
CARLA-style controls, and the Intelligent Driver Model (IDM) for keeping distance.

Nothing here depends on a world backend, so the autopilot drives the same on the embedded world,
on CARLA and in a learned world."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .types import Control

WHEELBASE = 2.9  # m
REAR_TO_CG = 1.45  # m, centre of the vehicle to the rear axle
MAX_STEER_DEG = 40.0  # front wheel angle at steer = 1
MAX_ACCEL = 4.0  # m/s^2 at full throttle, low speed
POWER_PER_MASS = 28.0  # W/kg: caps acceleration at speed (a <= P / (m v))
MAX_BRAKE = 8.0  # m/s^2 at full brake
HAND_BRAKE = 5.0  # m/s^2
DRAG = 0.0012  # 1/m: aerodynamic deceleration per (m/s)^2
ROLLING = 0.15  # m/s^2
MAX_REVERSE_SPEED = 4.0  # m/s
MASS = 1800.0  # kg, for collision impulses

# Intelligent Driver Model defaults (traffic); the autopilot passes its own
IDM_ACCEL, IDM_DECEL, IDM_GAP, IDM_HEADWAY = 2.0, 3.0, 3.0, 1.2


@dataclass
class BicycleState:
    x: float
    y: float
    yaw: float  # radians
    v: float = 0.0  # m/s along the heading, negative in reverse


def step_bicycle(s: BicycleState, c: Control, dt: float) -> BicycleState:
    """Advance the state by `dt` seconds under control `c` (semi-implicit Euler)."""
    c = c.clipped()
    speed = abs(s.v)
    drive = c.throttle * min(MAX_ACCEL, POWER_PER_MASS / max(speed, 1e-3))
    if c.reverse:
        drive = -drive if s.v > -MAX_REVERSE_SPEED else 0.0
    resist = c.brake * MAX_BRAKE + (HAND_BRAKE if c.hand_brake else 0.0)
    resist += ROLLING + DRAG * speed * speed
    v = s.v + drive * dt
    # Resistances oppose motion and never reverse it.
    if v > 0:
        v = max(0.0, v - resist * dt)
    elif v < 0:
        v = min(0.0, v + resist * dt)
    delta = math.radians(MAX_STEER_DEG) * c.steer
    beta = math.atan(REAR_TO_CG / WHEELBASE * math.tan(delta))
    yaw = s.yaw + v / REAR_TO_CG * math.sin(beta) * dt
    x = s.x + v * math.cos(yaw + beta) * dt
    y = s.y + v * math.sin(yaw + beta) * dt
    return BicycleState(x, y, math.atan2(math.sin(yaw), math.cos(yaw)), v)


def idm(v: float, v0: float, gap: float, lead_v: float, *, a_max: float = IDM_ACCEL,
        b: float = IDM_DECEL, s0: float = IDM_GAP, headway: float = IDM_HEADWAY,
        floor: float = -9.0) -> float:
    """Intelligent Driver Model acceleration towards speed v0 behind a leader `gap` m ahead."""
    free = 1.0 - (v / max(v0, 0.1)) ** 4
    if not math.isfinite(gap):
        return a_max * free
    s_star = s0 + v * headway + v * (v - lead_v) / (2 * math.sqrt(a_max * b))
    return max(a_max * (free - (max(s_star, 0.0) / max(gap, 0.1)) ** 2), floor)
