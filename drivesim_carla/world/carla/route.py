"""The ego's route on a CARLA map, planned on the client from the map's OpenDRIVE topology.

Works on `carla.Waypoint` objects (duck-typed, so `carla` is not imported here): it walks
`Waypoint.next()` a metre at a time, picks a seeded branch at every fork, and labels junction
crossings with CARLA's `RoadOption`s by the heading change across the junction, as CARLA's own
local planner does.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ...route import RoadOption, Route, Waypoint

STEP = 1.0  # metres between route waypoints
TURN = 35.0  # degrees of heading change across a junction that make a turn (CARLA's threshold)
U_TURN = 150.0  # degrees: a branch that turns back this much is taken only if nothing else is left
SIGNAL_RADIUS = 2.0  # metres: a traffic light's stop waypoint this near a route waypoint binds to it


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def _yaw(wp) -> float:
    return float(wp.transform.rotation.yaw)


def _xy(wp) -> tuple[float, float]:
    loc = wp.transform.location
    return float(loc.x), float(loc.y)


def turn_option(entry_yaw: float, exit_yaw: float) -> RoadOption:
    """STRAIGHT, LEFT or RIGHT for a crossing from `entry_yaw` to `exit_yaw` (CARLA degrees:
    yaw grows clockwise seen from above, so a right turn increases it)."""
    d = _wrap(exit_yaw - entry_yaw)
    if abs(d) < TURN:
        return RoadOption.STRAIGHT
    return RoadOption.RIGHT if d > 0 else RoadOption.LEFT


def _exit_yaw(branch) -> float:
    """Heading at the end of the lane that `branch` starts (the far side of a junction)."""
    ahead = branch.next_until_lane_end(STEP)
    return _yaw(ahead[-1] if ahead else branch)


def _choose(options: list, yaw: float, rng: np.random.Generator):
    """A seeded pick among the branches at a fork, avoiding U-turns while there are others."""
    keep = [o for o in options if abs(_wrap(_exit_yaw(o) - yaw)) < U_TURN] or options
    return keep[int(rng.integers(len(keep)))]


def walk(start, length: float, rng: np.random.Generator) -> list:
    """`carla.Waypoint`s from `start`, STEP apart, for about `length` metres (fewer at a dead end)."""
    out = [start]
    total, wp = 0.0, start
    for _ in range(int(length / STEP) * 3 + 100):  # bounded even on a degenerate map
        if total >= length:
            break
        options = wp.next(STEP)
        if not options:
            break
        nxt = options[0] if len(options) == 1 else _choose(options, _yaw(wp), rng)
        d = math.dist(_xy(out[-1]), _xy(nxt))
        wp = nxt
        if d > 1e-3:
            out.append(nxt)
            total += d
    return out


def _options(wps: list) -> list[RoadOption]:
    """LANEFOLLOW outside junctions; inside, the turn of the whole crossing."""
    opts = [RoadOption.LANEFOLLOW] * len(wps)
    i = 0
    while i < len(wps):
        if not wps[i].is_junction:
            i += 1
            continue
        j = i
        while j < len(wps) and wps[j].is_junction:
            j += 1
        exit_yaw = _yaw(wps[j]) if j < len(wps) else _exit_yaw(wps[-1])  # ends inside: look on
        option = turn_option(_yaw(wps[max(i - 1, 0)]), exit_yaw)
        opts[i:j] = [option] * (j - i)
        i = j
    return opts


def plan_route(start, length: float, rng: np.random.Generator,
               speed_limit: float = 30.0 / 3.6) -> Route:
    """A seeded drive of about `length` metres from the `carla.Waypoint` `start`."""
    wps = walk(start, length, rng)
    xy = np.array([_xy(w) for w in wps])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    out = [Waypoint(float(x), float(y), _yaw(w), float(si), int(w.road_id), int(w.lane_id), -1,
                    int(w.junction_id) if w.is_junction else -1, opt, None, speed_limit)
           for (x, y), w, si, opt in zip(xy, wps, s, _options(wps))]
    return Route(out)


def attach_signals(route: Route, stops: dict[int, list[tuple[int, int, float, float]]]) -> Route:
    """`route` with `signal_id` set on the waypoint at each traffic light's stop line.

    `stops`: traffic light id -> its stop waypoints as (road_id, lane_id, x, y)."""
    wps = list(route.waypoints)
    for light, points in stops.items():
        for road, lane, x, y in points:
            d = np.hypot(route.xy[:, 0] - x, route.xy[:, 1] - y)
            same = np.array([w.road_id == road and w.lane_id == lane for w in wps])
            d[~same] = np.inf
            k = int(np.argmin(d)) if len(d) else 0
            if len(d) and d[k] < SIGNAL_RADIUS:
                wps[k] = replace(wps[k], signal_id=light)
    return Route(wps)
