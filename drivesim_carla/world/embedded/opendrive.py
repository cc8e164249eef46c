"""A road network as OpenDRIVE models it (roads, lanes, junctions), with an OpenDRIVE 1.4 writer.

Geometry lives in the OpenDRIVE inertial frame: right-handed, x east, y north, headings in radians
counter-clockwise from +x. The simulator works in CARLA's left-handed world frame; convert with
`odr_to_carla` only. Right-hand traffic: lanes with negative ids (right of the reference line)
drive along the reference line's direction, lanes with positive ids against it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

LANE_TYPES = ("driving", "sidewalk", "parking", "shoulder", "border", "none")
MARK_TYPES = ("solid", "broken", "solid solid", "none")
GEO_REFERENCE = "+proj=tmerc +lat_0=0 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"


def odr_to_carla(x: np.ndarray | float, y: np.ndarray | float, hdg: np.ndarray | float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenDRIVE inertial (x, y, heading) -> CARLA world (x, y, yaw), radians both sides."""
    return np.asarray(x, np.float64), -np.asarray(y, np.float64), -np.asarray(hdg, np.float64)


def _num(v: float) -> str:
    return format(float(v), ".12g")


# ----- plan view ------------------------------------------------------------------------------
@dataclass
class Geometry:
    """One planView record: a `line` (curvature 0) or an `arc` of constant curvature."""

    s: float
    x: float
    y: float
    hdg: float
    length: float
    curvature: float = 0.0

    @property
    def kind(self) -> str:
        return "line" if self.curvature == 0.0 else "arc"

    def at(self, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point and heading at distances `ds` from this record's start."""
        ds = np.asarray(ds, np.float64)
        k = self.curvature
        if k == 0.0:
            return (self.x + ds * math.cos(self.hdg), self.y + ds * math.sin(self.hdg),
                    np.full_like(ds, self.hdg))
        h = self.hdg + k * ds
        return (self.x + (np.sin(h) - math.sin(self.hdg)) / k,
                self.y - (np.cos(h) - math.cos(self.hdg)) / k, h)

    def end(self) -> tuple[float, float, float]:
        x, y, h = self.at(np.array([self.length]))
        return float(x[0]), float(y[0]), float(h[0])


# ----- lanes ----------------------------------------------------------------------------------
@dataclass
class RoadMark:
    type: str = "none"  # solid | broken | solid solid | none
    color: str = "standard"  # standard (white) | yellow
    width: float = 0.15


@dataclass
class Lane:
    """One lane; `width` is the cubic (a, b, c, d) in ds from the lane section's start."""

    id: int
    type: str = "driving"
    width: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    road_mark: RoadMark = field(default_factory=RoadMark)
    predecessor: int | None = None
    successor: int | None = None

    def width_at(self, ds: np.ndarray) -> np.ndarray:
        a, b, c, d = self.width
        ds = np.asarray(ds, np.float64)
        return a + ds * (b + ds * (c + ds * d))


@dataclass
class LaneSection:
    """Lanes from `s` on: `left` ordered 1, 2, ...; `right` ordered -1, -2, ...; `center` is 0."""

    s: float
    left: list[Lane]
    right: list[Lane]
    center: Lane = field(default_factory=lambda: Lane(0, "none"))

    def lane(self, lane_id: int) -> Lane:
        side = self.left if lane_id > 0 else self.right
        for lane in side:
            if lane.id == lane_id:
                return lane
        raise KeyError(f"no lane {lane_id} in the section at s={self.s}")

    def boundaries(self, lane_id: int, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed lateral offsets (left positive) of the inner and outer edges of a lane."""
        side = self.left if lane_id > 0 else self.right
        sign = 1.0 if lane_id > 0 else -1.0
        inner = np.zeros_like(np.asarray(ds, np.float64))
        for lane in side:
            w = lane.width_at(ds)
            if lane.id == lane_id:
                return sign * inner, sign * (inner + w)
            inner = inner + w
        raise KeyError(f"no lane {lane_id} in the section at s={self.s}")


@dataclass
class RoadLink:
    element_type: str  # road | junction
    element_id: int
    contact_point: str | None = None  # start | end (roads only)


@dataclass
class Road:
    """A road: reference line (planView), lane sections and links."""

    id: int
    name: str
    length: float
    geometries: list[Geometry]
    lane_sections: list[LaneSection]
    junction: int = -1
    predecessor: RoadLink | None = None
    successor: RoadLink | None = None
    speed_limit: float = 30.0 / 3.6  # m/s

    def reference(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reference line point (x, y) and heading at s."""
        s = np.atleast_1d(np.asarray(s, np.float64))
        starts = np.array([g.s for g in self.geometries])
        idx = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(starts) - 1)
        x, y, h = np.empty_like(s), np.empty_like(s), np.empty_like(s)
        for k in np.unique(idx):
            sel = idx == k
            g = self.geometries[k]
            x[sel], y[sel], h[sel] = g.at(s[sel] - g.s)
        return x, y, h

    def section_index(self, s: np.ndarray) -> np.ndarray:
        starts = np.array([sec.s for sec in self.lane_sections])
        return np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(starts) - 1)

    def lane_boundaries(self, lane_id: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed lateral offsets (inner, outer) of a lane's edges at s."""
        s = np.atleast_1d(np.asarray(s, np.float64))
        inner, outer = np.zeros_like(s), np.zeros_like(s)
        idx = self.section_index(s)
        for k in np.unique(idx):
            sel = idx == k
            sec = self.lane_sections[k]
            inner[sel], outer[sel] = sec.boundaries(lane_id, s[sel] - sec.s)
        return inner, outer

    def lane_center_offset(self, lane_id: int, s: np.ndarray) -> np.ndarray:
        inner, outer = self.lane_boundaries(lane_id, s)
        return 0.5 * (inner + outer)

    def offset_points(self, s: np.ndarray, t: np.ndarray | float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points at lateral offset t (left positive) from the reference line, and its heading."""
        x, y, h = self.reference(s)
        return x - np.sin(h) * t, y + np.cos(h) * t, h

    def lane_center(self, lane_id: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lane centre (x, y) and the lane's driving heading at s (ODR frame)."""
        s = np.atleast_1d(np.asarray(s, np.float64))
        x, y, h = self.offset_points(s, self.lane_center_offset(lane_id, s))
        return x, y, (h if lane_id < 0 else h + math.pi)

    def sample_s(self, step: float) -> np.ndarray:
        """Stations every <= `step` metres that include every geometry's start and the end."""
        out = []
        for g in self.geometries:
            n = max(1, math.ceil(g.length / step))
            out.append(g.s + np.linspace(0.0, g.length, n + 1)[:-1])
        out.append(np.array([self.length]))
        return np.concatenate(out)


@dataclass
class Connection:
    id: int
    incoming_road: int
    connecting_road: int
    contact_point: str  # start | end of the connecting road
    lane_links: list[tuple[int, int]]  # (from incoming lane, to connecting lane)


@dataclass
class Junction:
    id: int
    name: str
    connections: list[Connection]


@dataclass
class RoadNetwork:
    """Roads and junctions, keyed by id."""

    name: str
    roads: dict[int, Road]
    junctions: dict[int, Junction]

    def to_xodr(self) -> str:
        """The network as OpenDRIVE 1.4 XML text."""
        root = ET.Element("OpenDRIVE")
        root.append(self._header())
        for road in self.roads.values():
            root.append(_road_xml(road))
        for junction in self.junctions.values():
            root.append(_junction_xml(junction))
        ET.indent(root, space=" ")
        return '<?xml version="1.0" standalone="yes"?>\n' + ET.tostring(root, encoding="unicode")

    def _header(self) -> ET.Element:
        xs, ys = [], []
        for road in self.roads.values():
            x, y, _ = road.reference(np.array([0.0, road.length]))
            xs.extend(x)
            ys.extend(y)
        header = ET.Element("header", revMajor="1", revMinor="4", name=self.name, version="1.00",
                            north=_num(max(ys, default=0)), south=_num(min(ys, default=0)),
                            east=_num(max(xs, default=0)), west=_num(min(xs, default=0)),
                            vendor="drivesim-carla")
        ET.SubElement(header, "geoReference").text = GEO_REFERENCE
        return header


# ----- XML ------------------------------------------------------------------------------------
def _link_xml(parent: ET.Element, tag: str, link: RoadLink | None) -> None:
    if link is None:
        return
    attrs = {"elementType": link.element_type, "elementId": str(link.element_id)}
    if link.contact_point is not None:
        attrs["contactPoint"] = link.contact_point
    ET.SubElement(parent, tag, attrs)


def _road_xml(road: Road) -> ET.Element:
    el = ET.Element("road", name=road.name, length=_num(road.length), id=str(road.id),
                    junction=str(road.junction))
    link = ET.SubElement(el, "link")
    _link_xml(link, "predecessor", road.predecessor)
    _link_xml(link, "successor", road.successor)
    kind = ET.SubElement(el, "type", s="0", type="town")
    ET.SubElement(kind, "speed", max=_num(road.speed_limit * 3.6), unit="km/h")
    plan = ET.SubElement(el, "planView")
    for g in road.geometries:
        ge = ET.SubElement(plan, "geometry", s=_num(g.s), x=_num(g.x), y=_num(g.y),
                           hdg=_num(g.hdg), length=_num(g.length))
        if g.kind == "line":
            ET.SubElement(ge, "line")
        else:
            ET.SubElement(ge, "arc", curvature=_num(g.curvature))
    elev = ET.SubElement(el, "elevationProfile")
    ET.SubElement(elev, "elevation", s="0", a="0", b="0", c="0", d="0")
    ET.SubElement(el, "lateralProfile")
    lanes = ET.SubElement(el, "lanes")
    for sec in road.lane_sections:
        lanes.append(_section_xml(sec))
    return el


def _section_xml(sec: LaneSection) -> ET.Element:
    el = ET.Element("laneSection", s=_num(sec.s))
    for tag, group in (("left", sorted(sec.left, key=lambda ln: -ln.id)), ("center", [sec.center]),
                       ("right", sorted(sec.right, key=lambda ln: -ln.id))):
        if group:
            side = ET.SubElement(el, tag)
            for lane in group:
                side.append(_lane_xml(lane))
    return el


def _lane_xml(lane: Lane) -> ET.Element:
    el = ET.Element("lane", id=str(lane.id), type=lane.type, level="false")
    link = ET.SubElement(el, "link")
    if lane.predecessor is not None:
        ET.SubElement(link, "predecessor", id=str(lane.predecessor))
    if lane.successor is not None:
        ET.SubElement(link, "successor", id=str(lane.successor))
    if lane.id != 0:
        a, b, c, d = lane.width
        ET.SubElement(el, "width", sOffset="0", a=_num(a), b=_num(b), c=_num(c), d=_num(d))
    m = lane.road_mark
    ET.SubElement(el, "roadMark", sOffset="0", type=m.type, weight="standard", color=m.color,
                  width=_num(m.width if m.type != "none" else 0.0), laneChange=_lane_change(m),
                  height="0.0")
    return el


def _lane_change(mark: RoadMark) -> str:
    return "both" if mark.type in ("broken", "none") else "none"


def _junction_xml(junction: Junction) -> ET.Element:
    el = ET.Element("junction", id=str(junction.id), name=junction.name)
    for c in junction.connections:
        ce = ET.SubElement(el, "connection", id=str(c.id), incomingRoad=str(c.incoming_road),
                           connectingRoad=str(c.connecting_road), contactPoint=c.contact_point)
        for a, b in c.lane_links:
            ET.SubElement(ce, "laneLink", {"from": str(a), "to": str(b)})
    return el
