import math

import numpy as np

from drivesim_carla.types import Control, Transform
from drivesim_carla.vehicle import MAX_STEER_DEG, WHEELBASE, BicycleState, step_bicycle
from drivesim_carla.world.embedded.collision import obb_overlap


def test_straight_acceleration_then_braking_to_rest():
    s = BicycleState(0.0, 0.0, 0.0)
    for _ in range(40):  # 2 s full throttle
        s = step_bicycle(s, Control(throttle=1.0), 0.05)
    assert 6.0 < s.v < 8.1 and abs(s.y) < 1e-9 and s.x > 6.0
    for _ in range(40):
        s = step_bicycle(s, Control(brake=1.0), 0.05)
    assert s.v == 0.0  # braking stops, never reverses


def test_turn_radius_matches_bicycle_geometry():
    s = BicycleState(0.0, 0.0, 0.0, v=5.0)
    steer = 0.5
    xs, ys = [], []
    for _ in range(400):
        s = step_bicycle(s, Control(throttle=0.0, steer=steer), 0.01)
        s.v = 5.0  # hold speed
        xs.append(s.x)
        ys.append(s.y)
    # fit the circle the centre follows: R = L / (tan(delta) cos(beta))
    delta = math.radians(MAX_STEER_DEG) * steer
    beta = math.atan(0.5 * math.tan(delta))
    expected = WHEELBASE / (math.tan(delta) * math.cos(beta))
    pts = np.c_[xs, ys]
    a = np.c_[2 * pts, np.ones(len(pts))]
    cx, cy, c = np.linalg.lstsq(a, (pts**2).sum(1), rcond=None)[0]
    radius = math.sqrt(c + cx**2 + cy**2)
    assert abs(radius - expected) / expected < 0.01
    assert cy > 0  # positive steer turns right: towards +y in CARLA's frame


def test_obb_overlap_separating_axis():
    c = np.array([[3.0, 0.0], [5.0, 0.0], [2.0, 2.0]])
    h = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.2]])
    y = np.array([0.0, 0.0, math.pi / 4])
    hit = obb_overlap(np.array([0.0, 0.0]), np.array([2.1, 1.0]), 0.0, c, h, y)
    assert hit.tolist() == [True, False, False]
    hit = obb_overlap(np.array([0.0, 0.0]), np.array([2.1, 1.0]), math.pi / 4, c, h, y)
    assert hit.tolist()[1] is False


def test_transform_compose_matches_carla_matrix():
    ego = Transform(10.0, 5.0, 0.0, 0.0, 90.0, 0.0)
    cam = ego.compose(Transform(x=1.5, z=1.7, pitch=-10.0))
    assert abs(cam.x - 10.0) < 1e-9 and abs(cam.y - 6.5) < 1e-9 and abs(cam.z - 1.7) < 1e-9
    assert abs(cam.yaw - 90.0) < 1e-9 and abs(cam.pitch + 10.0) < 1e-9
    back = Transform.from_matrix(Transform(1, 2, 3, 10, 20, 30).matrix())
    assert np.allclose(back.as_array(), [1, 2, 3, 10, 20, 30])
