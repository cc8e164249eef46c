"""pix2pix: networks equal to the reference's, the checkpoint converter, save/load, training steps."""

import json
from pathlib import Path

import pytest
import recordings
import torch
from safetensors import safe_open

from drivesim_carla.errors import DrivesimError
from drivesim_carla.models.pretrained import check_state_dict, read_card
from drivesim_carla.models.registry import NETWORKS, resolve
from drivesim_carla.training import from_pretrained, save_pretrained
from drivesim_carla.training.core.config import load_config
from drivesim_carla.training.core.data import Sources
from drivesim_carla.training.core.registry import CONVERTERS, FAMILIES
from drivesim_carla.training.core.trainer import Trainer
from drivesim_carla.training.pix2pix.convert import convert
from drivesim_carla.training.pix2pix.networks import NLayerDiscriminator, UnetGenerator
from drivesim_carla.training.pix2pix.task import Pix2PixConfig, Pix2PixTask

FIXTURE = Path(__file__).parent / "fixtures" / "pix2pix_reference.safetensors"


@pytest.fixture(scope="module")
def reference():
    """name -> (state dict as the reference names it, input, output, options); see make_pix2pix_fixtures.py."""
    out = {}
    with safe_open(str(FIXTURE), "pt") as f:
        meta = f.metadata()
        for name in ("g256", "g128", "d"):
            state = {k[len(f"{name}.state."):]: _f32(f.get_tensor(k)) for k in f.keys()
                     if k.startswith(f"{name}.state.")}
            out[name] = (state, _f32(f.get_tensor(f"{name}.input")), f.get_tensor(f"{name}.output"),
                         json.loads(meta[name]))
    return out


def _f32(t):
    return t.float() if t.is_floating_point() else t


# ----- golden: converted reference weights give the reference's outputs ----------------------------
@pytest.mark.parametrize("name, expected", [
    ("g256", dict(input_nc=3, output_nc=3, num_downs=8, ngf=2, norm="batch")),
    ("g128", dict(input_nc=3, output_nc=2, num_downs=7, ngf=2, norm="instance")),
])
def test_converted_generator_matches_reference(reference, name, expected):
    state, x, y, _ = reference[name]
    converted = convert(state)
    assert converted.network == "pix2pix.UnetGenerator"
    assert {k: converted.net.config[k] for k in expected} == expected
    assert not converted.net.training
    with torch.no_grad():
        ours = converted.net(x)
    assert ours.shape == y.shape
    assert torch.allclose(ours, y, atol=1e-4), (ours - y).abs().max()
    assert y.std() > 0.1  # the fixture is not a near-constant image


def test_patchgan_matches_reference(reference):
    state, x, y, options = reference["d"]
    net = NLayerDiscriminator(options["input_nc"], options["ndf"], 3, options["norm"])
    check_state_dict(net, state, "fixture")  # same names and shapes, no renaming
    net.load_state_dict(state)
    with torch.no_grad():
        ours = net.eval()(x)
    assert ours.shape == y.shape == (2, 1, 6, 10)
    assert torch.allclose(ours, y, atol=1e-4), (ours - y).abs().max()


def test_pre_04_checkpoints_convert(reference):
    """Batch norms without num_batches_tracked; instance norms with running statistics (old PyTorch)."""
    state, x, y, _ = reference["g256"]
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    with torch.no_grad():
        assert torch.allclose(convert(old).net(x), y, atol=1e-4)

    state, x, y, _ = reference["g128"]
    norm_places = [k[: -len("running_mean")] for k in UnetGenerator(3, 2, 7, 2, "batch").state_dict()
                   if k.endswith("running_mean")]
    old = dict(state)
    for p in norm_places:
        old |= {p + "running_mean": torch.randn(2), p + "running_var": torch.rand(2) + 5}
    converted = convert(old)
    assert converted.net.config["norm"] == "instance"
    with torch.no_grad():
        assert torch.allclose(converted.net(x), y, atol=1e-4)


# ----- the converter's contract -----------------------------------------------------------------
def test_registries_point_here():
    assert resolve(NETWORKS, "pix2pix.UnetGenerator", "network") is UnetGenerator
    assert resolve(NETWORKS, "pix2pix.NLayerDiscriminator", "network") is NLayerDiscriminator
    assert resolve(CONVERTERS, "pix2pix", "converter") is convert
    assert resolve(FAMILIES, "pix2pix", "family") is Pix2PixTask


def test_presets_name_the_input(reference):
    state = reference["g256"][0]
    meta = convert(state).meta
    assert meta["family"] == "pix2pix" and "pytorch-CycleGAN-and-pix2pix" in meta["source"]
    assert (meta["input"]["kind"], meta["input"]["label_space"]) == ("color", "color")  # Cityscapes colours
    assert convert(state, preset="carla_color").meta["input"]["label_space"] == "carla_color"
    assert convert(state, preset="facades_label2photo").meta["input"]["kind"] == "rgb"
    with pytest.raises(DrivesimError, match="unknown pix2pix preset 'nope'; valid: .*cityscapes"):
        convert(state, preset="nope")


def _one_line_error(state, match):
    with pytest.raises(DrivesimError, match=match) as e:
        convert(state)
    assert "\n" not in str(e.value)


def test_rejects_other_checkpoints(reference):
    _one_line_error(reference["d"][0], "PatchGAN discriminator .*latest_net_D.*give the run's latest_net_G.pth")
    spade = {"fc.weight": torch.zeros(1024, 35, 3, 3), "head_0.conv_0.weight": torch.zeros(1024, 1024, 3, 3),
             "conv_img.weight": torch.zeros(3, 64, 3, 3)}
    _one_line_error(spade, "not a pix2pix U-Net generator .*keys start fc.weight")
    resnet = {"model.1.weight": torch.zeros(64, 3, 7, 7), "model.2.weight": torch.zeros(64)}
    _one_line_error(resnet, "ResNet generator")
    _one_line_error({"step": torch.tensor(3)}, "not a pix2pix U-Net generator")
    truncated = {k: v for k, v in reference["g256"][0].items() if "model.model.1.model.1." not in k}
    _one_line_error(truncated, "1 missing: model.model.1.model.1.weight")
    no_norm = {k: v for k, v in reference["g256"][0].items() if not k.endswith(("running_mean", "running_var"))}
    _one_line_error(no_norm, "neither batch nor instance norm")


# ----- our own checkpoints -------------------------------------------------------------------------
def test_save_pretrained_round_trip(reference, tmp_path):
    state, x, y, _ = reference["g256"]
    converted = convert(state)
    save_pretrained(converted.net, tmp_path / "g", network=converted.network, meta=converted.meta)
    back = from_pretrained(tmp_path / "g")
    assert isinstance(back, UnetGenerator) and not back.training and back.config == converted.net.config
    with torch.no_grad():
        assert torch.equal(back(x), converted.net(x))
    assert read_card(tmp_path / "g").meta["input"]["label_space"] == "color"

    torch.manual_seed(0)
    d = NLayerDiscriminator(6, 8, 2, "instance").eval()
    save_pretrained(d, tmp_path / "d", network="pix2pix.NLayerDiscriminator")
    z = torch.randn(1, 6, 32, 48)
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path / "d")(z), d(z))


def test_unet_is_fully_convolutional():
    torch.manual_seed(0)
    g = UnetGenerator(3, 3, 8, ngf=2).eval()
    with torch.no_grad():
        y = g(torch.randn(1, 3, 256, 512))
    assert y.shape == (1, 3, 256, 512) and y.abs().max() <= 1
    with pytest.raises(DrivesimError, match=r"multiples of 256, got \(256, 320\)"):
        g(torch.randn(1, 3, 256, 320))
    assert NLayerDiscriminator(6, 4).eval()(torch.randn(1, 6, 256, 512)).shape == (1, 1, 30, 62)


def test_networks_check_their_options():
    with pytest.raises(ValueError, match="num_downs must be at least 5"):
        UnetGenerator(num_downs=4)
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        NLayerDiscriminator(norm="group")


# ----- training -----------------------------------------------------------------------------------
def test_config_defaults_are_the_reference_recipe():
    c = Pix2PixConfig()
    assert (c.lr, c.beta1, c.beta2, c.gan_mode, c.lambda_L1) == (2e-4, 0.5, 0.999, "vanilla", 100.0)
    assert (c.num_downs, c.ngf, c.ndf, c.n_layers_D, c.norm, c.dropout) == (8, 64, 64, 3, "batch", True)
    assert (c.epochs, c.lr_decay_start, c.lambda_vgg, c.label_space) == (200, 0.5, 10.0, "color")
    assert (c.size, c.crop) == ((286, 572), (256, 512))
    with pytest.raises(DrivesimError, match="unknown key 'lambda_l2'"):
        load_config(Pix2PixConfig, overrides={"lambda_l2": 1})
    with pytest.raises(DrivesimError, match="label_space"):
        load_config(Pix2PixConfig, overrides={"label_space": "train_ids"})


def _tiny(**kw) -> Pix2PixConfig:
    return Pix2PixConfig(num_downs=6, ngf=8, ndf=8, **{"lambda_vgg": 0.0, **kw})


def _batch(seed: int = 0) -> dict:
    """Two 64x64 colour-label maps and photos that are a fixed function of them."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    label = blocks.repeat_interleave(16, 2).repeat_interleave(16, 3)
    image = (0.8 * label.flip(1) + 0.1 * torch.linspace(-1, 1, 64)).clamp(-1, 1)
    return {"label": label, "image": image}


def _step(task: Pix2PixTask, optimizers: dict, batch: dict) -> dict:
    """What the trainer does in one step: each phase's zero_grad, loss, backward, update."""
    out = {}
    for phase in task.phases:
        optimizers[phase].zero_grad(set_to_none=True)
        losses = getattr(task, f"{phase}_step")(batch)
        losses["loss"].backward()
        optimizers[phase].step()
        out |= {f"{phase}/{k}": float(v.detach()) for k, v in losses.items()}
    return out


def test_steps_lower_l1():
    torch.manual_seed(0)
    task = Pix2PixTask(_tiny(lr=2e-3))
    optimizers = task.optimizers()
    batch = _batch()
    l1 = [_step(task, optimizers, batch)["g/l1"] for _ in range(20)]
    assert set(_step(task, optimizers, batch)) == {"d/loss", "d/real", "d/fake", "g/loss", "g/gan", "g/l1"}
    assert sum(l1[-3:]) / 3 < 0.5 * l1[0], l1


def test_step_order_matches_the_reference():
    """G runs once per step; D learns from the detached fake (no G gradients) on (label, image)
    pairs; G's phase leaves D without gradients; D's loss is the mean of its real and fake terms."""
    torch.manual_seed(0)
    task = Pix2PixTask(_tiny())
    batch = _batch()
    g_calls, d_inputs = [], []
    task.G.register_forward_hook(lambda m, i, o: g_calls.append(1))
    task.D.register_forward_hook(lambda m, i, o: d_inputs.append(i[0].detach()))

    losses = task.d_step(batch)
    losses["loss"].backward()
    assert torch.allclose(losses["loss"], (losses["real"] + losses["fake"]) / 2)
    assert all(p.grad is None for p in task.G.parameters())
    assert all(p.grad is not None for p in task.D.parameters())
    assert [t.shape[1] for t in d_inputs] == [6, 6]
    assert torch.equal(d_inputs[0][:, :3], batch["label"]) and torch.equal(d_inputs[0][:, 3:], batch["image"])
    assert torch.equal(d_inputs[1][:, :3], batch["label"])

    task.D.zero_grad(set_to_none=True)
    losses = task.g_step(batch)
    losses["loss"].backward()
    assert len(g_calls) == 1
    assert torch.equal(d_inputs[2][:, 3:], d_inputs[1][:, 3:])  # the same fake, now seen by G's loss
    assert all(p.grad is not None for p in task.G.parameters())
    assert all(p.grad is None for p in task.D.parameters()) and all(p.requires_grad for p in task.D.parameters())
    assert torch.allclose(losses["loss"], losses["gan"] + 100 * losses["l1"])


def test_vgg_term(vgg19_weights):
    torch.manual_seed(0)
    task = Pix2PixTask(_tiny(lambda_vgg=10.0))
    batch = _batch()
    task.d_step(batch)
    losses = task.g_step(batch)
    assert losses["vgg"] > 0
    assert torch.allclose(losses["loss"], losses["gan"] + 100 * losses["l1"] + 10 * losses["vgg"])
    assert not any(p.requires_grad for p in task.vgg.parameters())
    assert set(task.networks()) == {"G", "D"}


def test_vgg_offline_names_the_way_out(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache, and no way to download
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(DrivesimError, match="--set lambda_vgg=0"):
        Pix2PixTask(_tiny(lambda_vgg=1.0))
    assert Pix2PixTask(_tiny()).vgg is None


def test_export_and_generate(tmp_path):
    torch.manual_seed(0)
    task = Pix2PixTask(_tiny(label_space="carla_color")).eval()
    name, net, meta = task.export()
    assert name == "pix2pix.UnetGenerator" and net is task.G
    assert meta["family"] == "pix2pix" and meta["input"]["kind"] == "color"
    assert meta["input"]["label_space"] == "carla_color"
    save_pretrained(net, tmp_path, network=name, meta=meta)
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path)(batch["label"]), task.generate(batch))


@pytest.mark.slow
def test_trainer_runs_pix2pix_on_a_recording(tmp_path_factory, tmp_path):
    """Colour labels from a recording through the shared trainer into a loadable model directory."""
    session = recordings.record(tmp_path_factory, "default", 12, seed=1)
    config = load_config(Pix2PixConfig, None, dict(steps=2, num_downs=6, ngf=8, ndf=8, lambda_vgg=0, batch_size=2,
                                                   size=(64, 128), crop=None, val_fraction=0.1))
    summary = Trainer(Pix2PixTask, config, tmp_path / "run", Sources((session,))).fit()
    assert summary["steps"] == 2 and summary["eval"]["l1"] > 0
    g = from_pretrained(tmp_path / "run")
    assert isinstance(g, UnetGenerator) and g.config["num_downs"] == 6
    spec = read_card(tmp_path / "run").meta["input"]
    assert (spec["kind"], spec["label_space"]) == ("color", "color")
