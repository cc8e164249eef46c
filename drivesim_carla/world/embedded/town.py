"""The embedded world's procedural town: a grid of signalised junctions, built from a seed.

`build_town(seed, (bx, by))` lays out (bx+1) x (by+1) axis-aligned junctions, builds the road
network the way OpenDRIVE models it (`opendrive.RoadNetwork`), and derives from that network
everything the world needs: the lane graph, traffic lights, a ground raster and the static
boxes. All of it is in CARLA world coordinates (via `opendrive.odr_to_carla`); only the network
keeps the OpenDRIVE frame. The same seed gives the same town; the result is cached and read-only.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .opendrive import (
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
from .scene import LaneSegment, SignalSpec, Town

log = logging.getLogger(__name__)

RESOLUTION = 0.1  # metres per ground cell
MARGIN = 40.0  # ground beyond the town's bounds
JZ = 5.5  # junction zone: from the core's edge to the stop line (the junction's boundary)
CROSSWALK = (1.0, 4.0)  # crosswalk band, metres from the core's edge (1.5 m before the stop line)
STOP_W = 0.4  # stop line band depth
FILLET = 4.0  # kerb radius at junction corners
K_RIGHT, K_LEFT = 1.5, 2.0  # straight run before a turn's arc: right / left turns
MARK_W = 0.15
DASH = (3.0, 5.0)  # broken line: paint, gap
PARK_STEP = 6.0
SPAWN_STEP, SPAWN_END = 12.0, 12.0
DIRS = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))  # E N W S in the OpenDRIVE frame

Piece = tuple[str, int, int]  # ("h", i, j): junction (i, j) -> (i+1, j); ("v", i, j): -> (i, j+1)


# ----- layout ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Street:
    """Cross-section shared by every road piece of one grid line."""

    lanes: int  # driving lanes per direction
    width: float  # driving lane width
    park: tuple[float, float]  # parking lane width on the (left, right) of the road; 0 = none
    sidewalk: float

    @property
    def half(self) -> float:
        """Half width of the driving lanes (centre line to edge line)."""
        return self.lanes * self.width

    def kerb(self, side: int) -> float:
        """Offset of the kerb on the left (+1) or right (-1) of the reference direction."""
        return self.half + self.park[0 if side > 0 else 1]

    def outer(self, side: int) -> float:
        return self.kerb(side) + self.sidewalk


@dataclass
class Layout:
    """Junction positions (OpenDRIVE frame), street cross-sections and removed road pieces."""

    xs: np.ndarray  # x of junction columns (vertical streets)
    ys: np.ndarray  # y of junction rows (horizontal streets)
    cols: list[Street]
    rows: list[Street]
    removed: set[Piece]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.xs) - 1, len(self.ys) - 1

    def street(self, piece: Piece) -> Street:
        return self.rows[piece[2]] if piece[0] == "h" else self.cols[piece[1]]

    def pieces(self) -> list[Piece]:
        bx, by = self.shape
        out = [("h", i, j) for j in range(by + 1) for i in range(bx)]
        return out + [("v", i, j) for i in range(bx + 1) for j in range(by)]

    def arm_pieces(self, i: int, j: int) -> dict[int, tuple[Piece, bool]]:
        """Direction (0 E, 1 N, 2 W, 3 S) -> (piece, junction at the piece's start), for every
        piece the grid has there, removed or not."""
        bx, by = self.shape
        arms: dict[int, tuple[Piece, bool]] = {}
        if i < bx:
            arms[0] = (("h", i, j), True)
        if j < by:
            arms[1] = (("v", i, j), True)
        if i > 0:
            arms[2] = (("h", i - 1, j), False)
        if j > 0:
            arms[3] = (("v", i, j - 1), False)
        return arms

    def arms(self, i: int, j: int) -> dict[int, tuple[Piece, bool]]:
        return {d: a for d, a in self.arm_pieces(i, j).items() if a[0] not in self.removed}

    def core(self, i: int, j: int) -> tuple[float, float]:
        """Half extents (x, y) of junction (i, j)'s core: the crossing of the driving lanes."""
        return self.cols[i].half, self.rows[j].half


def _street(rng: np.random.Generator) -> Street:
    lanes = 2 if rng.random() < 0.4 else 1
    width = round(float(rng.uniform(3.0, 3.5)) * 20) / 20
    park = tuple(round(float(rng.uniform(2.2, 2.5)), 2) if rng.random() < 0.35 else 0.0
                 for _ in range(2))
    sidewalk = round(float(rng.uniform(2.5, 4.0)), 2)
    return Street(lanes, width, park, sidewalk)  # type: ignore[arg-type]


def _layout(rng: np.random.Generator, blocks: tuple[int, int]) -> Layout:
    bx, by = blocks
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(70.0, 110.0, bx))]).round(2)
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(70.0, 110.0, by))]).round(2)
    xs, ys = xs - round(xs[-1] / 2, 2), ys - round(ys[-1] / 2, 2)
    layout = Layout(xs, ys, [_street(rng) for _ in xs], [_street(rng) for _ in ys], set())
    _remove_pieces(layout, rng)
    return layout


def _remove_pieces(layout: Layout, rng: np.random.Generator) -> None:
    """Drop one or two interior road pieces so that some junctions become T-junctions."""
    bx, by = layout.shape
    interior = [p for p in layout.pieces() if _is_interior(p, bx, by)]
    want = int(rng.integers(1, 3))
    for k in rng.permutation(len(interior)):
        if len(layout.removed) >= want:
            break
        piece = interior[int(k)]
        trial = layout.removed | {piece}
        if _valid_removal(layout, trial):
            layout.removed = trial


def _is_interior(p: Piece, bx: int, by: int) -> bool:
    a, b = _piece_ends(p)
    return all(0 < i < bx and 0 < j < by for i, j in (a, b))


def _piece_ends(p: Piece) -> tuple[tuple[int, int], tuple[int, int]]:
    axis, i, j = p
    return (i, j), ((i + 1, j) if axis == "h" else (i, j + 1))


def _valid_removal(layout: Layout, removed: set[Piece]) -> bool:
    """Every junction keeps three arms and the street graph stays connected."""
    g = nx.Graph()
    for p in layout.pieces():
        if p not in removed:
            g.add_edge(*_piece_ends(p))
    for p in removed:
        for i, j in _piece_ends(p):
            arms = [a for a in layout.arm_pieces(i, j).values() if a[0] not in removed]
            if len(arms) < 3:
                return False
    return nx.is_connected(g)


# ----- road network ---------------------------------------------------------------------------
@dataclass
class Arm:
    """One arm of a junction: its road and whether the junction sits at that road's start."""

    direction: int
    road: int
    at_start: bool
    street: Street


@dataclass
class JunctionInfo:
    id: int
    ij: tuple[int, int]
    center: tuple[float, float]  # OpenDRIVE frame
    core: tuple[float, float]  # half extents x, y
    arms: dict[int, Arm]
    connectors: list[ConnectorInfo] = field(default_factory=list)


@dataclass
class ConnectorInfo:
    road: int
    junction: int
    from_road: int
    from_lane: int
    to_road: int
    to_lane: int
    turn: str


@dataclass
class Net:
    """The network and the bookkeeping the town derives things from."""

    network: RoadNetwork
    pieces: dict[int, tuple[Piece, Street]]  # road id -> piece (ordinary roads)
    junctions: list[JunctionInfo]


def _piece_road(layout: Layout, piece: Piece, road_id: int) -> Road:
    axis, i, j = piece
    st = layout.street(piece)
    if axis == "h":
        x0 = layout.xs[i] + layout.cols[i].half + JZ
        x1 = layout.xs[i + 1] - layout.cols[i + 1].half - JZ
        geom = Geometry(0.0, x0, layout.ys[j], 0.0, x1 - x0)
    else:
        y0 = layout.ys[j] + layout.rows[j].half + JZ
        y1 = layout.ys[j + 1] - layout.rows[j + 1].half - JZ
        geom = Geometry(0.0, layout.xs[i], y0, math.pi / 2, y1 - y0)
    return Road(road_id, f"{axis}{i}_{j}", geom.length, [geom], [_street_section(st)])


def _street_section(st: Street) -> LaneSection:
    sides = []
    for sign, park in ((1, st.park[0]), (-1, st.park[1])):
        lanes = [Lane(sign * k, "driving", (st.width, 0, 0, 0),
                      RoadMark("broken" if k < st.lanes else "solid"))
                 for k in range(1, st.lanes + 1)]
        if park > 0:
            lanes.append(Lane(sign * (st.lanes + 1), "parking", (park, 0, 0, 0)))
        lanes.append(Lane(sign * (len(lanes) + 1), "sidewalk", (st.sidewalk, 0, 0, 0)))
        sides.append(lanes)
    center = Lane(0, "none", road_mark=RoadMark("solid", "yellow"))
    return LaneSection(0.0, sides[0], sides[1], center)


def _build_network(layout: Layout, name: str) -> Net:
    """One road per grid piece, one junction per grid node, one connector per lane link."""
    roads: dict[int, Road] = {}
    pieces: dict[int, tuple[Piece, Street]] = {}
    piece_road: dict[Piece, int] = {}
    for piece in layout.pieces():
        if piece in layout.removed:
            continue
        rid = len(roads) + 1
        roads[rid] = _piece_road(layout, piece, rid)
        pieces[rid], piece_road[piece] = (piece, layout.street(piece)), rid
    bx, by = layout.shape
    infos = []
    for j in range(by + 1):
        for i in range(bx + 1):
            jid = 1000 + len(infos)
            arms = {d: Arm(d, piece_road[p], start, layout.street(p))
                    for d, (p, start) in layout.arms(i, j).items()}
            for arm in arms.values():
                link = RoadLink("junction", jid)
                if arm.at_start:
                    roads[arm.road].predecessor = link
                else:
                    roads[arm.road].successor = link
            infos.append(JunctionInfo(jid, (i, j), (layout.xs[i], layout.ys[j]),
                                      layout.core(i, j), arms))
    junctions = {}
    for info in infos:
        junctions[info.id] = _connect_junction(info, roads)
    return Net(RoadNetwork(name, roads, junctions), pieces, infos)


def _lane_links(arms: dict[int, Arm], a: int) -> list[tuple[int, int, int, str]]:
    """(exit direction, from lane index, to lane index, turn) for the approach from arm a;
    lane index 1 is the leftmost lane."""
    n_in = arms[a].street.lanes
    turns = {}
    for e in arms:
        rel = (e - (a + 2)) % 4
        if rel != 2:
            turns[e] = {0: "straight", 1: "left", 3: "right"}[rel]
    out = []
    straight = "straight" in turns.values()
    for e, turn in turns.items():
        n_out = arms[e].street.lanes
        if turn == "straight":
            out += [(e, k, k, turn) for k in range(1, n_in + 1)]
        elif straight or len(turns) == 2:  # through road, or T-junction stem
            out.append((e, n_in, n_out, turn) if turn == "right" else (e, 1, 1, turn))
        else:  # a bend: every lane turns
            out += [(e, k, min(k, n_out), turn) for k in range(1, n_in + 1)]
    return out


def _connect_junction(info: JunctionInfo, roads: dict[int, Road]) -> Junction:
    """Add the junction's connecting roads to `roads`; returns its OpenDRIVE connections."""
    connections = []
    for a, arm in info.arms.items():
        for e, k_in, k_out, turn in _lane_links(info.arms, a):
            out = info.arms[e]
            in_lane = k_in if arm.at_start else -k_in
            out_lane = -k_out if out.at_start else k_out
            rid = max(roads) + 1
            roads[rid] = _connector_road(rid, info.id, roads[arm.road], in_lane, arm.at_start,
                                         roads[out.road], out_lane, out.at_start, turn)
            connections.append(Connection(len(connections), arm.road, rid, "start",
                                          [(in_lane, -1)]))
            info.connectors.append(ConnectorInfo(rid, info.id, arm.road, in_lane, out.road,
                                                 out_lane, turn))
    return Junction(info.id, f"junction{info.ij[0]}_{info.ij[1]}", connections)


def _lane_end(road: Road, lane: int, at_start: bool) -> tuple[np.ndarray, float, float]:
    """Lane centre, driving heading and width where a lane touches its junction."""
    s = np.array([0.0 if at_start else road.length])
    x, y, h = road.lane_center(lane, s)
    inner, outer = road.lane_boundaries(lane, s)
    return np.array([x[0], y[0]]), float(h[0]), float(abs(outer[0] - inner[0]))


def _connector_road(rid: int, jid: int, src: Road, in_lane: int, src_start: bool,
                    dst: Road, out_lane: int, dst_start: bool, turn: str) -> Road:
    """A one-lane connecting road from a lane's junction end to another lane's, blending the
    two lane widths with a cubic that is flat at both ends."""
    p0, h0, w0 = _lane_end(src, in_lane, src_start)
    p1, h1, w1 = _lane_end(dst, out_lane, dst_start)
    geoms = _connector_geometry(p0, h0, w0, p1, h1, w1, turn)
    length = geoms[-1].s + geoms[-1].length
    dw = w1 - w0
    width = (w0, 0.0, 3 * dw / length**2, -2 * dw / length**3)
    lane = Lane(-1, "driving", width, RoadMark("none"), predecessor=in_lane, successor=out_lane)
    section = LaneSection(0.0, [], [lane], Lane(0, "none"))
    return Road(rid, f"j{jid}_{turn}_{src.id}_{dst.id}", length, geoms, [section], jid,
                RoadLink("road", src.id, "start" if src_start else "end"),
                RoadLink("road", dst.id, "start" if dst_start else "end"))


def _connector_geometry(p0: np.ndarray, h0: float, w0: float, p1: np.ndarray, h1: float,
                        w1: float, turn: str) -> list[Geometry]:
    """Reference line (the lane's left edge) of a one-lane connector: a line, or line-arc-line."""
    f0 = np.array([math.cos(h0), math.sin(h0)])
    l0, l1 = np.array([-f0[1], f0[0]]), np.array([-math.sin(h1), math.cos(h1)])
    q0, q1 = p0 + l0 * w0 / 2, p1 + l1 * w1 / 2
    if turn == "straight":
        return [Geometry(0.0, q0[0], q0[1], h0, float(np.linalg.norm(q1 - q0)))]
    sign = 1.0 if turn == "left" else -1.0
    du_p, dv_p = float((p1 - p0) @ f0), float((p1 - p0) @ l0)
    du_q, dv_q = float((q1 - q0) @ f0), abs(float((q1 - q0) @ l0))
    rc = max(min(du_p, abs(dv_p)) - (K_LEFT if turn == "left" else K_RIGHT), 3.0)
    r = min(rc - sign * 0.25 * (w0 + w1), du_q, dv_q)
    geoms: list[Geometry] = []
    x, y, h, s = float(q0[0]), float(q0[1]), h0, 0.0
    for length, curvature in ((du_q - r, 0.0), (r * math.pi / 2, sign / r), (dv_q - r, 0.0)):
        if length > 1e-6:
            g = Geometry(s, x, y, h, length, curvature)
            geoms.append(g)
            x, y, h = g.end()
            s += length
    return geoms


# ----- lane graph -----------------------------------------------------------------------------
def _samples(length: float, step: float = 1.0) -> np.ndarray:
    return np.linspace(0.0, length, max(2, math.ceil(length / step) + 1))


def _segment_points(road: Road, lane: int) -> np.ndarray:
    """(P, 2) CARLA-frame lane centre in the driving direction, a point every ~1 m of lane."""
    fine = _samples(road.length, 0.25)
    x, y, _ = road.lane_center(lane, fine)
    along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    s = np.interp(_samples(float(along[-1])), along, fine)
    x, y, h = road.lane_center(lane, s)
    cx, cy, _ = odr_to_carla(x, y, h)
    pts = np.stack([cx, cy], axis=1)
    return pts[::-1].copy() if lane > 0 else pts


def _lane_segments(net: Net) -> tuple[dict[int, LaneSegment], dict[tuple[int, int], int]]:
    """One segment per driving lane of every road (connectors included), linked into a graph."""
    lanes: dict[int, LaneSegment] = {}
    index: dict[tuple[int, int], int] = {}
    for rid, road in net.network.roads.items():
        sec = road.lane_sections[0]
        for lane in sec.left + sec.right:
            if lane.type != "driving":
                continue
            sid = len(lanes)
            index[(rid, lane.id)] = sid
            w = float(np.mean(lane.width_at(np.array([0.0, road.length]))))
            lanes[sid] = LaneSegment(sid, rid, lane.id, road.junction,
                                     _segment_points(road, lane.id), w, [], [],
                                     speed_limit=road.speed_limit)
    for info in net.junctions:
        for c in info.connectors:
            a, b = index[(c.from_road, c.from_lane)], index[(c.to_road, c.to_lane)]
            m = index[(c.road, -1)]
            lanes[a].successors.append(m)
            lanes[m].predecessors.append(a)
            lanes[m].successors.append(b)
            lanes[b].predecessors.append(m)
            lanes[m].turn = c.turn
    for (rid, lid), sid in index.items():
        if net.network.roads[rid].junction >= 0:
            continue
        sign = 1 if lid > 0 else -1
        lanes[sid].left = index.get((rid, lid - sign)) if abs(lid) > 1 else None
        lanes[sid].right = index.get((rid, lid + sign))
    return lanes, index


# ----- signals --------------------------------------------------------------------------------
@dataclass
class Approach:
    """Where one junction arm's incoming lanes meet the stop line (OpenDRIVE frame)."""

    junction: int
    phase: int
    road: int
    lanes: list[int]  # incoming lane ids
    point: np.ndarray  # reference line point at the stop line
    heading: float  # driving direction
    half: float  # width of the incoming lanes
    kerb: float  # offset of the kerb on the right of the approach


def _approaches(net: Net) -> list[Approach]:
    out = []
    for info in net.junctions:
        for phase, arm in enumerate(info.arms.values()):
            road = net.network.roads[arm.road]
            s = np.array([0.0 if arm.at_start else road.length])
            x, y, h = road.reference(s)
            heading = float(h[0]) + (math.pi if arm.at_start else 0.0)
            lanes = [(k if arm.at_start else -k) for k in range(1, arm.street.lanes + 1)]
            kerb = arm.street.kerb(1 if arm.at_start else -1)
            out.append(Approach(info.id, phase, arm.road, lanes, np.array([x[0], y[0]]),
                                heading, arm.street.half, kerb))
    return out


def _signals(approaches: list[Approach], index: dict[tuple[int, int], int],
             lanes: dict[int, LaneSegment], instances: list[int],
             lamps: list[np.ndarray]) -> dict[int, SignalSpec]:
    signals = {}
    for sid, (ap, inst, lamp) in enumerate(zip(approaches, instances, lamps, strict=True)):
        f = np.array([math.cos(ap.heading), math.sin(ap.heading)])
        right = np.array([f[1], -f[0]])
        stop = ap.point + right * ap.half / 2
        sx, sy, yaw = odr_to_carla(stop[0], stop[1], ap.heading)
        yaw = math.atan2(math.sin(yaw), math.cos(yaw))
        segs = [index[(ap.road, lid)] for lid in ap.lanes]
        for seg in segs:
            lanes[seg].signal_id = sid
        signals[sid] = SignalSpec(sid, ap.junction, ap.phase, (float(sx), float(sy)),
                                  float(yaw), segs, inst, lamp)
    return signals


# ----- parking, spawn points, sidewalks, bounds -----------------------------------------------
def _parking(net: Net, rng: np.random.Generator) -> np.ndarray:
    """(K, 3) CARLA x, y, yaw of parking spots, every ~6 m along parking lanes, a few skipped."""
    rows = []
    for rid, (_, st) in net.pieces.items():
        road = net.network.roads[rid]
        for side, width in ((1, st.park[0]), (-1, st.park[1])):
            if width <= 0:
                continue
            lane = side * (st.lanes + 1)
            edges = park_edges(road.length)
            s = 0.5 * (edges[1:] + edges[:-1])
            s = s[rng.random(len(s)) > 0.15]
            x, y, h = road.lane_center(lane, s)
            rows.append(np.stack(odr_to_carla(x, y, h), axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 3))


def park_edges(length: float) -> np.ndarray:
    """Stations of the parking bays' end lines along a road piece (bays of PARK_STEP metres)."""
    n = int((length - 4.0) // PARK_STEP)
    return (length - n * PARK_STEP) / 2 + PARK_STEP * np.arange(n + 1)


def _spawn_points(lanes: dict[int, LaneSegment]) -> list[tuple[int, float]]:
    out = []
    for sid, seg in lanes.items():
        if seg.junction_id >= 0:
            continue
        length = seg.length
        ds = np.arange(SPAWN_END, length - SPAWN_END + 1e-6, SPAWN_STEP)
        out += [(sid, float(d)) for d in ds]
    return out


def block_rect(layout: Layout, i: int, j: int,
               inset: float = 0.0) -> tuple[float, float, float, float]:
    """OpenDRIVE-frame rectangle of block (i, j) inside its sidewalks' outer edges, grown by
    `-inset` (inset < 0 reaches onto the sidewalks)."""
    return (layout.xs[i] + layout.cols[i].outer(-1) + inset,
            layout.ys[j] + layout.rows[j].outer(1) + inset,
            layout.xs[i + 1] - layout.cols[i + 1].outer(1) - inset,
            layout.ys[j + 1] - layout.rows[j + 1].outer(-1) - inset)


def corridor(layout: Layout, piece: Piece) -> tuple[float, float, float]:
    """Where a road piece runs between its junctions' cores: from, to (along x for "h" pieces,
    y for "v" ones) and the street's centre line across."""
    axis, i, j = piece
    if axis == "h":
        return (layout.xs[i] + layout.cols[i].half, layout.xs[i + 1] - layout.cols[i + 1].half,
                layout.ys[j])
    return (layout.ys[j] + layout.rows[j].half, layout.ys[j + 1] - layout.rows[j + 1].half,
            layout.xs[i])


def _rect_poly(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A rectangle given in the OpenDRIVE frame as a (4, 2) CARLA-frame polygon."""
    x, y, _ = odr_to_carla(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
    return np.stack([x, y], axis=1)


def _sidewalks(layout: Layout) -> list[np.ndarray]:
    """Closed polylines along each block's sidewalk centre, and one around the whole town."""
    bx, by = layout.shape
    out = []
    for j in range(by):
        for i in range(bx):
            sw = (-layout.cols[i].sidewalk / 2, -layout.rows[j].sidewalk / 2,
                  layout.cols[i + 1].sidewalk / 2, layout.rows[j + 1].sidewalk / 2)
            x0, y0, x1, y1 = block_rect(layout, i, j)
            out.append(_rect_poly(x0 + sw[0], y0 + sw[1], x1 + sw[2], y1 + sw[3]))
    c0, c1, r0, r1 = layout.cols[0], layout.cols[-1], layout.rows[0], layout.rows[-1]
    out.append(_rect_poly(layout.xs[0] - c0.kerb(1) - c0.sidewalk / 2,
                          layout.ys[0] - r0.kerb(-1) - r0.sidewalk / 2,
                          layout.xs[-1] + c1.kerb(-1) + c1.sidewalk / 2,
                          layout.ys[-1] + r1.kerb(1) + r1.sidewalk / 2))
    return out


def _bounds(layout: Layout) -> tuple[float, float, float, float]:
    """CARLA-frame xmin, ymin, xmax, ymax of the roads and their sidewalks."""
    poly = _rect_poly(layout.xs[0] - layout.cols[0].outer(1),
                      layout.ys[0] - layout.rows[0].outer(-1),
                      layout.xs[-1] + layout.cols[-1].outer(-1),
                      layout.ys[-1] + layout.rows[-1].outer(1))
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ----- assembly -------------------------------------------------------------------------------
def build_town(seed: int, blocks: tuple[int, int] = (3, 3)) -> Town:
    """The procedural town of `seed` with `blocks` (columns, rows) of city blocks. Cached: the
    returned town is shared and read-only."""
    return _build(int(seed), (int(blocks[0]), int(blocks[1])))


@functools.lru_cache(maxsize=4)
def _build(seed: int, blocks: tuple[int, int]) -> Town:
    from .town_props import Props, paint_ground

    if min(blocks) < 1:
        raise ValueError(f"a town needs at least 1x1 blocks, got {blocks}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    layout = _layout(rng, blocks)
    name = f"Embedded{seed:04d}"
    net = _build_network(layout, name)
    lanes, index = _lane_segments(net)
    approaches = _approaches(net)
    props = Props(layout, net, rng)
    instances, lamps = props.traffic_lights(approaches)
    signals = _signals(approaches, index, lanes, instances, lamps)
    props.populate()
    bounds = _bounds(layout)
    ground = paint_ground(layout, net, index, approaches, props.dirt_lots, bounds)
    town = Town(seed, name, net.network, ground, props.boxes(), props.lights(), lanes, signals,
                {info.id: len(info.arms) for info in net.junctions}, _sidewalks(layout),
                _parking(net, rng), _spawn_points(lanes), bounds, props.kind)
    _freeze(town)
    log.debug("built town %s (%d lane segments, %d boxes) in %.2f s", name, len(lanes),
              len(town.static), time.perf_counter() - t0)
    return town


def _freeze(town: Town) -> None:
    """Mark the cached town's arrays read-only."""
    arrays = [town.ground.material, town.ground.lane, town.parking, town.lights.position,
              town.lights.color, town.lights.radius]
    arrays += [getattr(town.static, f) for f in town.static._fields()]
    arrays += [seg.points for seg in town.lanes.values()] + list(town.sidewalks)
    arrays += [sig.lamp_centers for sig in town.signals.values()]
    for a in arrays:
        if a is not None:
            a.flags.writeable = False
