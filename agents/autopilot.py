"""The privileged autopilot: follows the planned route, keeps its distance to vehicles and
pedestrians ahead, and stops at red lights.

Lateral control is pure pursuit on the route; longitudinal control is the Intelligent Driver
Model (IDM) over the nearest hazard on the route ahead (a vehicle, a pedestrian, a red stop line
or the route's end), mapped to throttle and brake.
"""

from __future__ import annotations

import math

import numpy as np

from ..route import Route
from ..types import ActorState, Control
from ..vehicle import DRAG, MAX_ACCEL, MAX_BRAKE, MAX_STEER_DEG, POWER_PER_MASS, ROLLING, WHEELBASE, idm
from .base import Agent, Observation

FRONT_OFFSET = 1.45  # ego origin to front axle
STANLEY_GAIN = 2.5
A_MAX, B_COMFORT, GAP_MIN, HEADWAY = 2.5, 3.0, 3.0, 1.2
A_LAT = 2.5  # m/s^2 allowed in curves
CORRIDOR = 1.35  # m from the route centreline that counts as "in our lane"
HORIZON = 45.0  # m of route checked for hazards


class Autopilot(Agent):
    name = "autopilot"

    def __init__(self, target_speed: float = 30.0, max_steer_deg: float = MAX_STEER_DEG):
        self.target_speed = target_speed / 3.6
        self.max_steer = math.radians(max_steer_deg)
        self.progress = 0.0
        self.front = 0.0

    def reset(self, route: Route, seed: int | None = None) -> None:
        self.progress = 0.0
        self.front = 0.0

    def act(self, obs: Observation) -> Control:
        ego = obs.frame.ego
        route = obs.route
        x, y = ego.transform.x, ego.transform.y
        yaw = math.radians(ego.transform.yaw)
        v = ego.speed
        self.progress = route.project(x, y, hint=self.progress)
        steer = self._steer(route, x, y, yaw, v)
        gap, lead_v = self._hazard(obs, v, ego.extent[0])
        v0 = min(self.target_speed, self._curve_speed(route), self._limit(route))
        acc = idm(v, v0, gap, lead_v, a_max=A_MAX, b=B_COMFORT, s0=GAP_MIN, headway=HEADWAY,
                  floor=-8.0)
        return self._pedals(acc, v, steer)

    # ----- lateral --------------------------------------------------------------------------
    def _steer(self, route: Route, x: float, y: float, yaw: float, v: float) -> float:
        """Stanley steering at the front axle (heading and cross-track error) plus the path's
        curvature as feed-forward."""
        fx, fy = x + FRONT_OFFSET * math.cos(yaw), y + FRONT_OFFSET * math.sin(yaw)
        self.front = route.project(fx, fy, hint=self.front)
        px, py, _ = route.point_at(self.front)
        h_back, h_mid, h_ahead = (route.point_at(self.front + d)[2] for d in (-1.0, 0.0, 1.0))
        kappa = _wrap(h_ahead - h_back) / 2.0
        heading_err = _wrap(h_mid - yaw)
        cross = -math.sin(yaw) * (px - fx) + math.cos(yaw) * (py - fy)  # + : path to the right
        delta = (heading_err + math.atan2(STANLEY_GAIN * cross, v + 1.0)
                 + math.atan(WHEELBASE * kappa))
        return float(np.clip(delta / self.max_steer, -1.0, 1.0))

    # ----- longitudinal ---------------------------------------------------------------------
    def _limit(self, route: Route) -> float:
        return route.waypoints[route.index_at(self.progress)].speed_limit

    def _curve_speed(self, route: Route) -> float:
        """Speed that keeps lateral acceleration under A_LAT over the next 25 m."""
        s0 = self.progress
        headings = []
        for d in (2.0, 8.0, 14.0, 20.0, 26.0):
            headings.append(route.point_at(s0 + d)[2])
        turn = np.abs(np.angle(np.exp(1j * np.diff(headings)))).max()
        kappa = turn / 6.0
        return math.sqrt(A_LAT / kappa) if kappa > 1e-4 else math.inf

    def _hazard(self, obs: Observation, v: float, half_len: float) -> tuple[float, float]:
        """Free gap (m) ahead of the front bumper to the nearest hazard, and its speed."""
        route = obs.route
        # the route's end: stop with the centre 0.5 m before it
        gap, lead_v = route.length - self.progress - 0.5 + GAP_MIN, 0.0
        lo = np.searchsorted(route.s, self.progress)
        hi = np.searchsorted(route.s, self.progress + HORIZON)
        path, path_s = route.xy[lo:hi], route.s[lo:hi] - self.progress
        if len(path):
            for actor in obs.frame.actors:
                d, speed = self._on_path(actor, path, path_s)
                if d - half_len < gap:
                    gap, lead_v = d - half_len, speed
        stop = self._stop_line(obs, v, half_len)
        if stop < gap:
            gap, lead_v = stop, 0.0
        return gap, lead_v

    @staticmethod
    def _on_path(actor: ActorState, path: np.ndarray, path_s: np.ndarray) -> tuple[float, float]:
        """Distance along our path at which `actor` (now or within ~1.5 s) blocks it."""
        t = actor.transform
        yaw = math.radians(t.yaw)
        c, s = math.cos(yaw), math.sin(yaw)
        hx, hy = actor.extent[0], actor.extent[1]
        pts = [(t.x + c * a - s * b, t.y + s * a + c * b)
               for a, b in ((0, 0), (hx, hy), (hx, -hy), (-hx, hy), (-hx, -hy))]
        vx, vy = actor.velocity[0], actor.velocity[1]
        if actor.kind == "pedestrian":
            pts += [(t.x + vx * dt, t.y + vy * dt) for dt in (0.75, 1.5)]
        d = np.linalg.norm(np.asarray(pts)[:, None, :] - path[None, :, :], axis=-1)
        near = (d < CORRIDOR + (0.3 if actor.kind == "pedestrian" else 0.0)).any(axis=0)
        if not near.any():
            return math.inf, 0.0
        k = int(np.argmax(near))
        if path_s[k] <= 0.0:
            return math.inf, 0.0
        heading = math.atan2(path[min(k + 1, len(path) - 1), 1] - path[max(k - 1, 0), 1],
                             path[min(k + 1, len(path) - 1), 0] - path[max(k - 1, 0), 0])
        along = vx * math.cos(heading) + vy * math.sin(heading)
        return float(path_s[k]), max(0.0, along)

    def _stop_line(self, obs: Observation, v: float, half_len: float) -> float:
        route = obs.route
        i = route.index_at(self.progress)
        for w in route.waypoints[i:]:
            ahead = w.s - self.progress
            if ahead > HORIZON:
                break
            if w.signal_id is None or w.signal_id not in obs.frame.traffic_lights:
                continue
            state = obs.frame.traffic_lights[w.signal_id].state
            d = ahead - half_len - 0.5
            if d < -1.0:
                continue  # already past it
            if state == "red" or (state == "yellow" and d > v * v / (2 * B_COMFORT)):
                return max(d, 0.0)
        return math.inf

    @staticmethod
    def _pedals(acc: float, v: float, steer: float) -> Control:
        # invert the vehicle model: throttle and brake that give acceleration `acc`
        resist = ROLLING + DRAG * v * v
        if acc >= -resist:
            a_max = min(MAX_ACCEL, POWER_PER_MASS / max(v, 1e-3))
            return Control(throttle=float(np.clip((acc + resist) / a_max, 0.0, 1.0)), steer=steer)
        brake = float(np.clip((-acc - resist) / MAX_BRAKE, 0.0, 1.0))
        if v < 0.3 and acc < 0:
            brake = max(brake, 0.5)  # hold still
        return Control(brake=brake, steer=steer)


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))
