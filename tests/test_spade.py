"""The SPADE family: reference-equal conversion, folded spectral norm, the generators, the task."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.nn.utils import parametrize

from drivesim_carla.errors import DrivesimError
from drivesim_carla.models.inputs import InputSpec, encode_input
from drivesim_carla.models.pretrained import from_pretrained, read_card, save_pretrained
from drivesim_carla.models.registry import NETWORKS, resolve
from drivesim_carla.training.core.config import load_config
from drivesim_carla.training.core.losses import kld_loss
from drivesim_carla.training.core.registry import CONVERTERS, FAMILIES
from drivesim_carla.training.spade.convert import convert
from drivesim_carla.training.spade.discriminators import MultiscaleDiscriminator
from drivesim_carla.training.spade.generators import ASAPNetGenerator, Pix2PixHDGenerator, SPADEGenerator
from drivesim_carla.training.spade.normalization import fold_spectral_norm
from drivesim_carla.training.spade.task import SPADEConfig, SPADETask

FIXTURE = "tests/fixtures/spade_reference.safetensors"
CITYSCAPES = InputSpec(kind="onehot", label_space="cityscapes_ids", num_classes=35, instance_edges=True)


@pytest.fixture(scope="module")
def golden():
    tensors = load_file(FIXTURE)
    with safe_open(FIXTURE, "pt") as f:
        options = json.loads(f.metadata()["options"])
    x = encode_input(tensors["input.label"].long(), CITYSCAPES, tensors["input.instance"].long())
    return tensors, options, x


def reference_state(tensors: dict, net: str) -> dict:
    """The reference's state dict of `net` ("G", "D", "E"), int8-stored weights expanded."""
    prefix = f"{net}.state."
    state = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            scale = tensors.get(f"{net}.scale.{name}")
            state[name] = value.float() * scale if scale is not None else value
    return state


def spectral_modules(net) -> int:
    return sum(parametrize.is_parametrized(m, "weight") for m in net.modules())


# ----- conversion against NVlabs/SPADE ----------------------------------------------------------
@pytest.mark.parametrize("fold", [True, False])
def test_generator_conversion_matches_reference(golden, fold):
    tensors, options, x = golden
    name, net, meta = convert(reference_state(tensors, "G"), fold=fold)
    assert name == "spade.SPADEGenerator"
    assert net.config["ngf"] == options["ngf"] and net.config["num_upsampling_layers"] == "more"
    assert net.config["spectral"] is (not fold) and (spectral_modules(net) > 0) is (not fold)
    assert meta["preset"] == "cityscapes" and meta["size"] == [256, 512]
    assert InputSpec.from_dict(meta["input"]) == CITYSCAPES
    with torch.no_grad():
        out = net.eval()(x)
    ref = tensors["G.output"]
    assert out.shape == ref.shape and ref.std() > 0.05
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()


def test_discriminator_conversion_matches_reference(golden):
    tensors, options, x = golden
    name, net, _ = convert(reference_state(tensors, "D"))
    assert name == "spade.MultiscaleDiscriminator"
    assert (net.config["num_D"], net.config["n_layers"], net.config["spectral"]) == (2, 4, True)
    with torch.no_grad():
        out = net.eval()(torch.cat([x, tensors["G.output"]], 1))
    assert len(out) == options["num_D"]
    for i, scale in enumerate(out):
        assert len(scale) == options["n_layers_D"] + 1
        for j, feature in enumerate(scale):
            assert torch.allclose(feature, tensors[f"D.output.{i}.{j}"], atol=1e-4), (i, j)


def test_encoder_conversion_matches_reference(golden):
    tensors, _, _ = golden
    name, net, _ = convert(reference_state(tensors, "E"))
    assert name == "spade.ConvEncoder"
    with torch.no_grad():
        mu, logvar = net.eval()(tensors["G.output"])
    assert torch.allclose(mu, tensors["E.mu"], atol=1e-4)
    assert torch.allclose(logvar, tensors["E.logvar"], atol=1e-4)


def test_converted_generator_round_trips(golden, tmp_path):
    tensors, _, x = golden
    name, net, meta = convert(reference_state(tensors, "G"))
    save_pretrained(net, tmp_path, network=name, meta=meta)
    back = from_pretrained(tmp_path)
    assert type(back) is SPADEGenerator and spectral_modules(back) == 0
    assert read_card(tmp_path).meta["source"] == "converted from NVlabs/SPADE"
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_converter_rejects_other_checkpoints(golden):
    tensors, _, _ = golden
    with pytest.raises(DrivesimError, match="not a NVlabs/SPADE checkpoint"):
        convert({"model.1.weight": torch.zeros(64, 3, 4, 4), "model.1.bias": torch.zeros(64)})
    state = reference_state(tensors, "G")
    with pytest.raises(DrivesimError, match="ade20k preset takes 151 input channels"):
        convert(state, preset="ade20k")
    with pytest.raises(DrivesimError, match="unknown SPADE preset"):
        convert(state, preset="kitti")
    del state["up_2.conv_1.weight_orig"]
    with pytest.raises(DrivesimError, match="weights do not fit SPADEGenerator.*1 missing"):
        convert(state)
    with pytest.raises(DrivesimError, match="20 input channels matches no SPADE preset"):
        convert({k: v[:, :20] if k.endswith("mlp_shared.0.weight") else v for k, v in state.items()})


def as_reference(state: dict) -> dict:
    """Our spectral-norm names -> torch.nn.utils.spectral_norm's (what reference checkpoints hold)."""
    names = {".parametrizations.weight.original": ".weight_orig", ".parametrizations.weight.0._u": ".weight_u",
             ".parametrizations.weight.0._v": ".weight_v"}
    out = {}
    for key, value in state.items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        out[key] = value
    return out


@pytest.mark.parametrize("make", [
    lambda: Pix2PixHDGenerator(input_nc=36, ngf=4, n_downsample=2, n_blocks=2, spectral=True),
    lambda: Pix2PixHDGenerator(input_nc=151, ngf=4, n_downsample=3, n_blocks=1, kernel_size=5, norm="batch"),
    lambda: ASAPNetGenerator(input_nc=36, lr_width=8, lr_max_width=16, lr_depth=2),
    lambda: ASAPNetGenerator(input_nc=36, lr_width=4, lr_max_width=8, lr_depth=1, hr_width=16, hr_depth=3,
                             learned_ds_factor=8, pad="reflect", spectral=True),
])
def test_semdisc_generators_convert_back_to_themselves(make):
    """A SemDisc pix2pixHD / ASAPNet generator checkpoint: the options are read back from its keys."""
    torch.manual_seed(0)
    net = make()
    net = _trained_a_little(net, torch.rand(1, net.config["input_nc"], 32, 64))
    converted = convert(as_reference(net.state_dict()))
    assert converted.network == {"Pix2PixHDGenerator": "spade.Pix2PixHDGenerator",
                                 "ASAPNetGenerator": "spade.ASAPNetGenerator"}[type(net).__name__]
    assert converted.net.config == {**net.config, "spectral": False}
    assert converted.meta["preset"] == ("ade20k" if net.config["input_nc"] == 151 else "cityscapes")
    x = torch.rand(1, net.config["input_nc"], 32, 64)
    with torch.no_grad():
        assert torch.allclose(converted.net(x), net(x), atol=1e-5)


# ----- spectral norm folding, sizes -----------------------------------------------------------------
def _trained_a_little(net, x):
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(x)  # power iterations move u, v; batch norms learn running statistics
    return net.eval()


@pytest.mark.parametrize("make", [
    lambda: (SPADEGenerator(semantic_nc=5, ngf=2, num_upsampling_layers="normal"), torch.rand(2, 5, 32, 64)),
    lambda: (Pix2PixHDGenerator(input_nc=5, ngf=4, n_downsample=2, n_blocks=1, spectral=True, norm="batch"),
             torch.rand(2, 5, 16, 32)),
    lambda: (MultiscaleDiscriminator(input_nc=4, ndf=4), torch.rand(2, 4, 32, 32)),
])
def test_folded_spectral_norm_gives_the_same_output(make):
    torch.manual_seed(0)
    net, x = make()
    net = _trained_a_little(net, x)
    folded = fold_spectral_norm(net)
    assert spectral_modules(net) > 0 and spectral_modules(folded) == 0
    assert folded.config["spectral"] is False and net.config["spectral"] is True
    assert not folded.training
    rebuilt = type(net)(**folded.config).eval()
    rebuilt.load_state_dict(folded.state_dict())
    with torch.no_grad():
        ref, out = net(x), rebuilt(x)
    for a, b in zip(ref if isinstance(ref, list) else [ref], out if isinstance(out, list) else [out]):
        a, b = (a[-1], b[-1]) if isinstance(a, list) else (a, b)
        assert torch.allclose(a, b, atol=1e-5)


def test_spade_generator_runs_at_any_size_divisible_by_its_upsampling():
    torch.manual_seed(0)
    net = SPADEGenerator(semantic_nc=4, ngf=2).eval()  # "more": 6 upsamplings, sizes divisible by 64
    with torch.no_grad():
        for h, w in ((256, 512), (64, 320)):
            out = net(torch.rand(1, 4, h, w))
            assert out.shape == (1, 3, h, w) and out.abs().max() <= 1
        with pytest.raises(DrivesimError, match="divisible by 64"):
            net(torch.rand(1, 4, 100, 200))


def test_other_generators_run():
    torch.manual_seed(0)
    x = torch.rand(1, 36, 64, 128)
    hd = Pix2PixHDGenerator(input_nc=36, ngf=4, n_blocks=2).eval()
    asap = ASAPNetGenerator(input_nc=36, lr_width=8, lr_max_width=16, lr_depth=2, hr_width=8).eval()
    asap_tent = ASAPNetGenerator(input_nc=36, lr_width=8, lr_max_width=16, lr_depth=1, hr_width=8,
                                 learned_ds_factor=4).eval()
    with torch.no_grad():
        for net in (hd, asap, asap_tent):
            assert net(x).shape == (1, 3, 64, 128)
        # the instance channel reaches only ASAPNet's low-resolution stream; per-tile MLPs: labels + codes
        assert asap.highres_stream.channels[0] == 35 + 16
        with pytest.raises(DrivesimError, match="divisible by 16"):
            asap(torch.rand(1, 36, 40, 64))


# ----- the training task ---------------------------------------------------------------------------
def tiny_config(**overrides) -> SPADEConfig:
    base = dict(ngf=2, ndf=4, n_layers_D=2, size=(32, 64), num_upsampling_layers="normal", lambda_vgg=0.0,
                asap_lr_width=4, asap_lr_max_width=8, asap_lr_depth=1, asap_hr_width=4, resnet_n_blocks=1,
                resnet_n_downsample=2)
    return load_config(SPADEConfig, None, {**base, **overrides})


def tiny_batch(b: int = 2, h: int = 32, w: int = 64) -> dict:
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 34, (b, h // 8, w // 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    return {"label": label, "instance": label * 1000, "image": torch.rand(b, 3, h, w, generator=g) * 2 - 1}


def _snapshot(net):
    return [p.detach().clone() for p in net.parameters()]


def _changed(net, before) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("netG", ["spade", "pix2pixhd", "asapnet"])
def test_d_step_then_g_step_update_their_networks(netG, vgg19_weights):
    torch.manual_seed(0)
    task = SPADETask(tiny_config(netG=netG, lambda_vgg=10.0 if netG == "spade" else 0.0))
    opts = task.optimizers()
    assert opts["g"].param_groups[0]["lr"] == 1e-4 and opts["d"].param_groups[0]["lr"] == 4e-4  # TTUR
    assert opts["d"].defaults["betas"] == (0.0, 0.9)
    batch = tiny_batch()
    g0, d0 = _snapshot(task.G), _snapshot(task.D)
    losses = task.d_step(batch)
    assert set(losses) == {"loss", "fake", "real"}
    assert torch.isclose(losses["loss"], losses["fake"] + losses["real"])
    losses["loss"].backward()
    assert all(p.grad is None for p in task.G.parameters())  # the fake came from G under no_grad
    opts["d"].step()
    assert _changed(task.D, d0) and not _changed(task.G, g0)

    opts["g"].zero_grad(set_to_none=True)
    opts["d"].zero_grad(set_to_none=True)
    d1 = _snapshot(task.D)
    losses = task.g_step(batch)
    expected = {"loss", "gan", "feat"} | ({"vgg"} if netG == "spade" else set())
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    assert losses["feat"] > 0
    losses["loss"].backward()
    assert all(p.grad is None for p in task.D.parameters())  # D frozen in G's phase
    assert all(p.requires_grad for p in task.D.parameters())  # ... and trainable again after it
    opts["g"].step()
    assert _changed(task.G, g0) and not _changed(task.D, d1)


def test_vae_encoder_path():
    torch.manual_seed(0)
    task = SPADETask(tiny_config(use_vae=True, z_dim=8))
    assert set(task.networks()) == {"G", "D", "E"} and task.G.config["latent_size"] == [1, 2]  # 32x64 / 2**5
    batch = tiny_batch()
    mu, logvar = task.E(batch["image"])
    assert mu.shape == logvar.shape == (2, 8)
    assert kld_loss(torch.zeros(2, 8), torch.zeros(2, 8)) == 0
    assert torch.isclose(kld_loss(mu, logvar), -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum())
    losses = task.g_step(batch)
    assert losses["kld"] > 0
    g_params = {id(p) for g in task.optimizers()["g"].param_groups for p in g["params"]}
    assert all(id(p) in g_params for p in task.E.parameters())  # E learns with G
    task.eval()
    assert task.generate(batch).shape == (2, 3, 32, 64)
    with pytest.raises(DrivesimError, match="makes 32x64 images"):
        task.G(torch.rand(1, 36, 64, 64))


def test_export_is_folded_and_rebuilds(tmp_path):
    torch.manual_seed(0)
    task = SPADETask(tiny_config())
    batch = tiny_batch()
    task.d_step(batch)  # one training forward moves the spectral vectors and batch statistics
    task.eval()
    name, net, meta = task.export()
    assert name == "spade.SPADEGenerator" and spectral_modules(net) == 0 and spectral_modules(task.G) > 0
    assert meta["size"] == [32, 64] and InputSpec.from_dict(meta["input"]) == SPADETask.input_spec(task.config)
    save_pretrained(net, tmp_path, network=name, meta=meta)
    back = from_pretrained(tmp_path)
    x = task.encode(batch)
    with torch.no_grad():
        assert torch.allclose(back(x), task.G(x), atol=1e-5)


def test_config_is_checked_on_load():
    cfg = load_config(SPADEConfig)
    recipe = (cfg.lr, cfg.beta1, cfg.beta2, cfg.ttur, cfg.gan_mode, cfg.lambda_feat, cfg.lambda_vgg, cfg.lambda_kld)
    assert recipe == (2e-4, 0, 0.9, True, "hinge", 10, 10, 0.05)
    assert (cfg.num_D, cfg.n_layers_D, cfg.ngf, cfg.ndf, cfg.num_upsampling_layers) == (2, 4, 64, 64, "more")
    assert SPADETask.input_spec(cfg).channels == 36 and cfg.generator_norm() == ("batch", True)
    with pytest.raises(DrivesimError, match="use_vae needs netG=spade"):
        load_config(SPADEConfig, None, {"use_vae": True, "netG": "pix2pixhd"})
    with pytest.raises(DrivesimError, match="divisible by 64"):
        load_config(SPADEConfig, None, {"size": [100, 200]})
    with pytest.raises(DrivesimError, match="unknown key 'ngf_G'"):
        load_config(SPADEConfig, None, {"ngf_G": 3})


def test_registries_resolve():
    for name in ("SPADEGenerator", "Pix2PixHDGenerator", "ASAPNetGenerator", "MultiscaleDiscriminator", "ConvEncoder"):
        assert resolve(NETWORKS, f"spade.{name}", "network").__name__ == name
    assert resolve(FAMILIES, "spade", "family") is SPADETask
    assert resolve(CONVERTERS, "spade", "converter") is convert
