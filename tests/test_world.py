import math

import numpy as np
import pytest

from drivesim_carla.agents import make_agent
from drivesim_carla.agents.base import Observation
from drivesim_carla.errors import DrivesimError
from drivesim_carla.labels import Tag
from drivesim_carla.scenarios import load_scenario, parse_scenario
from drivesim_carla.types import CameraSpec, Control
from drivesim_carla.vehicle import BicycleState
from drivesim_carla.world import make_world

SMALL = [CameraSpec("front", 128, 64, 90.0, streams=("rgb", "semantic", "depth", "instance", "flow"))]


def drive(world, agent, n):
    frame = world.reset()
    agent.reset(world.route)
    frames = [frame]
    for _ in range(n):
        control = agent.act(Observation(frame, None, world.route))
        frame = world.tick(control)
        frames.append(frame)
    return frames


def test_same_seed_same_controls_bit_identical_frames():
    runs = []
    for _ in range(2):
        w = make_world("embedded", load_scenario("default"), seed=5, cameras=SMALL)
        runs.append(drive(w, make_agent("autopilot"), 30))
    for a, b in zip(*runs):
        assert a.ego == b.ego and a.events == b.events and a.actors == b.actors
        for s in ("rgb", "semantic", "depth", "instance", "flow"):
            assert np.array_equal(getattr(a.camera, s), getattr(b.camera, s)), s
    w = make_world("embedded", load_scenario("default"), seed=6, cameras=SMALL)
    other = drive(w, make_agent("autopilot"), 1)
    assert not np.array_equal(other[0].camera.rgb, runs[0][0].camera.rgb)


def test_frame_contents_and_semantic_instance_agree():
    w = make_world("embedded", load_scenario("default"), seed=1, cameras=SMALL)
    frame = drive(w, make_agent("autopilot"), 3)[-1]
    cam = frame.camera
    assert cam.rgb.shape == (64, 128, 3) and cam.rgb.dtype == np.uint8
    assert cam.semantic.dtype == np.uint8 and cam.depth.dtype == np.float32
    assert cam.flow.shape == (64, 128, 2)
    assert (cam.semantic == Tag.ROAD).any() or (cam.semantic == Tag.ROAD_LINE).any()
    for inst in np.unique(cam.instance):
        tags = np.unique(cam.semantic[cam.instance == inst])
        if inst == 0:
            assert set(tags) <= {Tag.ROAD, Tag.ROAD_LINE, Tag.SIDEWALK, Tag.TERRAIN, Tag.SKY}
        else:
            assert len(tags) == 1
    assert frame.time == pytest.approx(3 / 20)
    assert 0.0 <= frame.ego.route_completion <= 1.0


def _empty_world(seed=0, cameras=()):
    sc = parse_scenario({"traffic": {"vehicles": 0, "parked": 0, "pedestrians": 0}})
    w = make_world("embedded", sc, seed=seed, cameras=list(cameras))
    w.reset()
    return w


def test_collision_with_a_building_is_reported_and_stops_the_ego():
    w = _empty_world()
    st = w.town.static
    k = int(np.argmax([w.town.static_kind.get(int(i), "") == "static.building" for i in st.instance]))
    cx, cy = st.center[k, :2]
    keep = w._static_obstacles.instance == st.instance[k]  # only this building is solid
    w._static_obstacles = type(st)(*(getattr(w._static_obstacles, f)[keep] for f in st._fields()))
    # start 4 m outside the building's -x face, driving towards it along its local +x axis
    yaw = float(st.yaw[k])
    d = st.half[k, 0] + 2.35 + 4.0
    w.ego = BicycleState(cx - d * math.cos(yaw), cy - d * math.sin(yaw), yaw, 0.0)
    events = []
    for _ in range(80):
        events += w.tick(Control(throttle=1.0)).events
    hits = [e for e in events if e.kind == "collision"]
    assert len(hits) == 1 and hits[0].other_type == "static.building"
    assert w.ego.v == 0.0
    dist = math.hypot(w.ego.x - cx, w.ego.y - cy)
    assert dist > st.half[k, 0]  # stopped at the wall, not inside


def test_collision_with_a_vehicle_and_a_pedestrian():
    sc = parse_scenario({"traffic": {"vehicles": 1, "parked": 0, "pedestrians": 1}})
    w = make_world("embedded", sc, seed=2, cameras=[])
    w.reset()
    x, y, yaw = w.route.point_at(30.0)
    veh = w.traffic.vehicles[0]
    veh.path, veh.s, veh.v0 = [w.route.waypoints[w.route.index_at(30.0)].segment], 0.0, 0.0
    veh.x, veh.y, veh.yaw = x, y, yaw
    # keep it parked there
    w.traffic.step_vehicles = lambda *a, **k: None
    events = []
    for _ in range(200):
        events += w.tick(Control(throttle=0.6)).events
    assert [e.other_id for e in events if e.kind == "collision"] == [veh.id]


def test_lane_invasion_when_steering_across_a_line():
    w = _empty_world(seed=4)
    events = []
    for i in range(120):
        c = Control(throttle=0.5, steer=-0.25 if 20 <= i < 32 else 0.0)
        events += w.tick(c).events
    kinds = [e.kind for e in events]
    assert "lane_invasion" in kinds
    inv = next(e for e in events if e.kind == "lane_invasion")
    assert inv.other_type in ("solid_yellow", "broken_white", "solid_white")


def test_autopilot_stops_for_a_pedestrian_on_the_road():
    sc = parse_scenario({"traffic": {"vehicles": 0, "parked": 0, "pedestrians": 1}})
    w = make_world("embedded", sc, seed=3, cameras=[])
    agent = make_agent("autopilot")
    frame = w.reset()
    agent.reset(w.route)
    ped = w.traffic.pedestrians[0]
    x, y, _ = w.route.point_at(35.0)
    ped.crossing, ped.cross_t, ped.speed = (x, y, x, y), 0.0, 0.0
    ped.x, ped.y = x, y
    for _ in range(300):
        frame = w.tick(agent.act(Observation(frame, None, w.route)))
        assert not [e for e in frame.events if e.kind == "collision"]
    gap = math.hypot(frame.ego.transform.x - x, frame.ego.transform.y - y)
    assert frame.ego.speed < 0.1 and 2.5 < gap < 12.0


def test_autopilot_waits_at_a_red_light():
    w = _empty_world(seed=7)
    sig = next((wp for wp in w.route.waypoints if wp.signal_id is not None), None)
    assert sig is not None
    agent = make_agent("autopilot")
    agent.reset(w.route)
    w.traffic.signals.states = lambda: {k: "red" for k in w.town.signals}
    frame = w.tick(Control())
    for _ in range(600):
        frame = w.tick(agent.act(Observation(frame, None, w.route)))
    assert frame.ego.speed < 0.1
    assert 0.5 < sig.s - frame.ego.route_progress - 2.35 < 8.0


def test_autopilot_completes_default_routes_without_collisions():
    """The bar: over 20 seeds, at least 18 complete the default route with no collision."""
    sc = load_scenario("default")
    ok, details = 0, []
    for seed in range(20):
        w = make_world("embedded", sc, seed=seed, cameras=[])
        agent = make_agent("autopilot", target_speed=sc.ego.target_speed)
        frame = w.reset()
        agent.reset(w.route)
        collisions = 0
        for _ in range(3000):
            frame = w.tick(agent.act(Observation(frame, None, w.route)))
            collisions += sum(e.kind == "collision" for e in frame.events)
            if frame.ego.route_completion >= 0.999:
                break
        done = frame.ego.route_completion >= 0.999
        details.append((seed, round(frame.ego.route_completion, 3), collisions))
        ok += done and collisions == 0
    assert ok >= 18, details


def test_bad_style_weather_world():
    sc = load_scenario("default")
    with pytest.raises(DrivesimError, match="unknown style 'oil'.*flat"):
        make_world("embedded", sc, style="oil")
    with pytest.raises(DrivesimError, match="unknown weather 'hail'"):
        make_world("embedded", sc, weather="hail")
    with pytest.raises(DrivesimError, match="unknown world 'gazebo'"):
        make_world("gazebo", sc)
