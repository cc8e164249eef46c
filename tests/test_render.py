"""The embedded world's renderer: geometry, labels and flow against analytic values; determinism;
style and weather independence of the labels; registries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from render_demo import demo_scene

from drivesim_carla.errors import DrivesimError
from drivesim_carla.labels import Tag
from drivesim_carla.types import CameraSpec, Transform
from drivesim_carla.world.embedded.render import STYLES, WEATHERS, Motion, Renderer
from drivesim_carla.world.embedded.scene import GROUND_TAG, Boxes, Ground, GroundMap, Light, Material

ALL = ("rgb", "semantic", "depth", "instance", "flow")
SKY = int(Tag.SKY)
FAR = 1000.0


def _ground(material: int = Ground.ASPHALT) -> GroundMap:
    """Asphalt as far as the far plane reaches."""
    return GroundMap(np.full((2100, 2100), material, np.uint8), (-1050.0, -1050.0), 1.0)


def _no_lights() -> Light:
    return Light(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros(0))


def _boxes(rows) -> Boxes:
    """rows: (cx, cy, cz, hx, hy, hz, yaw, tag, instance)."""
    r = np.array(rows, np.float64).reshape(-1, 9)
    n = len(r)
    return Boxes(r[:, 0:3].copy(), r[:, 3:6].copy(), r[:, 6].copy(), r[:, 7].astype(np.uint8),
                 r[:, 8].astype(np.int32), np.full(n, Material.CONCRETE, np.uint8),
                 np.full((n, 3), 150, np.uint8))


def _pixel_rays(spec: CameraSpec):
    """Camera-local ray (1, a, b) through every pixel centre (u = j + 0.5, v = i + 0.5)."""
    f = spec.focal
    u = np.arange(spec.width) + 0.5
    v = np.arange(spec.height) + 0.5
    a = (u - spec.width / 2) / f
    b = -(v - spec.height / 2) / f
    shape = (spec.height, spec.width)
    return np.broadcast_to(a[None, :], shape), np.broadcast_to(b[:, None], shape)


@pytest.fixture(scope="module")
def demo():
    return demo_scene(0, size=240.0)


# ---------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("pitch", [-12.0, 0.0, 7.0])
def test_depth_of_flat_ground_matches_the_analytic_plane(pitch):
    height = 2.0
    spec = CameraSpec(width=160, height=96, fov=80.0)
    r = Renderer(_ground(), Boxes.empty(), _no_lights())
    pose = Transform(3.0, -2.0, height, pitch=pitch, yaw=35.0)
    out = r.render(spec, pose, Boxes.empty(), frame=0, streams=("semantic", "depth", "instance"))
    _, b = _pixel_rays(spec)
    th = math.radians(pitch)
    dz = math.sin(th) + b * math.cos(th)  # world z of the ray (1, a, b) for a pitched camera
    with np.errstate(divide="ignore"):
        t = np.where(dz < 0, -height / dz, np.inf)
    ground = t < FAR
    assert ground.any() and (~ground).any()
    np.testing.assert_allclose(out["depth"][ground], t[ground], rtol=1e-4)
    assert np.all(out["depth"][~ground] == FAR)
    assert np.all(out["semantic"][~ground] == SKY)
    assert np.all(out["semantic"][ground] == GROUND_TAG[Ground.ASPHALT])
    assert np.all(out["instance"] == 0)
    # the horizon: rows above v = h/2 + f tan(pitch) are sky, rows below are ground
    v_h = spec.height / 2 + spec.focal * math.tan(th)
    rows = np.arange(spec.height) + 0.5
    sky_rows = (out["semantic"] == SKY).all(axis=1)
    assert np.all(sky_rows[rows < v_h])
    assert not np.any(sky_rows[rows > v_h + 1.0])


def test_ground_material_is_looked_up_from_the_raster():
    mat = np.full((200, 200), Ground.GRASS, np.uint8)
    mat[:, 100:] = Ground.SIDEWALK  # x >= 0 (origin -10, 0.1 m cells)
    g = GroundMap(mat, (-10.0, -10.0), 0.1)
    spec = CameraSpec(width=64, height=64, fov=60.0)
    # looking straight down from 5 m at the border x = 0, image up = world +x
    pose = Transform(0.0, 0.0, 5.0, pitch=-90.0, yaw=0.0)
    sem = Renderer(g, Boxes.empty(), _no_lights()).render(spec, pose, Boxes.empty(), frame=0,
                                                           streams=("semantic",))["semantic"]
    assert np.all(sem[:30] == Tag.SIDEWALK)  # upper image rows: x > 0
    assert np.all(sem[34:] == Tag.TERRAIN)
    # outside the raster: grass
    far_pose = Transform(500.0, 0.0, 5.0, pitch=-90.0)
    sem = Renderer(g, Boxes.empty(), _no_lights()).render(spec, far_pose, Boxes.empty(), frame=0,
                                                           streams=("semantic",))["semantic"]
    assert np.all(sem == Tag.TERRAIN)


def test_box_projects_to_its_pixel_rectangle_with_depth_tag_and_instance():
    spec = CameraSpec(width=200, height=120, fov=90.0)
    f = spec.focal
    cam_h = 1.5
    # front face at x = 19, y in [-1, 2], z in [0, 3]; the camera (y = 0) sees no side face
    box = _boxes([(20.0, 0.5, 1.5, 1.0, 1.5, 1.5, 0.0, Tag.CAR, 42)])
    r = Renderer(_ground(), Boxes.empty(), _no_lights())
    out = r.render(spec, Transform(0, 0, cam_h), box, frame=0,
                   streams=("semantic", "depth", "instance"))
    u0 = spec.width / 2 + f * -1.0 / 19.0
    u1 = spec.width / 2 + f * 2.0 / 19.0
    v0 = spec.height / 2 - f * (3.0 - cam_h) / 19.0
    v1 = spec.height / 2 - f * (0.0 - cam_h) / 19.0
    a, b = _pixel_rays(spec)
    u = spec.width / 2 + a * f
    v = spec.height / 2 - b * f
    inside = (u > u0 + 0.01) & (u < u1 - 0.01) & (v > v0 + 0.01) & (v < v1 - 0.01)
    outside = (u < u0 - 0.01) | (u > u1 + 0.01) | (v < v0 - 0.01) | (v > v1 + 0.01)
    assert inside.sum() > 100
    assert np.all(out["instance"][inside] == 42)
    assert np.all(out["semantic"][inside] == Tag.CAR)
    np.testing.assert_allclose(out["depth"][inside], 19.0, rtol=1e-5)
    assert not np.any(out["instance"][outside] == 42)


def test_nearer_box_occludes_farther_one_whatever_the_draw_order():
    spec = CameraSpec(width=128, height=64, fov=90.0)
    near = (10.0, 0.0, 1.0, 0.5, 1.0, 1.0, 0.0, Tag.PEDESTRIAN, 1)
    far = (20.0, 0.0, 3.0, 1.0, 5.0, 3.0, 0.3, Tag.BUILDING, 2)
    for rows in ([near, far], [far, near]):
        out = Renderer(_ground(), _boxes(rows[:1]), _no_lights()).render(
            spec, Transform(0, 0, 1.0), _boxes(rows[1:]), frame=0, streams=("instance", "depth"))
        inst = out["instance"]
        centre = inst[28:36, 60:68]
        assert np.all(centre == 1)
        np.testing.assert_allclose(out["depth"][28:36, 60:68], 9.5, rtol=1e-5)
        assert (inst == 2).sum() > 200  # the far box shows around the near one


def test_wall_beside_the_camera_is_clipped_at_the_near_plane():
    # a long wall at y = 3 running from behind the camera to far ahead
    spec = CameraSpec(width=128, height=64, fov=90.0)
    wall = _boxes([(0.0, 3.1, 5.0, 100.0, 0.1, 5.0, 0.0, Tag.WALL, 9)])
    out = Renderer(_ground(), wall, _no_lights()).render(
        spec, Transform(0, 0, 1.5), Boxes.empty(), frame=0, streams=("instance", "depth"))
    a, b = _pixel_rays(spec)
    hit_z = 1.5 + b * (3.0 / np.where(a > 0, a, np.inf))  # height where the ray meets y = 3
    on_wall = (a > 0.05) & (hit_z > 0.05) & (hit_z < 9.95)
    assert on_wall.sum() > 500
    assert np.all(out["instance"][on_wall] == 9)
    np.testing.assert_allclose(out["depth"][on_wall], (3.0 / a)[on_wall], rtol=1e-5)
    assert np.all(out["instance"][a < -0.01] == 0)


def test_box_behind_the_camera_is_not_drawn():
    spec = CameraSpec(width=64, height=32, fov=90.0)
    box = _boxes([(-10.0, 0.0, 1.5, 1.0, 1.0, 1.5, 0.0, Tag.CAR, 5)])
    out = Renderer(_ground(), box, _no_lights()).render(spec, Transform(0, 0, 1.5), Boxes.empty(),
                                                        frame=0, streams=("instance",))
    assert not np.any(out["instance"] == 5)


# ---------------------------------------------------------------------------------- flow


def test_flow_is_zero_without_motion():
    spec = CameraSpec(width=64, height=32)
    out = Renderer(_ground(), Boxes.empty(), _no_lights()).render(
        spec, Transform(0, 0, 1.5), Boxes.empty(), frame=0, streams=("flow",))
    assert out["flow"].shape == (32, 64, 2) and out["flow"].dtype == np.float32
    assert not out["flow"].any()


def test_flow_of_ground_under_forward_motion():
    spec = CameraSpec(width=160, height=96, fov=90.0)
    h = 1.6
    now = Transform(5.0, 2.0, h, yaw=0.0)
    prev = Transform(4.0, 2.0, h, yaw=0.0)  # one metre back
    out = Renderer(_ground(), Boxes.empty(), _no_lights()).render(
        spec, now, Boxes.empty(), frame=1, streams=("flow", "depth", "semantic"),
        motion=Motion(prev, {}))
    a, b = _pixel_rays(spec)
    X = np.where(b < 0, -h / np.where(b < 0, b, -1.0), np.inf)  # analytic ground depth
    ground = (b < 0) & (X < 200)
    f = spec.focal
    du = (a * f) / (X + 1.0)  # (u - cx) / (X + 1)
    dv = (-b * f) / (X + 1.0)
    np.testing.assert_allclose(out["flow"][..., 0][ground], du[ground], atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(out["flow"][..., 1][ground], dv[ground], atol=2e-3, rtol=1e-4)
    assert np.abs(out["flow"][ground]).max() > 5.0  # near pixels move a lot


def test_flow_of_a_pure_yaw_rotation_is_depth_independent():
    spec = CameraSpec(width=160, height=96, fov=90.0)
    delta = 3.0
    now = Transform(0.0, 0.0, 1.6, yaw=20.0 + delta)
    prev = Transform(0.0, 0.0, 1.6, yaw=20.0)
    boxes = _boxes([(15.0, 8.0, 3.0, 2.0, 2.0, 3.0, 0.4, Tag.BUILDING, 3)])
    out = Renderer(_ground(), boxes, _no_lights()).render(
        spec, now, Boxes.empty(), frame=1, streams=("flow", "instance"), motion=Motion(prev, {}))
    a, b = _pixel_rays(spec)
    f = spec.focal
    alpha = np.arctan(a)
    d = math.radians(delta)
    u_prev = spec.width / 2 + f * np.tan(alpha + d)
    v_prev = spec.height / 2 - f * b / (np.sqrt(1 + a * a) * np.cos(alpha + d))
    u = spec.width / 2 + a * f
    v = spec.height / 2 - b * f
    assert (out["instance"] == 3).sum() > 50  # ground, sky and a box all move alike
    np.testing.assert_allclose(out["flow"][..., 0], u - u_prev, atol=2e-3)
    np.testing.assert_allclose(out["flow"][..., 1], v - v_prev, atol=2e-3)


def test_flow_of_a_moving_box_includes_its_own_motion():
    spec = CameraSpec(width=160, height=96, fov=90.0)
    cam = Transform(0.0, 0.0, 1.5)
    box = _boxes([(20.0, 0.0, 1.5, 1.0, 2.0, 1.5, 0.0, Tag.CAR, 77)])  # front face at x = 19
    back = np.eye(4)
    back[0, 3] = -1.0  # it moved 1 m along +x: a point now was 1 m back along -x before
    out = Renderer(_ground(), Boxes.empty(), _no_lights()).render(
        spec, cam, box, frame=1, streams=("flow", "instance", "depth"),
        motion=Motion(cam, {77: back}))
    on_box = out["instance"] == 77
    assert on_box.sum() > 100
    a, b = _pixel_rays(spec)
    f = spec.focal
    # a point at depth 19 was at depth 18: u' - cx = (u - cx) * 19 / 18
    du = -(a * f) / 18.0
    dv = (b * f) / 18.0
    np.testing.assert_allclose(out["flow"][..., 0][on_box], du[on_box], atol=2e-3)
    np.testing.assert_allclose(out["flow"][..., 1][on_box], dv[on_box], atol=2e-3)
    assert np.abs(out["flow"][~on_box]).max() < 1e-3  # static camera: the rest does not move


# ---------------------------------------------------------------------------------- labels


def test_semantic_and_instance_agree(demo):
    spec = CameraSpec(width=256, height=128)
    dyn, heads = demo.dynamic(5)
    r = Renderer(demo.ground, demo.static, demo.lights, style="textured")
    out = r.render(spec, Transform(-30.0, 1.75, 1.6, yaw=10.0), dyn, frame=5,
                   streams=("semantic", "instance"), headlights=heads)
    sem, inst = out["semantic"], out["instance"]
    ids = np.unique(inst[inst > 0])
    assert len(ids) > 10
    for i in ids:
        assert len(np.unique(sem[inst == i])) == 1
    ground_or_sky = np.isin(sem, list(set(GROUND_TAG.tolist()) | {SKY}))
    assert np.array_equal(inst == 0, ground_or_sky)
    assert {Tag.ROAD, Tag.SIDEWALK, Tag.BUILDING, Tag.VEGETATION, Tag.SKY} <= set(np.unique(sem).tolist())


def test_render_returns_exactly_the_requested_streams(demo):
    spec = CameraSpec(width=64, height=32)
    r = Renderer(demo.ground, demo.static, demo.lights)
    dyn, _ = demo.dynamic(0)
    for streams in [("depth",), ("rgb", "flow"), ALL]:
        out = r.render(spec, Transform(0, 1.75, 1.6), dyn, frame=0, streams=streams)
        assert tuple(out) == streams
    out = r.render(spec, Transform(0, 1.75, 1.6), dyn, frame=0, streams=ALL)
    assert out["rgb"].shape == (32, 64, 3) and out["rgb"].dtype == np.uint8
    assert out["semantic"].dtype == np.uint8 and out["depth"].dtype == np.float32
    assert out["instance"].dtype == np.int32 and out["flow"].shape == (32, 64, 2)
    with pytest.raises(DrivesimError, match="unknown stream"):
        r.render(spec, Transform(), dyn, frame=0, streams=("lidar",))


def test_renders_are_deterministic(demo):
    spec = CameraSpec(width=128, height=64, name="front")
    dyn, heads = demo.dynamic(3)
    pose = Transform(-20.0, 1.75, 1.6, yaw=5.0)
    motion = Motion(Transform(-20.5, 1.75, 1.6, yaw=5.0), {})
    outs = []
    for _ in range(2):
        r = Renderer(demo.ground, demo.static, demo.lights, style="textured", weather="rain", seed=7)
        outs.append(r.render(spec, pose, dyn, frame=3, streams=ALL, motion=motion, headlights=heads))
        outs.append(r.render(spec, pose, dyn, frame=3, streams=ALL, motion=motion, headlights=heads))
    for o in outs[1:]:
        for k in ALL:
            assert np.array_equal(o[k], outs[0][k]), k
    # sensor noise changes with the frame and the camera, not the labels
    r = Renderer(demo.ground, demo.static, demo.lights, style="textured", weather="rain", seed=7)
    other = r.render(spec, pose, dyn, frame=4, streams=ALL, motion=motion, headlights=heads)
    assert not np.array_equal(other["rgb"], outs[0]["rgb"])
    assert np.array_equal(other["semantic"], outs[0]["semantic"])


def test_labels_do_not_depend_on_style_or_weather_but_rgb_does(demo):
    spec = CameraSpec(width=192, height=96)
    dyn, heads = demo.dynamic(2)
    pose = Transform(-40.0, 1.75, 1.6, yaw=-8.0)
    motion = Motion(Transform(-40.4, 1.75, 1.6, yaw=-8.0), {})
    ref = None
    rgbs = {}
    for style in STYLES:
        for weather in WEATHERS:
            r = Renderer(demo.ground, demo.static, demo.lights, style=style, weather=weather)
            out = r.render(spec, pose, dyn, frame=2, streams=ALL, motion=motion, headlights=heads)
            rgbs[style, weather] = out["rgb"].astype(np.float64)
            if ref is None:
                ref = out
            for k in ("semantic", "depth", "instance", "flow"):
                assert np.array_equal(out[k], ref[k]), (style, weather, k)
    diffs = {w: np.abs(rgbs["flat", w] - rgbs["textured", w]).mean() for w in WEATHERS}
    assert min(diffs.values()) > 8.0, diffs  # fog washes both out the most
    assert np.mean(list(diffs.values())) > 14.0, diffs
    assert np.abs(rgbs["textured", "clear"] - rgbs["textured", "night"]).mean() > 40.0
    assert rgbs["textured", "night"].mean() < 0.5 * rgbs["textured", "clear"].mean()


def test_unknown_style_or_weather_lists_the_valid_names(demo):
    with pytest.raises(DrivesimError, match="valid: flat, textured"):
        Renderer(demo.ground, demo.static, demo.lights, style="photoreal")
    with pytest.raises(DrivesimError) as err:
        Renderer(demo.ground, demo.static, demo.lights, weather="snow")
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in ("clear", "dusk", "night", "fog", "rain"))
