"""CycleGAN and the unsupervised Recycle-GAN: the ResNet generator equal to the references', its
converter, warping and synthetic flow, the warping error, the training steps and the eval command."""

import json
from pathlib import Path

import numpy as np
import pytest
import recordings
import torch
from click.testing import CliRunner
from safetensors import safe_open

from drivesim_carla.errors import DrivesimError
from drivesim_carla.models.pretrained import read_card
from drivesim_carla.models.registry import NETWORKS, resolve
from drivesim_carla.scenarios import load_scenario
from drivesim_carla.synth import GeneratorSynth, load_synthesizer
from drivesim_carla.training import from_pretrained, save_pretrained
from drivesim_carla.training.core.config import load_config
from drivesim_carla.training.core.data import Sources
from drivesim_carla.training.core.registry import CONVERTERS, FAMILIES
from drivesim_carla.training.core.trainer import Trainer, load_run_config
from drivesim_carla.training.pix2pix.networks import NLayerDiscriminator, UnetGenerator
from drivesim_carla.training.recycle.convert import convert, infer_config
from drivesim_carla.training.recycle.eval_warp import warp_command
from drivesim_carla.training.recycle.flow import box_blur, synthetic_flow, synthetic_pair, warp
from drivesim_carla.training.recycle.networks import ResnetGenerator
from drivesim_carla.training.recycle.task import (
    CycleGANConfig,
    CycleGANTask,
    ImagePool,
    RecycleConfig,
    RecycleTask,
)
from drivesim_carla.training.recycle.temporal import (
    FrameData,
    farneback,
    pair_error,
    score_source,
    visible,
)
from drivesim_carla.types import CameraSpec
from drivesim_carla.world import make_world

FIXTURE = Path(__file__).parent / "fixtures" / "cyclegan_reference.safetensors"


@pytest.fixture(scope="module")
def reference():
    """name -> (state dict as the reference names it, input, output, options); see make_cyclegan_fixtures.py."""
    out = {}
    with safe_open(str(FIXTURE), "pt") as f:
        meta = f.metadata()
        for name in ("g9", "g6b", "gz", "u6"):
            state = {k[len(f"{name}.state."):]: _f32(f.get_tensor(k)) for k in f.keys()
                     if k.startswith(f"{name}.state.")}
            out[name] = (state, _f32(f.get_tensor(f"{name}.input")), f.get_tensor(f"{name}.output"),
                         json.loads(meta[name]))
    return out


def _f32(t):
    return t.float() if t.is_floating_point() else t


# ----- golden: converted reference weights give the reference's outputs -----------------------------
@pytest.mark.parametrize("name, expected", [
    ("g9", dict(ngf=4, n_blocks=9, norm="instance", use_dropout=False, padding_type="reflect")),
    ("g6b", dict(ngf=4, n_blocks=6, norm="batch", use_dropout=True, padding_type="reflect")),
    ("u6", dict(ngf=4, n_blocks=6, norm="instance", use_dropout=False, padding_type="reflect")),  # Unsup_Recycle_GAN
])
def test_converted_generator_matches_reference(reference, name, expected):
    state, x, y, _ = reference[name]
    converted = convert(state)
    assert converted.network == "cyclegan.ResnetGenerator"
    assert {k: converted.net.config[k] for k in expected} == expected
    assert not converted.net.training
    with torch.no_grad():
        ours = converted.net(x)
    assert ours.shape == y.shape
    assert torch.allclose(ours, y, atol=1e-4), (ours - y).abs().max()
    assert y.std() > 0.3  # the fixture is not a near-constant image


def test_zero_padding_and_output_channels_are_inferred(reference):
    state, x, y, _ = reference["gz"]
    config = infer_config(state)
    assert config == dict(input_nc=3, output_nc=2, ngf=4, n_blocks=2, norm="instance", use_dropout=False,
                          padding_type="zero")
    net = ResnetGenerator(**config).eval()
    net.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(net(x), y, atol=1e-4)
    with pytest.raises(DrivesimError, match="maps 3 to 2 channels; the 'rgb' preset needs 3 -> 3"):
        convert(state)


def test_pre_04_checkpoints_convert(reference):
    """The published models carry instance-norm running statistics; old batch norms lack num_batches_tracked."""
    state, x, y, _ = reference["g9"]
    norms = {k[: -len("running_mean")]: v.shape for k, v in ResnetGenerator(ngf=4, norm="batch").state_dict().items()
             if k.endswith("running_mean")}
    old = dict(state)
    for place, shape in norms.items():
        old |= {place + "running_mean": torch.randn(shape), place + "running_var": torch.rand(shape) + 5}
    assert len(old) == len(state) + 2 * 23  # 3 norms down, 2 in each of the 9 blocks, 2 up
    with torch.no_grad():
        assert torch.allclose(convert(old).net(x), y, atol=1e-4)

    state, x, y, _ = reference["g6b"]
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    with torch.no_grad():
        assert torch.allclose(convert(old).net(x), y, atol=1e-4)


def _one_line_error(state, match):
    with pytest.raises(DrivesimError, match=match) as e:
        convert(state)
    assert "\n" not in str(e.value)


def test_rejects_other_checkpoints(reference):
    _one_line_error(UnetGenerator(num_downs=5, ngf=2).state_dict(), "U-Net generator .*drivesim convert pix2pix")
    _one_line_error(NLayerDiscriminator(3, 4).state_dict(), "PatchGAN discriminator .*latest_net_G_A.pth")
    _one_line_error({"step": torch.tensor(3)}, "not a CycleGAN ResNet generator .*keys start step")
    state = reference["g9"][0]
    truncated = {k: v for k, v in state.items() if not k.startswith("model.26.")}  # the output convolution
    _one_line_error(truncated, "no output convolution at model.26")
    odd = {k: v for k, v in state.items() if not k.startswith("model.10.conv_block.5.")}
    _one_line_error(odd, r"unexpected residual block layout \(convolutions at model.10.conv_block.\[1\]\)")
    hole = {k: v for k, v in state.items() if not k.startswith("model.13.conv_block.5.")}
    _one_line_error(hole, "2 missing: model.13.conv_block.5.bias, model.13.conv_block.5.weight")
    no_norm = {k: v for k, v in state.items() if k != "model.1.bias"}
    _one_line_error(no_norm, "neither batch nor instance norm")
    wrong = dict(state, **{"model.4.weight": torch.zeros(9, 4, 3, 3)})  # a width that fits no ngf
    _one_line_error(wrong, r"wrong shape: model.4.weight \[\(9, 4, 3, 3\) vs \(8, 4, 3, 3\)\]")
    with pytest.raises(DrivesimError, match="unknown cyclegan preset 'nope'; valid: .*rgb"):
        convert(state, preset="nope")


def test_registries_point_here():
    from drivesim_carla.training.recycle.convert import convert as registered

    assert resolve(NETWORKS, "cyclegan.ResnetGenerator", "network") is ResnetGenerator
    assert resolve(CONVERTERS, "cyclegan", "converter") is registered
    assert resolve(FAMILIES, "cyclegan", "family") is CycleGANTask
    assert resolve(FAMILIES, "recycle", "family") is RecycleTask


def test_generator_checks_its_input_size():
    net = ResnetGenerator(ngf=2, n_blocks=1).eval()
    assert net(torch.zeros(1, 3, 12, 20)).shape == (1, 3, 12, 20)
    with pytest.raises(DrivesimError, match=r"multiples of 4, got \(12, 22\)"):
        net(torch.zeros(1, 3, 12, 22))
    with pytest.raises(ValueError, match="unknown padding_type 'mirror'"):
        ResnetGenerator(padding_type="mirror")


# ----- our checkpoints, and the generator in the loop --------------------------------------------------
@pytest.fixture(scope="module")
def world_frame():
    camera = CameraSpec("front", 128, 64, 90.0, streams=("rgb", "semantic"))
    return make_world("embedded", load_scenario("default"), 2, cameras=[camera], style="flat").reset(2)


def test_round_trip_and_synth_translates_the_rgb_stream(reference, tmp_path, world_frame):
    converted = convert(reference["g9"][0])
    save_pretrained(converted.net, tmp_path / "g", network=converted.network, meta=converted.meta)
    back = from_pretrained(tmp_path / "g")
    assert isinstance(back, ResnetGenerator) and back.config == converted.net.config and not back.training
    card = read_card(tmp_path / "g")
    assert card.meta["input"]["kind"] == "rgb" and card.meta["preset"] == "rgb"

    synth = load_synthesizer(str(tmp_path / "g"), device="cpu")
    assert isinstance(synth, GeneratorSynth) and synth.streams == ("rgb",)
    out = synth(world_frame)
    rgb = torch.from_numpy(world_frame.camera.rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        want = ((converted.net(rgb)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    assert out.shape == (64, 128, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1 and out.std() > 5

    label2photo = convert(reference["g9"][0], preset="cityscapes_label2photo")
    save_pretrained(label2photo.net, tmp_path / "l", network=label2photo.network, meta=label2photo.meta)
    assert load_synthesizer(str(tmp_path / "l"), device="cpu").streams == ("semantic",)


# ----- warping and synthetic flow ----------------------------------------------------------------------
def test_warp_of_a_known_translation_is_the_shifted_image():
    x = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(warp(x, torch.zeros(2, 16, 20)), x, atol=1e-5)  # exact up to float rounding
    flow = torch.tensor([3.0, -2.0]).view(2, 1, 1).expand(2, 16, 20)  # moved 3 right and 2 up since x
    y = warp(x, flow)
    assert torch.allclose(y[..., 0:14, 3:20], x[..., 2:16, 0:17], atol=1e-5)
    assert torch.allclose(y[..., 5, 1], x[..., 7, 0], atol=1e-5)  # left of the image: the border pixel
    half = warp(x, torch.tensor([0.5, 0.0]).view(2, 1, 1).expand(2, 16, 20))
    assert torch.allclose(half[..., 1:], (x[..., 1:] + x[..., :-1]) / 2, atol=1e-5)  # bilinear


def test_synthetic_flow_is_smooth_random_motion():
    g = torch.Generator().manual_seed(0)
    flow = synthetic_flow(256, 512, generator=g)
    assert flow.shape == (2, 256, 512) and flow.dtype == torch.float32
    assert torch.equal(flow, synthetic_flow(256, 512, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(flow, synthetic_flow(256, 512, generator=g))
    assert flow.diff(dim=-1).abs().max() < 0.5 and flow.diff(dim=-2).abs().max() < 0.5  # 100-px box filter
    assert flow.std(dim=(1, 2)).max() > 0.05  # not a constant shift
    shifts = torch.stack([synthetic_flow(64, 96, motion_level=0, generator=g) for _ in range(50)])
    assert torch.equal(shifts, shifts[..., :1, :1].expand_as(shifts))  # constant fields
    assert torch.equal(shifts, shifts.round()) and shifts.abs().max() == 10 and len(shifts.unique()) > 10
    zoom = synthetic_flow(40, 60, scale_level=1.0, generator=g)
    assert torch.allclose(zoom[0].diff(dim=-1), zoom[0, :1, 1:2] - zoom[0, :1, :1], atol=1e-6)  # linear in x
    assert synthetic_flow(30, 40, generator=g).shape == (2, 30, 40)  # smaller than one 100-px cell


def test_box_blur_is_the_mean_over_the_window():
    x = torch.arange(2 * 7 * 9, dtype=torch.float32).view(2, 7, 9)
    y = box_blur(x, 3)
    assert torch.allclose(y[:, 3, 4], x[:, 2:5, 3:6].mean((1, 2)))
    assert torch.allclose(y[:, 0, 0], x[:, [1, 0, 1]][:, :, [1, 0, 1]].mean((1, 2)))  # mirrored, edge not repeated
    assert torch.allclose(box_blur(torch.ones(2, 5, 6), 100), torch.ones(2, 5, 6))


def test_synthetic_pair_is_the_warped_frame_plus_noise():
    first = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    second, flow = synthetic_pair(first, noise_level=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(second, warp(first, flow))
    noisy, flow2 = synthetic_pair(first, noise_level=0.05, generator=torch.Generator().manual_seed(1))
    assert torch.equal(flow2, flow)
    assert 0.05 <= (noisy - second).std() <= 0.1


# ----- the warping error -----------------------------------------------------------------------------
class Panning:
    """A camera panning over a fixed random scene: frame t is a window moved (2, 1) pixels per frame,
    with its exact flow."""

    name, has_flow, camera = "panning", True, "front"

    def __init__(self, n: int = 5):
        rng = np.random.default_rng(0)
        scene = torch.from_numpy(rng.random((1, 3, 24, 32), dtype=np.float32))
        scene = torch.nn.functional.interpolate(scene, size=(96, 128), mode="bicubic", align_corners=False)
        self.scene = (scene[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        self.n = n

    def __len__(self):
        return self.n

    def frame(self, i):
        rgb = self.scene[40 - i: 40 - i + 48, 50 - 2 * i: 50 - 2 * i + 64]  # content moves right 2, down 1
        return FrameData(rgb=np.ascontiguousarray(rgb), flow=np.broadcast_to(np.float32([2, 1]), (48, 64, 2)).copy())


def test_warping_error_is_zero_for_a_consistent_translator_and_not_for_a_flickering_one():
    source = Panning()
    steady = score_source(source, lambda f: 255 - f.rgb)
    assert steady.warping_error < 1e-6 and steady.input_warping_error < 1e-6 and steady.pairs == 4
    assert steady.valid_fraction == pytest.approx((47 * 62) / (48 * 64))  # sources outside the frame excluded
    frames = iter(range(100))
    flicker = score_source(source, lambda f: np.clip(f.rgb.astype(int) + 20 * (next(frames) % 2), 0, 255)
                           .astype(np.uint8))
    clipped = (source.scene > 235).mean()
    assert 20 / 255 * (1 - 2 * clipped) < flicker.warping_error <= 20 / 255
    assert flicker.input_warping_error < 1e-6


def test_farneback_flow_follows_the_world_convention():
    source = Panning()
    a, b = source.frame(0).rgb, source.frame(1).rgb
    flow, valid = farneback(a, b)
    assert valid.mean() > 0.6
    assert np.median(np.abs(flow[valid] - [2, 1]).sum(-1)) < 0.3
    assert pair_error(a, b, flow, valid) < 0.3 * pair_error(a, b, np.zeros_like(flow), valid)


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """60 textured frames of the embedded world at 256x128 with every stream (by the end the ego drives
    ~6 m/s). Textures, not the flat style: lines sliding along themselves are where aliasing, not
    motion, decides the error."""
    return recordings.record(tmp_path_factory, "all_streams", 60, seed=0, style="textured", size=(256, 128))


@pytest.mark.parametrize("camera", ["front", "rear"])
def test_recorded_flow_warps_the_previous_frame_onto_the_next(moving, camera):
    """docs/recording-format.md: flow[t] is where a pixel's point is now minus where it was at t - 1,
    so warp(frame[t-1], flow[t]) reproduces frame[t] on static, visible pixels (the reverse, frame t
    from frame t+1, would need the forward flow, which is not recorded). Measured where things move
    (> 2 px); the sensor noise of the textured style is the floor."""
    from drivesim_carla.recorders.session import Session

    s = Session(moving)
    r = s.read_range(len(s) - 2, len(s), camera=camera, streams=("rgb", "flow", "depth", "instance"))
    a, b, flow = r.rgb[0], r.rgb[1], r.flow[1]
    seen = visible(flow, r.depth[0], r.depth[1], travel=float(r.speed[1]) / s.fps)
    assert 0.5 < seen.mean() < 0.99  # the depth test finds occlusions and the borders
    mask = seen & (r.instance[1] == 0) & (np.abs(flow).sum(-1) > 2)
    assert mask.mean() > 0.2
    warped = pair_error(a, b, flow, mask)
    assert warped < 0.75 * pair_error(a, b, np.zeros_like(flow), mask)
    assert warped < 0.55 * pair_error(a, b, -flow, mask)
    estimated, valid = farneback(a, b)  # estimated on the frames, in the same convention
    both = mask & valid
    size = np.median(np.abs(flow)[both].sum(-1))
    assert np.median(np.abs(estimated - flow)[both].sum(-1)) < 0.5 * size
    assert np.median(np.abs(estimated + flow)[both].sum(-1)) > size


# ----- training ----------------------------------------------------------------------------------------
def test_config_defaults_are_the_reference_recipes():
    c = CycleGANConfig()
    assert (c.lr, c.beta1, c.beta2, c.gan_mode, c.lambda_A, c.lambda_B, c.lambda_identity) == \
        (2e-4, 0.5, 0.999, "ls", 10.0, 10.0, 0.5)
    assert (c.pool_size, c.ngf, c.ndf, c.n_blocks, c.n_layers_D, c.norm, c.dropout) == \
        (50, 64, 64, 9, 3, "instance", False)
    assert (c.epochs, c.lr_decay_start, c.flip, c.crop) == (200, 0.5, True, (256, 512))
    r = RecycleConfig()
    assert (r.lambda_spa_unsup, r.lambda_unsup_cycle, r.lambda_cycle, r.lambda_content) == \
        ((10, 10), (10, 10), (0, 0), (1, 1))
    assert (r.noise_level, r.motion_level, r.shift_level, r.scale_level) == (0.001, 8.0, 10, 0.0)
    assert (r.n_blocks, r.pool_size, r.lambda_identity, r.epochs, r.lr_decay_start) == (6, 0, 0.0, 2, 1.0)
    assert (r.size, r.crop, r.flip) == ((286, 542), (256, 512), False)
    assert load_config(RecycleConfig, overrides={"lambda_cycle": 5}).lambda_cycle == (5, 5)
    assert load_config(RecycleConfig, overrides={"lambda_spa_unsup": [10, 0]}).lambda_spa_unsup == (10, 0)
    with pytest.raises(DrivesimError, match="lambda_A are CycleGAN's cycle weights; .* lambda_cycle"):
        load_config(RecycleConfig, overrides={"lambda_A": 1})
    with pytest.raises(DrivesimError, match="lambda_content must be >= 0"):
        load_config(RecycleConfig, overrides={"lambda_content": [1, -1]})
    with pytest.raises(DrivesimError, match="divisible by 4, got 250x512"):
        load_config(CycleGANConfig, overrides={"crop": [250, 512]})


def _tiny(cls, **kw):
    base = dict(ngf=4, ndf=4, n_blocks=1, size=(32, 64), crop=None)
    if cls is RecycleConfig:
        base["lambda_content"] = 0
    return cls(**{**base, **kw})


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(2, 3, 32, 64, generator=g) * 2 - 1, "B": torch.rand(2, 3, 32, 64, generator=g) * 2 - 1}


def _grads(net) -> list:
    return [p.grad for p in net.parameters()]


@pytest.mark.parametrize("task_cls, cfg_cls, terms", [
    (CycleGANTask, CycleGANConfig, {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"}),
    (RecycleTask, RecycleConfig, {"G_A", "G_B", "unsup_cycle_A", "unsup_cycle_B", "spa_A", "spa_B"}),
])
def test_steps_move_the_right_parameters(task_cls, cfg_cls, terms):
    """G first (both generators learn, the discriminators give gradients to them but take none), then D
    (both discriminators learn from the same step's fakes; no generator gradients)."""
    torch.manual_seed(0)
    task = task_cls(_tiny(cfg_cls))
    batch = _batch()
    assert task.phases == ("g", "d")
    g_out = []
    task.G_A.register_forward_hook(lambda m, i, o: g_out.append(o.detach()))
    losses = task.g_step(batch)
    losses["loss"].backward()
    assert set(losses) == terms | {"loss"}
    assert torch.allclose(losses["loss"], sum(v for k, v in losses.items() if k != "loss"))
    assert all(g is not None for g in _grads(task.G_A) + _grads(task.G_B))
    assert all(g is None for g in _grads(task.D_A) + _grads(task.D_B))
    assert all(p.requires_grad for p in task.D_A.parameters())

    task.zero_grad(set_to_none=True)
    d_in = []
    task.D_A.register_forward_hook(lambda m, i, o: d_in.append(i[0].detach()))
    losses = task.d_step(batch)
    losses["loss"].backward()
    assert set(losses) == {"loss", "D_A", "D_B"} and torch.allclose(losses["loss"], losses["D_A"] + losses["D_B"])
    assert all(g is not None for g in _grads(task.D_A) + _grads(task.D_B))
    assert all(g is None for g in _grads(task.G_A) + _grads(task.G_B))
    assert torch.equal(d_in[0], batch["B"]) and torch.equal(d_in[1], g_out[0])  # real B, then G_A(A) of g_step


def test_cyclegan_loss_weights():
    torch.manual_seed(0)
    task = CycleGANTask(_tiny(CycleGANConfig, lambda_A=3.0, lambda_B=5.0, lambda_identity=0.5))
    batch = _batch()
    losses = task.g_step(batch)
    with torch.no_grad():
        rec_A = task.G_B(task.G_A(batch["A"]))
        idt_A = task.G_A(batch["B"])
    assert torch.allclose(losses["cycle_A"], 3 * (rec_A - batch["A"]).abs().mean(), atol=1e-6)
    assert torch.allclose(losses["idt_A"], 0.5 * 5 * (idt_A - batch["B"]).abs().mean(), atol=1e-6)
    assert "idt_A" not in CycleGANTask(_tiny(CycleGANConfig, lambda_identity=0)).g_step(batch)


def test_unsupervised_losses_vanish_for_translators_that_commute_with_warping():
    """A per-pixel linear generator commutes with (bilinear) warping: the spatial loss is 0; with its
    inverse as G_B the recycle loss is 0 too. A generator that looks at neighbours does not commute."""
    torch.manual_seed(0)
    task = RecycleTask(_tiny(RecycleConfig, noise_level=0.0))
    m = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.9, 0.1], [0.0, 0.3, 0.7]])
    g_a, g_b = torch.nn.Conv2d(3, 3, 1, bias=False), torch.nn.Conv2d(3, 3, 1, bias=False)
    g_a.weight.data = m.view(3, 3, 1, 1)
    g_b.weight.data = torch.linalg.inv(m).view(3, 3, 1, 1)
    a = _batch()["A"]
    with torch.no_grad():
        assert task._spatial(a, g_a(a), g_a) < 1e-5
        assert task._recycle(g_a(a), a, g_b) < 1e-5
        blur = torch.nn.Conv2d(3, 3, 5, padding=2, bias=False)
        assert task._spatial(a, blur(a), blur) > 1e-2


def test_image_pool():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(x), x)  # no pool: the fakes as they are
    pool = ImagePool(3)
    first = torch.rand(2, 3, 4, 4)
    assert torch.equal(pool.query(first), first)  # filling: returned as they are, and kept
    second = torch.rand(2, 3, 4, 4)
    out = pool.query(second)
    assert torch.equal(out, second) and len(pool.images) == 3  # the pool took one more, then was full
    seen = set()
    for _ in range(40):
        new = torch.rand(1, 3, 4, 4)
        before = [t.clone() for t in pool.images]
        got = pool.query(new)
        if torch.equal(got, new):
            assert all(torch.equal(a, b) for a, b in zip(before, pool.images))
        else:  # swapped: an image stored before comes back, the new one takes its place
            k = next(i for i, t in enumerate(before) if torch.equal(t, got))
            assert torch.equal(pool.images[k], new)
            seen.add(k)
    assert seen == {0, 1, 2}
    assert not pool.query(torch.rand(1, 3, 4, 4, requires_grad=True)).requires_grad


def test_content_loss(vgg19_weights):
    torch.manual_seed(0)
    task = RecycleTask(_tiny(RecycleConfig, lambda_content=[1, 2], lambda_spa_unsup=0, lambda_unsup_cycle=0))
    batch = _batch()
    losses = task.g_step(batch)
    assert set(losses) == {"loss", "G_A", "G_B", "content_A", "content_B"}
    assert losses["content_A"] > 0 and losses["content_B"] > 0
    assert task.content(batch["A"], batch["A"]) == 0
    assert not any(p.requires_grad for p in task.content.parameters())
    task.train()
    assert not task.content.features.training


def test_content_loss_offline_names_the_way_out(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(DrivesimError, match="--set lambda_content=0"):
        RecycleTask(_tiny(RecycleConfig, lambda_content=1))


def test_export():
    task = RecycleTask(_tiny(RecycleConfig))
    name, net, meta = task.export()
    assert name == "cyclegan.ResnetGenerator" and net is task.G_A
    assert meta == {"family": "recycle", "input": {"kind": "rgb", "label_space": "rgb", "num_classes": 35,
                                                   "dontcare": False, "instance_edges": False},
                    "direction": "AtoB", "size": [32, 64]}
    assert set(task.networks()) == {"G_A", "G_B", "D_A", "D_B"}


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """Domain A: the flat style; domain B: the textured one (no flow needed)."""
    return (recordings.record(tmp_path_factory, "default", 12, seed=1),
            recordings.front_only(tmp_path_factory))


def test_trainer_runs_recycle_and_resumes(domains, tmp_path):
    a, b = domains
    overrides = dict(steps=2, ngf=4, ndf=4, n_blocks=1, lambda_content=0, size=(32, 64), crop=None,
                     val_fraction=0.2, batch_size=2, save_every=1, eval_every=2)
    config = load_config(RecycleConfig, None, overrides)
    summary = Trainer(RecycleTask, config, tmp_path / "run", Sources((a,), extra={"target": (b,)})).fit()
    assert summary["steps"] == 2 and summary["train_samples"] == 10
    assert summary["eval"]["samples"] == 2 and summary["eval"]["cycle_A"] > 0 and summary["eval"]["warp_A"] > 0
    assert {p.name for p in (tmp_path / "run" / "checkpoints" / "step_00000002").iterdir()} == \
        {"G_A.safetensors", "G_B.safetensors", "D_A.safetensors", "D_B.safetensors", "state.pt"}
    g = from_pretrained(tmp_path / "run")
    assert isinstance(g, ResnetGenerator) and g.config["n_blocks"] == 1
    card = read_card(tmp_path / "run")
    assert card.meta["family"] == "recycle" and card.meta["direction"] == "AtoB"
    assert (card.meta["input"]["kind"], card.meta["input"]["label_space"]) == ("rgb", "rgb")

    config, data = load_run_config(RecycleTask, tmp_path / "run", {"steps": 3})  # what --resume does
    assert config.lambda_cycle == (0, 0) and "lambda_A" not in (tmp_path / "run" / "config.yaml").read_text()
    summary = Trainer(RecycleTask, config, tmp_path / "run", Sources((a,), extra={"target": tuple(data["target"])}),
                      resume=True).fit()
    assert summary["steps"] == 3
    # the synthetic flows and noise come from the checkpointed RNG, and pool_size is 0: bit for bit
    Trainer(RecycleTask, config, tmp_path / "straight", Sources((a,), extra={"target": (b,)})).fit()
    resumed = from_pretrained(tmp_path / "run").state_dict()
    straight = from_pretrained(tmp_path / "straight").state_dict()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_cli_converts_and_refuses_a_missing_target(reference, domains, tmp_path, capsys):
    from drivesim_carla.cli import main

    torch.save({k: v for k, v in reference["u6"][0].items()}, tmp_path / "latest_net_G_A.pth")
    main(["convert", "cyclegan", str(tmp_path / "latest_net_G_A.pth"), "--out", str(tmp_path / "g")])
    assert "cyclegan.ResnetGenerator" in capsys.readouterr().out
    state, x, y, _ = reference["u6"]
    with torch.no_grad():
        assert torch.allclose(from_pretrained(tmp_path / "g")(x), y, atol=1e-4)
    with pytest.raises(SystemExit) as e:
        main(["train", "recycle", "--data", str(domains[0]), "--set", "lambda_content=0", "--out",
              str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--target (B)" in err


def test_unpaired_data_errors(domains, tmp_path):
    a, b = domains
    config = _tiny(CycleGANConfig)
    with pytest.raises(DrivesimError, match="needs two domains: .*--data \\(A\\) and .*--target \\(B\\)"):
        CycleGANTask.datasets(config, Sources((a,)))
    with pytest.raises(DrivesimError, match="--cityscapes gives labelled data"):
        CycleGANTask.datasets(config, Sources((a,), cityscapes=tmp_path, extra={"target": (b,)}))
    import cv2

    (tmp_path / "small").mkdir()
    cv2.imwrite(str(tmp_path / "small" / "0.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(DrivesimError, match=r"A frames are 64x128 and domain B frames 40x40 .*--set size="):
        CycleGANTask.datasets(_tiny(CycleGANConfig, size=None), Sources((a,), extra={"target": (tmp_path / "small",)}))
    train, held = CycleGANTask.datasets(config, Sources((a,), extra={"target": (tmp_path / "small",)}))
    sample = train[0]
    assert sample["A"].shape == sample["B"].shape == (3, 32, 64) and held is not None


# ----- the eval command ----------------------------------------------------------------------------------
def test_eval_warp_command(reference, domains, tmp_path, tmp_path_factory):
    session = recordings.all_streams(tmp_path_factory)
    converted = convert(reference["g9"][0])
    save_pretrained(converted.net, tmp_path / "g", network=converted.network, meta=converted.meta)
    runner = CliRunner()
    args = ["--model", str(tmp_path / "g"), "--data", str(session), "--camera", "rear", "--device", "cpu"]
    result = runner.invoke(warp_command, [*args, "--frames", "4", "--json", str(tmp_path / "w.json")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("warping error ")
    assert "3 frame pairs from 1 source(s), recorded flow" in result.output
    r = json.loads((tmp_path / "w.json").read_text())
    assert r["pairs"] == 3 and r["flow"] == "recorded" and r["warping_error"] > 0 and r["input_warping_error"] >= 0
    assert 0.5 < r["valid_fraction"] <= 1

    estimated = runner.invoke(warp_command, [*args, "--frames", "3", "--flow", "farneback"])
    assert estimated.exit_code == 0 and "Farneback flow" in estimated.output

    unrecorded = runner.invoke(warp_command, ["--model", str(tmp_path / "g"), "--data", str(domains[0]),
                                              "--flow", "gt"])
    assert isinstance(unrecorded.exception, DrivesimError) and "has no recorded flow" in str(unrecorded.exception)
    short = runner.invoke(warp_command, [*args, "--frames", "1"])
    assert isinstance(short.exception, DrivesimError) and "at least 2 consecutive frames" in str(short.exception)
    folder = tmp_path / "one"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "0.png"), np.zeros((64, 128, 3), np.uint8))
    single = runner.invoke(warp_command, ["--model", str(tmp_path / "g"), "--data", str(folder), "--device", "cpu"])
    assert isinstance(single.exception, DrivesimError) and "1 frame(s); the warping error needs at least 2" in \
        str(single.exception)
    labels = convert(reference["g9"][0], preset="cityscapes_label2photo")
    save_pretrained(labels.net, tmp_path / "l", network=labels.network, meta=labels.meta)
    no_labels = runner.invoke(warp_command, ["--model", str(tmp_path / "l"), "--data", str(folder)])
    assert isinstance(no_labels.exception, DrivesimError) and "has RGB only, and this model takes semantic" in \
        str(no_labels.exception)
