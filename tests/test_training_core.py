"""Training core: configs, losses, input encoding, model cards and reference checkpoints."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from toy_task import ToyConfig, ToyGenerator

from drivesim_carla.errors import DrivesimError
from drivesim_carla.models.inputs import InputSpec, encode_input, instance_edges
from drivesim_carla.models.pretrained import read_card
from drivesim_carla.training import from_pretrained, save_pretrained
from drivesim_carla.training.core.checkpoint import load_reference_checkpoint
from drivesim_carla.training.core.config import load_config, parse_overrides
from drivesim_carla.training.core.losses import GANLoss, VGGLoss, feature_matching_loss, kld_loss


# ----- configs ----------------------------------------------------------------------------------
def test_config_from_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 10\nlr: 0.01\nsize: [64, 128]\n")
    cfg = load_config(ToyConfig, f, parse_overrides(["steps=20", "flip=false"]))
    assert (cfg.steps, cfg.lr, cfg.size, cfg.flip) == (20, 0.01, (64, 128), False)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(DrivesimError, match="unknown key 'stpes' for ToyConfig; valid keys: steps"):
        load_config(ToyConfig, None, {"stpes": 3})
    with pytest.raises(DrivesimError, match="invalid value for 'batch_size'"):
        load_config(ToyConfig, None, {"batch_size": 0})
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1\n")
    with pytest.raises(DrivesimError, match="invalid YAML at line"):
        load_config(ToyConfig, bad)
    with pytest.raises(DrivesimError, match="cannot read it"):
        load_config(ToyConfig, tmp_path / "missing.yaml")
    with pytest.raises(DrivesimError, match="expected key=value"):
        parse_overrides(["steps"])


# ----- losses -------------------------------------------------------------------------------------
def test_gan_losses_against_their_definitions():
    p = torch.tensor([[-2.0, -0.5], [0.5, 3.0]])
    hinge = GANLoss("hinge")
    assert hinge(p, True).item() == pytest.approx((3.0 + 1.5 + 0.5 + 0.0) / 4)
    assert hinge(p, False).item() == pytest.approx((0.0 + 0.5 + 1.5 + 4.0) / 4)
    assert hinge(p, True, for_discriminator=False).item() == pytest.approx(-1.0 / 4)
    assert GANLoss("ls")(p, True).item() == pytest.approx(((p - 1) ** 2).mean().item())
    assert GANLoss("vanilla")(p, False).item() == pytest.approx(F.softplus(p).mean().item())
    # multiscale: [features..., prediction] per scale, averaged over scales
    multi = [[torch.ones(2), p], [torch.zeros(3), p * 2]]
    assert hinge(multi, True).item() == pytest.approx((hinge(p, True) + hinge(p * 2, True)).item() / 2)
    with pytest.raises(DrivesimError, match="unknown GAN loss 'lsgan'; valid: hinge, ls, vanilla, wgan"):
        GANLoss("lsgan")


def test_feature_matching_skips_predictions_and_averages_scales():
    fake = [[torch.zeros(4), torch.ones(2), torch.full((1,), 9.0)], [torch.zeros(2), torch.full((1,), 5.0)]]
    real = [[torch.ones(4), torch.ones(2), torch.zeros(1)], [torch.full((2,), 3.0), torch.zeros(1)]]
    assert feature_matching_loss(fake, real).item() == pytest.approx((1.0 + 0.0 + 3.0) / 2)


def test_kld_is_zero_for_the_prior():
    assert kld_loss(torch.zeros(2, 8), torch.zeros(2, 8)).item() == 0.0
    assert kld_loss(torch.ones(2, 8), torch.zeros(2, 8)).item() == pytest.approx(8.0)


def test_vgg_loss_through_torchvisions_loader(vgg19_weights):
    torch.manual_seed(0)
    loss = VGGLoss()
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    assert loss(x, y).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    assert loss.train().features.training is False


def test_vgg_loss_offline_names_the_file_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DrivesimError, match=r"vgg19-dcbb9e9d\.pth.*--set lambda_vgg=0"):
        VGGLoss()


# ----- inputs -------------------------------------------------------------------------------------
def test_onehot_encoding_with_dontcare_and_instance_edges():
    spec = InputSpec(num_classes=4, dontcare=True, instance_edges=True)
    label = torch.tensor([[[0, 1, 255], [3, 3, 2]]])
    inst = torch.tensor([[[5, 5, 7], [5, 5, 7]]])
    x = encode_input(label, spec, inst)
    assert x.shape == (1, spec.channels, 2, 3) == (1, 6, 2, 3)
    assert torch.equal(x[0, :4].argmax(0)[1], torch.tensor([3, 3, 2]))
    assert torch.equal(x[0, 4], torch.tensor([[0.0, 0, 1], [0, 0, 0]]))  # the 255 pixel
    assert x[0, :4, 0, 2].sum() == 0
    assert torch.equal(x[0, 5], torch.tensor([[0.0, 1, 1], [0, 1, 1]]))
    with pytest.raises(DrivesimError, match="takes instance edges"):
        encode_input(label, spec)


def test_instance_edges_mark_both_sides_of_a_boundary():
    inst = torch.tensor([[[1, 1, 1, 1], [1, 2, 2, 1], [1, 1, 1, 1]]])
    e = instance_edges(inst)[0, 0]
    assert torch.equal(e, torch.tensor([[0.0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0]]))


def test_input_spec_validation():
    with pytest.raises(DrivesimError, match="colour input needs label space"):
        InputSpec(kind="color", label_space="train_ids")
    assert InputSpec.from_dict(InputSpec(kind="rgb", label_space="rgb").to_dict()).channels == 3


# ----- model cards and reference checkpoints ---------------------------------------------------------
def test_save_and_load_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    net = ToyGenerator(20, 4).eval()
    save_pretrained(net, tmp_path / "m", network="toy.Generator", meta={"input": {"kind": "onehot"}})
    back = from_pretrained(tmp_path / "m")
    x = torch.randn(1, 20, 8, 8)
    assert torch.equal(back(x), net(x)) and not back.training
    card = read_card(tmp_path / "m")
    assert (card.network, card.config, card.meta) == ("toy.Generator", net.config, {"input": {"kind": "onehot"}})


def test_model_directory_errors(tmp_path):
    with pytest.raises(DrivesimError, match="not found; give a training run directory"):
        from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DrivesimError, match="no config.json"):
        from_pretrained(tmp_path / "empty")
    save_pretrained(ToyGenerator(20, 4), tmp_path / "m", network="toy.Generator")
    card = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**card, "network": "evil.Module"}))
    with pytest.raises(DrivesimError, match="unknown network 'evil.Module'"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**card, "config": {**card["config"], "width": 8}}))
    with pytest.raises(DrivesimError, match=r"weights do not fit ToyGenerator \(.*wrong shape"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DrivesimError, match="not a readable safetensors file"):
        from_pretrained(tmp_path / "m")


def test_reference_checkpoints_load_with_weights_only(tmp_path):
    net = ToyGenerator(20, 4)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "a.pth")
    state = load_reference_checkpoint(tmp_path / "a.pth")
    assert state.keys() == net.state_dict().keys()

    class Payload:  # anything that is not plain data must not be unpickled
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"w": torch.zeros(1), "x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(DrivesimError, match="not a loadable PyTorch state dict with weights_only=True"):
        load_reference_checkpoint(tmp_path / "evil.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(DrivesimError, match="not a loadable"):
        load_reference_checkpoint(tmp_path / "text.pth")
    with pytest.raises(DrivesimError, match="checkpoint not found"):
        load_reference_checkpoint(tmp_path / "missing.pth")
