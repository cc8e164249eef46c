"""The bridge: trained generators (tiny, random weights) loaded from model directories and run on
real frames of the embedded world, against the network applied to the independently encoded input."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from drivesim_carla.errors import DrivesimError
from drivesim_carla.labels import map_labels
from drivesim_carla.models.inputs import InputSpec, encode_input
from drivesim_carla.models.pretrained import save_pretrained
from drivesim_carla.recorders.datasets import image_tensor, label_tensor, resize_nearest
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.synth import GeneratorSynth, WorldRender, load_synthesizer
from drivesim_carla.types import CameraSpec
from drivesim_carla.world import make_world

WITH_INSTANCE = CameraSpec("front", 128, 64, 90.0, streams=("rgb", "semantic", "instance"))
PLAIN = CameraSpec("front", 128, 64, 90.0, streams=("rgb", "semantic", "depth"))
COLOR = InputSpec(kind="color", label_space="color")
ONEHOT_EDGES = InputSpec(kind="onehot", label_space="cityscapes_ids", num_classes=35, instance_edges=True)


def world_frame(camera: CameraSpec, seed: int = 2):
    world = make_world("embedded", load_scenario("default"), seed, cameras=[camera], style="flat")
    return world.reset(seed)


@pytest.fixture(scope="module")
def frame():
    """A 64x128 frame with rgb, semantic and instance, with several objects in view."""
    f = world_frame(WITH_INSTANCE)
    assert len(np.unique(f.camera.instance)) > 2 and len(np.unique(f.camera.semantic)) > 4
    return f


@pytest.fixture(scope="module")
def plain_frame():
    """A frame of a camera without the instance stream."""
    return world_frame(PLAIN)


def unet(num_downs: int = 5):
    from drivesim_carla.training.pix2pix.networks import UnetGenerator

    torch.manual_seed(0)
    return lively(UnetGenerator(input_nc=3, output_nc=3, num_downs=num_downs, ngf=4).eval())


def lively(net):
    """He-normal convolutions: a random net whose image depends strongly on its input (the reference's
    N(0, 0.02) init makes nearly constant images)."""
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight)
    return net


def spade(spec: InputSpec):
    from drivesim_carla.training.spade.generators import SPADEGenerator

    torch.manual_seed(1)
    net = SPADEGenerator(semantic_nc=spec.channels, ngf=4, num_upsampling_layers="normal", spectral=False).eval()
    with torch.no_grad():  # random norm statistics, so every label channel moves the image
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net


def save(net, directory, network: str, spec: InputSpec | dict, **meta):
    spec = spec.to_dict() if isinstance(spec, InputSpec) else spec
    return save_pretrained(net, directory, network=network, meta={"family": network.split(".")[0], "input": spec,
                                                                   **meta})


def encoded(frame, spec: InputSpec, size=None) -> torch.Tensor:
    """The generator input of a frame, built the way training builds it (recorders.datasets + encode_input)."""
    cam = frame.camera
    tags = cam.semantic if size is None else resize_nearest(cam.semantic, size)
    labels = label_tensor(map_labels(tags, spec.label_space), spec.label_space)[None]
    if spec.kind == "color":
        return labels
    instance = cam.instance if size is None else resize_nearest(cam.instance, size)
    return encode_input(labels, spec, torch.from_numpy(instance.astype(np.int64))[None])


def as_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def assert_same_image(got: np.ndarray, want: np.ndarray):
    """Equal up to float rounding (channels_last convolutions sum in another order): +-1 on a few pixels."""
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert got.std() > 1.0  # an image, not a constant


# ----- the generator runs on the frame as training encodes it -------------------------------------------
def test_unet_on_label_colours_equals_the_network_on_the_encoded_frame(tmp_path, frame):
    net = unet()
    save(net, tmp_path / "p2p", "pix2pix.UnetGenerator", COLOR)
    synth = load_synthesizer(str(tmp_path / "p2p"), device="cpu")
    assert isinstance(synth, GeneratorSynth)
    assert synth.name == f"pix2pix.UnetGenerator@{tmp_path / 'p2p'}" and synth.streams == ("semantic",)
    out = synth(frame)
    with torch.no_grad():
        want = as_uint8(net(image_tensor(map_labels(frame.camera.semantic, "color"))[None]))
    assert_same_image(out, want)
    assert synth.run_size(64, 128) == (64, 128)
    # the mapping matters: CARLA's own palette as input gives another image
    with torch.no_grad():
        other = as_uint8(net(image_tensor(map_labels(frame.camera.semantic, "carla_color"))[None]))
    assert np.abs(out.astype(int) - other.astype(int)).mean() > 1.0
    synth.close()


def test_spade_with_instance_edges_from_a_run_directory(tmp_path, frame):
    net = spade(ONEHOT_EDGES)
    save(net, tmp_path / "run" / "model", "spade.SPADEGenerator", ONEHOT_EDGES)
    synth = load_synthesizer(str(tmp_path / "run"), device="cpu", precision="fp32")
    assert synth.streams == ("semantic", "instance")
    with torch.no_grad():
        want = as_uint8(net(encoded(frame, ONEHOT_EDGES)))
        no_edges = encoded(frame, ONEHOT_EDGES)
        no_edges[:, -1] = 0
        without = as_uint8(net(no_edges))
    out = synth(frame)
    assert_same_image(out, want)
    assert (out != without).any()  # the edge channel reached the network


def test_train_ids_with_dontcare(tmp_path, frame):
    from drivesim_carla.labels import Tag

    semantic = frame.camera.semantic.copy()
    semantic[10:30, 20:60] = Tag.STATIC  # a CARLA tag without a train id: the don't-care channel
    frame = replace(frame, cameras={"front": replace(frame.camera, semantic=semantic)})
    spec = InputSpec(kind="onehot", label_space="train_ids", num_classes=19, dontcare=True)
    net = spade(spec)
    save(net, tmp_path / "m", "spade.SPADEGenerator", spec)
    with torch.no_grad():
        x = encoded(frame, spec)
        assert x[:, -1].sum() == 20 * 40 and x.sum() == 64 * 128
        want = as_uint8(net(x))
    assert_same_image(load_synthesizer(str(tmp_path / "m"), device="cpu")(frame), want)


def test_a_size_the_network_does_not_take_runs_at_the_nearest_valid_one(tmp_path, frame):
    net = unet(num_downs=7)  # needs multiples of 128; the camera is 64x128
    save(net, tmp_path / "m", "pix2pix.UnetGenerator", COLOR)
    synth = load_synthesizer(str(tmp_path / "m"), device="cpu")
    out = synth(frame)
    assert synth.run_size(64, 128) == (128, 128)
    with torch.no_grad():
        y = net(image_tensor(map_labels(resize_nearest(frame.camera.semantic, (128, 128)), "color"))[None])
        y = torch.nn.functional.interpolate(y, size=(64, 128), mode="bilinear", align_corners=False, antialias=True)
    assert_same_image(out, as_uint8(y))


def test_in_the_closed_loop_and_through_drivesim_run(tmp_path, capsys):
    from drivesim_carla.agents import make_agent
    from drivesim_carla.cli import main
    from drivesim_carla.loop import ClosedLoop

    save(unet(), tmp_path / "m", "pix2pix.UnetGenerator", COLOR)
    synth = load_synthesizer(str(tmp_path / "m"), device="cpu")
    world = make_world("embedded", load_scenario("default"), 0, cameras=[PLAIN], style="flat")
    seen = []
    agent = make_agent("autopilot")
    act = agent.act
    agent.act = lambda obs: (seen.append(obs.image), act(obs))[1]
    result = ClosedLoop(world, agent, synth).run(3, seed=0)
    assert result.summary["frames"] == 3 and result.summary["synth"] == synth.name
    assert len(seen) == 4 and all(s.shape == (64, 128, 3) and s.dtype == np.uint8 for s in seen)
    assert not np.array_equal(seen[-1], result.last_frame.camera.rgb)  # the agent saw the synthesized image
    summary = tmp_path / "s.json"
    main(["run", "--synth", str(tmp_path / "m"), "--frames", "3", "--headless", "--width", "128", "--height", "64",
          "--summary", str(summary), "--quiet"])
    assert json.loads(summary.read_text())["synth"] == f"pix2pix.UnetGenerator@{tmp_path / 'm'}"


# ----- errors -------------------------------------------------------------------------------------------
def test_none_is_the_worlds_render(plain_frame):
    synth = load_synthesizer("none")
    assert isinstance(synth, WorldRender) and synth(plain_frame) is plain_frame.camera.rgb


def test_missing_and_non_model_directories(tmp_path):
    with pytest.raises(DrivesimError, match="synthesizer not found: .*nope; pass --synth none, a training run"):
        load_synthesizer(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DrivesimError, match="no config.json"):
        load_synthesizer(str(tmp_path / "empty"))


def test_a_label_space_carla_tags_cannot_be_mapped_to(tmp_path):
    spec = {**InputSpec(kind="onehot", num_classes=150, dontcare=True).to_dict(), "label_space": "ade20k"}
    save(spade(InputSpec(num_classes=150, dontcare=True)), tmp_path / "ade", "spade.SPADEGenerator", spec)
    with pytest.raises(DrivesimError) as e:
        load_synthesizer(str(tmp_path / "ade"), device="cpu")
    assert "'ade20k'" in str(e.value) and "cannot be mapped" in str(e.value) and "\n" not in str(e.value)
    few = InputSpec(kind="onehot", label_space="carla", num_classes=23)  # CARLA < 0.9.14 had 23 tags
    save(spade(few), tmp_path / "old", "spade.SPADEGenerator", few)
    with pytest.raises(DrivesimError, match="has 23 classes, but CARLA tags map to carla ids up to 28"):
        load_synthesizer(str(tmp_path / "old"), device="cpu")


def test_instance_edges_on_a_camera_without_instance(tmp_path, plain_frame):
    save(spade(ONEHOT_EDGES), tmp_path / "m", "spade.SPADEGenerator", ONEHOT_EDGES)
    synth = load_synthesizer(str(tmp_path / "m"), device="cpu")
    with pytest.raises(DrivesimError, match="takes instance edges but camera 'front' has no instance stream"):
        synth(plain_frame)
    with pytest.raises(DrivesimError, match="front:rgb\\+semantic\\+instance"):
        synth.check(PLAIN)
    synth.check(WITH_INSTANCE)


def test_a_model_that_is_not_a_generator(tmp_path, frame):
    from drivesim_carla.training.pix2pix.networks import NLayerDiscriminator

    save(NLayerDiscriminator(input_nc=3, ndf=4), tmp_path / "d", "pix2pix.NLayerDiscriminator", COLOR)
    with pytest.raises(DrivesimError, match="does not make images"):
        load_synthesizer(str(tmp_path / "d"), device="cpu")(frame)
    save(unet(), tmp_path / "noinput", "pix2pix.UnetGenerator", COLOR)
    card = tmp_path / "noinput" / "config.json"
    card.write_text(card.read_text().replace('"input"', '"not_input"'))
    with pytest.raises(DrivesimError, match="no input description"):
        load_synthesizer(str(tmp_path / "noinput"))


def test_device_and_precision_errors(tmp_path):
    save(unet(), tmp_path / "m", "pix2pix.UnetGenerator", COLOR)
    with pytest.raises(DrivesimError, match="unknown precision 'fp8'"):
        load_synthesizer(str(tmp_path / "m"), precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(DrivesimError, match="no CUDA device here"):
            load_synthesizer(str(tmp_path / "m"), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_channels_last_compile_match_the_cpu(tmp_path, frame):
    net = spade(ONEHOT_EDGES)
    save(net, tmp_path / "m", "spade.SPADEGenerator", ONEHOT_EDGES)
    cpu = load_synthesizer(str(tmp_path / "m"), device="cpu")(frame)
    for kw in ({}, {"precision": "fp32"}, {"compile": True}):
        synth = load_synthesizer(str(tmp_path / "m"), device="cuda", **kw)
        assert synth.device.type == "cuda"
        a, b = synth(frame), synth(frame)
        assert a.shape == cpu.shape and a.dtype == np.uint8 and not np.shares_memory(a, b)
        assert np.array_equal(a, b)
        diff = np.abs(a.astype(int) - cpu.astype(int))
        limit = 1 if kw.get("precision") == "fp32" else 12  # bf16/fp16 autocast
        assert np.percentile(diff, 99) <= limit, (kw, diff.mean(), diff.max())
        synth.close()
