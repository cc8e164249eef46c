import pytest

from drivesim_carla.errors import DrivesimError
from drivesim_carla.scenarios import builtin_names, load_scenario


def test_builtins_load_and_validate():
    names = builtin_names()
    assert {"default", "empty", "busy", "all_streams"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name and sc.cameras


def test_default_camera_spec():
    cam = load_scenario("default").camera_specs()[0]
    assert (cam.width, cam.height, cam.fov) == (512, 256, 90.0)
    assert cam.streams == ("rgb", "semantic", "depth")
    small = load_scenario("default").camera_specs(width=128, height=64)[0]
    assert (small.width, small.height) == (128, 64)


def test_unknown_key_names_it(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("traffic: {vehicles: 3, bicycles: 2}\n")
    with pytest.raises(DrivesimError, match=r"unknown key 'traffic.bicycles'"):
        load_scenario(p)


def test_bad_values_and_files(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("cameras: [{name: a, width: 4}]\n")
    with pytest.raises(DrivesimError, match=r"cameras.0.width"):
        load_scenario(p)
    p.write_text("cameras: [{name: a, streams: [rgb, lidar]}]\n")
    with pytest.raises(DrivesimError, match=r"cameras.0.streams"):
        load_scenario(p)
    p.write_text("traffic: [1, 2\n")
    with pytest.raises(DrivesimError, match=r"not valid YAML"):
        load_scenario(p)
    with pytest.raises(DrivesimError, match=r"unknown scenario 'nope'.*default"):
        load_scenario("nope")
    with pytest.raises(DrivesimError, match=r"scenario file not found"):
        load_scenario(tmp_path / "missing.yaml")


def test_yaml_round_trip(tmp_path):
    sc = load_scenario("all_streams")
    p = tmp_path / "x.yaml"
    p.write_text(sc.to_yaml())
    assert load_scenario(p) == sc
