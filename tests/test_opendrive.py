"""OpenDRIVE model: geometry, lane offsets, the frame change, and the 1.4 writer (checked against
the real CARLA client's parser, in a subprocess so that a C++ abort fails a test only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from drivesim_carla.world.embedded.opendrive import (
    Connection,
    Geometry,
    Junction,
    Lane,
    LaneSection,
    Road,
    RoadLink,
    RoadMark,
    RoadNetwork,
    odr_to_carla,
)


def _straight(rid: int = 1, length: float = 50.0, width: float = 3.5) -> Road:
    left = [Lane(1, "driving", (width, 0, 0, 0), RoadMark("solid")),
            Lane(2, "sidewalk", (3.0, 0, 0, 0))]
    right = [Lane(-1, "driving", (width, 0, 0, 0), RoadMark("broken")),
             Lane(-2, "driving", (width, 0, 0, 0), RoadMark("solid")),
             Lane(-3, "parking", (2.5, 0, 0, 0))]
    center = Lane(0, "none", road_mark=RoadMark("solid", "yellow"))
    return Road(rid, "r", length, [Geometry(0.0, 0.0, 0.0, 0.0, length)],
                [LaneSection(0.0, left, right, center)])


def _curved() -> Road:
    """Line 10 m, quarter arc of radius 20 m to the left, line 10 m."""
    g1 = Geometry(0.0, 0.0, 0.0, 0.0, 10.0)
    g2 = Geometry(10.0, 10.0, 0.0, 0.0, 20 * math.pi / 2, 1 / 20)
    x, y, h = g2.end()
    g3 = Geometry(g2.s + g2.length, x, y, h, 10.0)
    lane = Lane(-1, "driving", (3.0, 0, 0, 0))
    return Road(2, "c", g3.s + 10.0, [g1, g2, g3], [LaneSection(0.0, [], [lane])])


def test_arc_geometry_ends_where_a_quarter_circle_does():
    g = Geometry(0.0, 1.0, 2.0, 0.0, 10 * math.pi / 2, 0.1)
    x, y, h = g.end()
    assert (x, y, h) == pytest.approx((11.0, 12.0, math.pi / 2))
    gr = Geometry(0.0, 0.0, 0.0, math.pi / 2, 5 * math.pi / 2, -0.2)  # right turn, heading north
    assert gr.end() == pytest.approx((5.0, 5.0, 0.0), abs=1e-9)


def test_reference_line_is_continuous_across_geometries():
    road = _curved()
    s = np.linspace(0, road.length, 2001)
    x, y, h = road.reference(s)
    step = np.hypot(np.diff(x), np.diff(y))
    assert step.max() == pytest.approx(road.length / 2000, rel=1e-3)
    assert (x[-1], y[-1], h[-1]) == pytest.approx((30.0, 30.0, math.pi / 2))


def test_lane_offsets_and_centres():
    road = _straight(width=3.5)
    s = np.array([0.0, 25.0])
    assert road.lane_center_offset(-1, s) == pytest.approx([-1.75, -1.75])
    assert road.lane_center_offset(-2, s) == pytest.approx([-5.25, -5.25])
    inner, outer = road.lane_boundaries(-3, s)
    assert (inner[0], outer[0]) == pytest.approx((-7.0, -9.5))
    assert road.lane_boundaries(2, s)[1] == pytest.approx([6.5, 6.5])
    x, y, h = road.lane_center(1, s)
    assert y == pytest.approx([1.75, 1.75]) and h == pytest.approx([math.pi, math.pi])
    with pytest.raises(KeyError):
        road.lane_boundaries(-4, s)


def test_lane_width_polynomial_is_evaluated_from_the_section_start():
    lane = Lane(-1, "driving", (3.0, 0.0, 0.03, -0.002))
    sec = LaneSection(10.0, [], [lane])
    road = Road(1, "w", 20.0, [Geometry(0, 0, 0, 0, 20.0)],
                [LaneSection(0.0, [], [Lane(-1, "driving", (3.0, 0, 0, 0))]), sec])
    _, outer = road.lane_boundaries(-1, np.array([5.0, 15.0]))
    assert outer == pytest.approx([-3.0, -(3.0 + 0.03 * 25 - 0.002 * 125)])


def test_odr_to_carla_flips_y_and_heading():
    x, y, yaw = odr_to_carla(np.array([1.0]), np.array([2.0]), np.array([0.5]))
    assert (x[0], y[0], yaw[0]) == (1.0, -2.0, -0.5)


def _junction_network() -> RoadNetwork:
    """Road 1 (east) -> junction 100 -> road 2 (east) through connector 3, and from lane -2 a
    right-turn arc (connector 4) onto road 5, heading south."""
    r1, r2, r5 = _straight(1, 40.0), _straight(2, 40.0), _straight(5, 30.0)
    r2.geometries = [Geometry(0.0, 60.0, 0.0, 0.0, 40.0)]
    r5.geometries = [Geometry(0.0, 43.5, -7.0, -math.pi / 2, 30.0)]
    r1.successor = RoadLink("junction", 100)
    r2.predecessor = r5.predecessor = RoadLink("junction", 100)
    lane3 = Lane(-1, "driving", (3.5, 0, 0, 0), predecessor=-1, successor=-1)
    c3 = Road(3, "c3", 20.0, [Geometry(0.0, 40.0, 0.0, 0.0, 20.0)], [LaneSection(0.0, [], [lane3])],
              100, RoadLink("road", 1, "end"), RoadLink("road", 2, "start"))
    arc = Geometry(0.0, 40.0, -3.5, 0.0, 3.5 * math.pi / 2, -1 / 3.5)  # left edge of lane -2
    lane4 = Lane(-1, "driving", (3.5, 0, 0, 0), predecessor=-2, successor=-1)
    c4 = Road(4, "c4", arc.length, [arc], [LaneSection(0.0, [], [lane4])], 100,
              RoadLink("road", 1, "end"), RoadLink("road", 5, "start"))
    j = Junction(100, "j", [Connection(0, 1, 3, "start", [(-1, -1)]),
                            Connection(1, 1, 4, "start", [(-2, -1)])])
    return RoadNetwork("unit", {1: r1, 2: r2, 3: c3, 4: c4, 5: r5}, {100: j})


def test_to_xodr_is_valid_xml_with_header_and_links():
    net = _junction_network()
    root = ET.fromstring(net.to_xodr())
    assert root.tag == "OpenDRIVE"
    header = root.find("header")
    assert header.get("revMajor") == "1" and header.get("revMinor") == "4"
    assert "+proj=" in header.find("geoReference").text
    assert len(root.findall("road")) == 5 and len(root.findall("junction")) == 1
    c4 = root.find("road[@id='4']")
    assert c4.get("junction") == "100"
    assert float(c4.find("planView/geometry/arc").get("curvature")) == pytest.approx(-1 / 3.5)
    assert c4.find("link/successor").attrib == {"elementType": "road", "elementId": "5",
                                                "contactPoint": "start"}
    links = root.findall("junction/connection/laneLink")
    assert [(ll.get("from"), ll.get("to")) for ll in links] == [("-1", "-1"), ("-2", "-1")]
    centre = root.find("road[@id='1']/lanes/laneSection/center/lane/roadMark")
    assert (centre.get("type"), centre.get("color")) == ("solid", "yellow")
    right_ids = [ln.get("id") for ln in root.findall("road[@id='1']/lanes/laneSection/right/lane")]
    assert right_ids == ["-1", "-2", "-3"]


CARLA_SCRIPT = r"""
import json, sys
import carla
xodr, queries = sys.stdin.read().split("\n#QUERIES#\n")
m = carla.Map("unit", xodr)
out = []
for x, y in json.loads(queries):
    w = m.get_waypoint(carla.Location(x=x, y=y, z=0.0))
    t = w.transform
    out.append([w.road_id, w.lane_id, t.location.x, t.location.y, t.rotation.yaw, w.is_junction])
print(json.dumps(out))
"""


def carla_query(xodr: str, points: list[tuple[float, float]]) -> list[list]:
    """get_waypoint for CARLA-frame points, parsed by the real client in a subprocess."""
    pytest.importorskip("carla")
    proc = subprocess.run([sys.executable, "-c", CARLA_SCRIPT], capture_output=True, text=True,
                          input=xodr + "\n#QUERIES#\n" + json.dumps(points), timeout=60)
    assert proc.returncode == 0, f"carla client failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_carla_parses_lanes_in_its_own_frame():
    net = _junction_network()
    r1 = net.roads[1]
    pts = []
    for lane in (-1, -2, 1):
        x, y, h = r1.lane_center(lane, np.array([20.0]))
        cx, cy, _ = odr_to_carla(x, y, h)
        pts.append((float(cx[0]), float(cy[0])))
    x, y, _ = net.roads[4].lane_center(-1, np.array([net.roads[4].length / 2]))
    cx, cy, _ = odr_to_carla(x, y)
    pts.append((float(cx[0]), float(cy[0])))
    res = carla_query(net.to_xodr(), pts)
    assert [(r[0], r[1]) for r in res] == [(1, -1), (1, -2), (1, 1), (4, -1)]
    assert res[0][2:4] == pytest.approx([20.0, 1.75], abs=0.02)
    assert res[0][4] == pytest.approx(0.0, abs=0.1)
    assert abs(abs(res[2][4]) - 180.0) < 0.1  # lane 1 drives against the reference line
    assert res[1][3] == pytest.approx(5.25, abs=0.02)
    # the right turn's lane centre: a circle of radius 1.75 around CARLA (40, 7), yaw growing
    assert res[3][5]
    assert math.hypot(res[3][2] - 40.0, res[3][3] - 7.0) == pytest.approx(1.75, abs=0.03)
    tangent = math.degrees(math.atan2(res[3][3] - 7.0, res[3][2] - 40.0)) + 90.0
    assert 0.0 < res[3][4] < 90.0 and res[3][4] == pytest.approx(tangent, abs=1.0)
