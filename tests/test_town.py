"""The procedural town: determinism, the network as CARLA's own parser reads it, the lane graph,
the ground raster, static boxes and traffic lights."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import networkx as nx
import numpy as np
import pytest

from drivesim_carla.labels import Tag
from drivesim_carla.world.embedded import town as town_mod
from drivesim_carla.world.embedded.scene import DRIVABLE, Boxes, Ground, Town
from drivesim_carla.world.embedded.town import build_town

SEED = 0


@pytest.fixture(scope="module")
def town() -> Town:
    return build_town(SEED)


def _heading(points: np.ndarray, k: int) -> float:
    a, b = points[max(k - 1, 0)], points[min(k + 1, len(points) - 1)]
    return math.atan2(b[1] - a[1], b[0] - a[0])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


# ----- determinism and caching ----------------------------------------------------------------
def _arrays(t: Town) -> list[np.ndarray]:
    out = [t.ground.material, t.ground.lane, t.parking, t.lights.position]
    out += [getattr(t.static, f) for f in Boxes._fields()]
    out += [t.lanes[k].points for k in sorted(t.lanes)]
    out += [np.array(t.spawn_points)] + list(t.sidewalks)
    out += [t.signals[k].lamp_centers for k in sorted(t.signals)]
    return out


def test_same_seed_same_town():
    a = town_mod._build.__wrapped__(7, (2, 2))
    b = town_mod._build.__wrapped__(7, (2, 2))
    assert a.network.to_xodr() == b.network.to_xodr()
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b), strict=True))
    assert a.static_kind == b.static_kind
    c = town_mod._build.__wrapped__(8, (2, 2))
    assert c.ground.material.shape != a.ground.material.shape or \
        not np.array_equal(c.ground.material, a.ground.material)


def test_cached_and_read_only(town: Town):
    assert build_town(SEED, (3, 3)) is town
    assert town.name == f"Embedded{SEED:04d}"
    for arr in (town.ground.material, town.ground.lane, town.static.center, town.parking):
        assert not arr.flags.writeable
    assert town.ground.material.dtype == np.uint8 and town.ground.lane.dtype == np.int32


def test_grid_shape_and_t_junctions(town: Town):
    assert len(town.network.junctions) == 16
    arms = sorted(town.junction_phases.values())
    assert arms.count(2) == 4  # the grid's corners are bends
    assert 3 in arms and min(arms) >= 2
    interior_t = [j for j, n in town.junction_phases.items() if n == 3]
    assert len(interior_t) > 8  # 8 edge junctions plus the T-junctions of dropped pieces


# ----- the network through CARLA's parser -----------------------------------------------------
CARLA_SCRIPT = r"""
import json, sys
import carla
xodr, queries = sys.stdin.read().split("\n#QUERIES#\n")
q = json.loads(queries)
m = carla.Map("town", xodr)
points = []
for x, y in q["points"]:
    w = m.get_waypoint(carla.Location(x=x, y=y, z=0.0))
    t = w.transform
    points.append([w.road_id, w.lane_id, t.location.x, t.location.y, t.rotation.yaw])
ends = []
for x, y in q["ends"]:
    w = m.get_waypoint(carla.Location(x=x, y=y, z=0.0))
    ends.append(sorted({(n.road_id, n.lane_id) for n in w.next(4.0)}))
topo = m.get_topology()
kinds = sorted({a.is_junction for a, _ in topo})
junctions = len({a.get_junction().id for a, _ in topo if a.is_junction})
print(json.dumps({"points": points, "ends": ends, "kinds": kinds, "junctions": junctions,
                  "waypoints": len(m.generate_waypoints(2.0))}))
"""


def _carla(town: Town) -> tuple[dict, list[tuple[int, int]], list[int]]:
    pytest.importorskip("carla")
    points, owners, ends = [], [], []
    for sid, seg in sorted(town.lanes.items()):
        n = len(seg.points)
        picks = [_loneliest(town, sid)] if seg.junction_id >= 0 else [n // 4, n // 2, (3 * n) // 4]
        for k in sorted(set(picks)):
            points.append([float(v) for v in seg.points[k]])
            owners.append((sid, k))
        if seg.junction_id < 0:
            ends.append(sid)
    end_pts = [[float(v) for v in town.lanes[sid].points[-3]] for sid in ends]
    payload = json.dumps({"points": points, "ends": end_pts})
    proc = subprocess.run([sys.executable, "-c", CARLA_SCRIPT], capture_output=True, text=True,
                          input=town.network.to_xodr() + "\n#QUERIES#\n" + payload, timeout=120)
    assert proc.returncode == 0, f"carla client failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), owners, ends


def _loneliest(town: Town, sid: int) -> int:
    """The point of a junction connector farthest from the junction's other connectors (they
    share straight runs and cross each other, where any of them is a right answer)."""
    seg = town.lanes[sid]
    others = np.concatenate([s.points for k, s in town.lanes.items()
                             if s.junction_id == seg.junction_id and k != sid])
    n = len(seg.points)
    inner = seg.points[n // 5: n - n // 5]
    d = np.hypot(inner[:, None, 0] - others[None, :, 0], inner[:, None, 1] - others[None, :, 1])
    return n // 5 + int(np.argmax(d.min(axis=1)))


@pytest.fixture(scope="module")
def carla_view(town: Town) -> tuple[dict, list[tuple[int, int]], list[int]]:
    return _carla(town)


def test_carla_finds_every_lane_segment_where_we_put_it(town: Town, carla_view):
    res, owners, _ = carla_view
    assert len(res["points"]) == len(owners)
    for (sid, k), (road, lane, x, y, yaw) in zip(owners, res["points"], strict=True):
        seg = town.lanes[sid]
        assert (road, lane) == (seg.road_id, seg.lane_id), f"segment {sid}"
        # the waypoint lies on our centreline (CARLA may slide it along the lane a little)
        dense, tangent = _densify(seg.points)
        d = np.hypot(dense[:, 0] - x, dense[:, 1] - y)
        j = int(np.argmin(d))
        assert d[j] < 0.04, f"segment {sid}: waypoint {d[j]:.3f} m off our centreline"
        assert math.hypot(*(seg.points[k] - (x, y))) < 0.5
        # CARLA's yaw is the reference line's heading: off by atan(width'/2) where a connector
        # blends two lane widths
        assert abs(_wrap(math.radians(yaw) - tangent[j])) < math.radians(3.0), f"segment {sid}"


def _densify(points: np.ndarray, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Points between the samples and the centreline's tangent there (central differences
    at the samples, interpolated)."""
    tang = np.unwrap([_heading(points, k) for k in range(len(points))])
    t = np.linspace(0.0, 1.0, n)[:, None]
    pieces = range(len(points) - 1)
    dense = np.concatenate([points[i] + t * (points[i + 1] - points[i]) for i in pieces])
    heads = np.concatenate([tang[i] + t[:, 0] * (tang[i + 1] - tang[i]) for i in pieces])
    return dense, heads


def test_carla_topology_matches_ours(town: Town, carla_view):
    res, _, ends = carla_view
    assert res["kinds"] == [False, True]
    assert res["junctions"] == len(town.network.junctions)
    total = sum(seg.length for seg in town.lanes.values())
    assert res["waypoints"] > 0.8 * total / 2.0
    for sid, nxt in zip(ends, res["ends"], strict=True):
        succ = [town.lanes[m] for m in town.lanes[sid].successors]
        ours = sorted((m.road_id, m.lane_id) for m in succ)
        assert sorted(map(tuple, nxt)) == ours, f"segment {sid}"


def test_xodr_parses_as_xml(town: Town):
    root = ET.fromstring(town.network.to_xodr())
    assert len(root.findall("road")) == len(town.network.roads)
    assert len(root.findall("junction")) == len(town.network.junctions)
    assert root.findall("road/planView/geometry/arc")
    assert root.find("header/geoReference") is not None
    types = {ln.get("type") for ln in root.iter("lane")}
    assert {"driving", "sidewalk"} <= types
    assert ("parking" in types) == (len(town.parking) > 0)


# ----- lane graph -----------------------------------------------------------------------------
def test_lane_graph_is_continuous(town: Town):
    for sid, seg in town.lanes.items():
        assert seg.successors, f"dead end at segment {sid}"
        steps = np.linalg.norm(np.diff(seg.points, axis=0), axis=1)
        assert steps.max() < 1.05 and steps.min() > 0.2
        turn = np.abs([_wrap(_heading(seg.points, k + 1) - _heading(seg.points, k))
                       for k in range(len(seg.points) - 1)])
        assert turn.max() < math.radians(20)
        for m in seg.successors:
            nxt = town.lanes[m]
            assert sid in nxt.predecessors
            assert np.linalg.norm(nxt.points[0] - seg.points[-1]) < 0.3
            dh = _wrap(_heading(nxt.points, 0) - _heading(seg.points, len(seg.points) - 1))
            assert abs(dh) < math.radians(5), f"{sid} -> {m}"
            assert (nxt.junction_id >= 0) != (seg.junction_id >= 0)


def test_lane_graph_is_strongly_connected(town: Town):
    g = nx.DiGraph()
    for sid, seg in town.lanes.items():
        g.add_edges_from((sid, m) for m in seg.successors)
        g.add_edges_from((sid, m) for m in (seg.left, seg.right) if m is not None)
    assert nx.is_strongly_connected(g)


def test_neighbours_and_labels(town: Town):
    for sid, seg in town.lanes.items():
        if seg.junction_id >= 0:
            assert seg.turn in ("straight", "left", "right") and seg.left is None
            continue
        assert seg.turn == "follow" and seg.signal_id is not None
        if seg.left is not None:
            other = town.lanes[seg.left]
            assert other.right == sid and other.road_id == seg.road_id
            # the left neighbour sits to the left: -90 degrees from the heading in CARLA
            h = _heading(seg.points, 2)
            off = other.points[len(other.points) // 2] - seg.points[len(seg.points) // 2]
            assert off @ (math.sin(h), -math.cos(h)) == pytest.approx(seg.width, abs=0.05)


def test_turn_labels_by_heading_change(town: Town):
    for seg in town.lanes.values():
        if seg.junction_id < 0:
            continue
        end = _heading(seg.points, len(seg.points) - 1)
        dyaw = math.degrees(_wrap(end - _heading(seg.points, 0)))
        want = {"straight": 0.0, "right": 90.0, "left": -90.0}[seg.turn]
        assert dyaw == pytest.approx(want, abs=2.0)


def test_turn_labels_hand_checked(town: Town):
    """An eastbound (CARLA yaw 0) approach: its right turn ends heading +y, i.e. at larger y."""
    def turns(s):
        return {town.lanes[m].turn for m in town.lanes[s.segments[-1]].successors}

    sig = next(s for s in town.signals.values() if abs(s.heading) < 1e-6 and "right" in turns(s))
    rightmost = town.lanes[sig.segments[-1]]
    turns = {town.lanes[m].turn: town.lanes[m] for m in rightmost.successors}
    right = turns["right"].points
    assert right[-1, 1] > right[0, 1] + 3.0
    assert _heading(right, len(right) - 1) == pytest.approx(math.pi / 2, abs=0.03)


# ----- ground ---------------------------------------------------------------------------------
def test_ground_covers_town_with_margin(town: Town):
    g = town.ground
    h, w = g.material.shape
    xmin, ymin, xmax, ymax = town.bounds
    assert g.resolution == 0.1
    assert g.origin[0] <= xmin - 39 and g.origin[1] <= ymin - 39
    assert g.origin[0] + w * g.resolution >= xmax + 39
    assert g.origin[1] + h * g.resolution >= ymax + 39


def test_ground_agrees_with_lane_segments(town: Town):
    g = town.ground
    for sid, seg in town.lanes.items():
        pts = seg.points
        assert DRIVABLE[g.material_at(pts[:, 0], pts[:, 1])].all(), f"segment {sid}"
        i, j, inside = g.cell(pts[:, 0], pts[:, 1])
        assert inside.all()
        if seg.junction_id >= 0:
            assert (g.lane[i[2:-2], j[2:-2]] == -2).all()
        else:
            assert (g.lane[i[1:-1], j[1:-1]] == sid).all(), f"segment {sid}"


def test_ground_materials_present_and_parking_coded(town: Town):
    g = town.ground
    present = set(np.unique(g.material[::4, ::4]).tolist())
    assert {Ground.GRASS, Ground.ASPHALT, Ground.SIDEWALK, Ground.CURB,
            Ground.LANE_WHITE_SOLID, Ground.LANE_YELLOW_SOLID, Ground.CROSSWALK} <= present
    assert (g.material == Ground.STOP_LINE).any()
    two_lane = any(abs(seg.lane_id) == 2 for seg in town.lanes.values())
    assert (g.material == Ground.LANE_WHITE_BROKEN).any() == two_lane
    assert (g.material == Ground.PARKING).any() == (len(town.parking) > 0)
    if len(town.parking):
        i, j, _ = g.cell(town.parking[:, 0], town.parking[:, 1])
        assert (g.lane[i, j] == -3).all()
        assert (g.material[i, j] == Ground.PARKING).all()


def test_sidewalk_polylines_are_on_sidewalks(town: Town):
    g = town.ground
    for poly in town.sidewalks:
        closed = np.vstack([poly, poly[:1]])
        pts = np.concatenate([np.linspace(closed[k], closed[k + 1], 200) for k in range(len(poly))])
        mats = g.material_at(pts[:, 0], pts[:, 1])
        assert np.isin(mats, [Ground.SIDEWALK, Ground.CURB]).mean() > 0.99


# ----- static boxes and lights ----------------------------------------------------------------
def test_static_boxes_stay_off_driving_lanes(town: Town):
    b = town.static
    low = (b.center[:, 2] - b.half[:, 2]) < 4.5
    corners = b.corners_2d()[low]
    pts = np.concatenate([_densify(s.points, 5)[0] for s in town.lanes.values()])  # 0.25 m
    for c in corners:
        lo, hi = c.min(axis=0), c.max(axis=0)
        near = pts[((pts > lo) & (pts < hi)).all(axis=1)]
        if len(near):
            edge = np.roll(c, -1, axis=0) - c
            rel = near[:, None, :] - c[None]
            cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
            inside = (cross > 0).all(axis=1) | (cross < 0).all(axis=1)
            assert not inside.any(), f"box at {c.mean(axis=0)} sits on a lane centreline"
    foot = b.center[b.center[:, 2] - b.half[:, 2] < 0.5]
    assert not DRIVABLE[town.ground.material_at(foot[:, 0], foot[:, 1])].any()


def test_static_instances_and_kinds(town: Town):
    b = town.static
    ids = np.unique(b.instance)
    assert ids.min() == 1 and ids.max() < 100_000
    assert set(ids.tolist()) == set(town.static_kind)
    kinds = set(town.static_kind.values())
    assert {"static.building", "static.vegetation", "static.pole", "static.sign",
            "static.traffic_light"} <= kinds
    assert kinds <= {"static.building", "static.wall", "static.fence", "static.vegetation",
                     "static.pole", "static.sign", "static.traffic_light"}
    want = {"static.building": {Tag.BUILDING}, "static.wall": {Tag.WALL},
            "static.fence": {Tag.FENCE}, "static.vegetation": {Tag.VEGETATION},
            "static.pole": {Tag.POLE}, "static.sign": {Tag.TRAFFIC_SIGN},
            "static.traffic_light": {Tag.TRAFFIC_LIGHT}}
    for i, kind in town.static_kind.items():  # one object, one semantic tag
        assert set(b.tag[b.instance == i].tolist()) == want[kind], kind
    heights = [(b.center[b.instance == i, 2] + b.half[b.instance == i, 2]).max()
               for i, k in town.static_kind.items() if k == "static.building"]
    assert 6.0 <= min(heights) and max(heights) <= 43.0
    assert len(town.lights.position) > 20 and np.allclose(town.lights.position[:, 2], 7.0)
    heads = b.center[(b.tag == Tag.POLE) & (b.center[:, 2] > 7.0), :2]
    for p in town.lights.position:  # every light hangs at a lamp head
        assert np.hypot(*(heads - p[:2]).T).min() < 0.05


# ----- signals --------------------------------------------------------------------------------
def test_signals_sit_at_their_stop_lines(town: Town):
    by_junction: dict[int, list[int]] = {}
    for sig in town.signals.values():
        by_junction.setdefault(sig.junction_id, []).append(sig.phase)
        f = np.array([math.cos(sig.heading), math.sin(sig.heading)])
        for sid in sig.segments:
            seg = town.lanes[sid]
            assert seg.signal_id == sig.id and seg.junction_id < 0
            rel = seg.points[-1] - np.array(sig.stop_line)
            assert abs(rel @ f) < 0.02
            assert abs(rel @ (-f[1], f[0])) < seg.width * len(sig.segments) / 2
            assert abs(_wrap(_heading(seg.points, len(seg.points) - 1) - sig.heading)) < 0.01
            behind = seg.points[-1] - f * 0.2
            assert town.ground.material_at(behind[:1], behind[1:])[0] == Ground.STOP_LINE
        lamps = sig.lamp_centers
        assert lamps.shape == (3, 3) and (np.diff(lamps[:, 2]) < 0).all()
        assert 4.0 < lamps[1, 2] < 6.0
        housing = town.static.instance == sig.box_instance
        assert set(town.static.tag[housing].tolist()) == {Tag.TRAFFIC_LIGHT}
        box = town.static.center[housing, :2][0]
        ahead = (lamps[1, :2] - box) @ f
        poles = town.static.center[town.static.tag == Tag.POLE, :2]
        assert np.hypot(*(poles - box).T).min() < 1.5  # held up by a pole beside the road
        assert ahead < 0  # lamps on the face toward the approaching drivers
        to_light = lamps[1, :2] - np.array(sig.stop_line)
        assert to_light @ (-f[1], f[0]) > 0  # on the right of the approach (CARLA: +90 deg)
    for jid, phases in by_junction.items():
        assert sorted(phases) == list(range(town.junction_phases[jid]))
    assert set(by_junction) == set(town.junction_phases)


def test_spawn_points_and_parking(town: Town):
    assert len(town.spawn_points) > 50
    for sid, d in town.spawn_points:
        seg = town.lanes[sid]
        assert seg.junction_id < 0 and 12.0 - 1e-6 <= d <= seg.length - 12.0 + 1e-6
    assert town.parking.shape[1] == 3


def test_other_block_counts_build():
    t = town_mod._build.__wrapped__(3, (1, 2))
    assert len(t.network.junctions) == 6
    assert all(seg.successors for seg in t.lanes.values())
    assert len(t.sidewalks) == 3
