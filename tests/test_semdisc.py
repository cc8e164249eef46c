"""SemDisc: the discriminator against the reference's outputs, its losses against the reference's loss
terms, checkpoints, the converter's errors, and the two-stage training task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from drivesim_carla.errors import DrivesimError
from drivesim_carla.models.inputs import InputSpec, encode_input
from drivesim_carla.models.pretrained import from_pretrained, read_card, save_pretrained
from drivesim_carla.models.registry import NETWORKS, resolve
from drivesim_carla.training.core.config import load_config
from drivesim_carla.training.core.registry import CONVERTERS, FAMILIES
from drivesim_carla.training.semdisc.convert import convert
from drivesim_carla.training.semdisc.discriminator import SemDiscDiscriminator
from drivesim_carla.training.semdisc.losses import (
    SemDiscLoss,
    class_weight_maps,
    segmentation_targets,
    train_id_lut,
)
from drivesim_carla.training.semdisc.task import SemDiscConfig, SemDiscTask

FIXTURE = Path(__file__).parent / "fixtures" / "semdisc_reference.safetensors"


@pytest.fixture(scope="module")
def golden():
    return load_file(str(FIXTURE))


@pytest.fixture(scope="module")
def reference_state(golden):
    return {k.removeprefix("state."): v for k, v in golden.items() if k.startswith("state.")}


@pytest.fixture(scope="module")
def converted(reference_state):
    return convert(dict(reference_state))


# ----- the network against the reference ---------------------------------------------------------
def test_converter_infers_the_reference_options(converted):
    with safe_open(str(FIXTURE), "pt") as f:
        meta = f.metadata()
    assert converted.network == "semdisc.SemDiscDiscriminator"
    assert meta["norm_D"] == "spectralinstance"
    assert converted.net.config == dict(num_classes=int(meta["label_nc"]), seg_classes=19, input_nc=3,
                                        ndf=int(meta["ndf"]), n_layers=int(meta["n_layers_D"]),
                                        num_D=int(meta["num_D"]), norm="instance", spectral=True)
    assert converted.meta["family"] == "semdisc"
    assert converted.meta["source"] == "converted from vita-epfl/SemDisc"
    assert converted.meta["label_input"]["label_space"] == "cityscapes_ids"
    assert not converted.net.training


def test_every_head_matches_the_reference(converted, golden):
    with torch.no_grad():
        fake, real = converted.net(golden["input.image"]).split(1)
    for name, out in (("fake", fake), ("real", real)):
        for s in range(2):
            ref_adv = golden[f"output.{name}.{s}.4"]  # the reference's fine + coarse channels
            assert out.adversarial[s].shape == ref_adv.shape == (1, 36, *[(11, 11), (7, 7)][s])
            torch.testing.assert_close(out.fine[s], ref_adv[:, :35], atol=1e-4, rtol=0)
            torch.testing.assert_close(out.coarse[s], ref_adv[:, 35:], atol=1e-4, rtol=0)
            torch.testing.assert_close(out.segmentation[s], golden[f"output.{name}_seg.{s}"], atol=1e-4, rtol=0)
            torch.testing.assert_close(out.reconstruction[s], golden[f"output.{name}_rec.{s}"], atol=1e-4, rtol=0)
            for j in range(4):  # the shared trunk's features (feature matching)
                torch.testing.assert_close(out.features[s][j], golden[f"output.{name}.{s}.{j}"], atol=1e-4, rtol=0)


def test_adversarial_only_computes_the_same_fine_and_coarse_maps(converted, golden):
    with torch.no_grad():
        full = converted.net(golden["input.image"])
        adv = converted.net(golden["input.image"], adversarial_only=True)
    assert adv.segmentation is None and adv.reconstruction is None
    for a, b in zip(adv.adversarial, full.adversarial):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ----- the losses against the reference ------------------------------------------------------------
def test_loss_terms_match_the_reference(converted, golden):
    label = golden["loss.label"].long()
    real = golden["loss.real"].float().div(255).sub(0.5).div(0.5)
    fake = -real.flip(-1)
    onehot = encode_input(label, InputSpec(num_classes=35))
    target = segmentation_targets(label, train_id_lut("cityscapes_ids"))
    unit = SemDiscLoss(lambda_gan=1, lambda_seg=1, lambda_rec=1, lambda_feat=1)
    with torch.no_grad():
        out_fake, out_real = converted.net(torch.cat([fake, real])).split(len(fake))
        weights = unit.weights(onehot, out_fake)
        d = unit.discriminator(out_fake, out_real, weights, target, real)
        g = unit.generator(out_fake, out_real, weights, target, real, guided=True)
        g1 = unit.generator(out_fake, out_real, weights, target, real, guided=False)
    ours = {"D_fake": d["fake"], "D_real": d["real"], "D_seg": d["seg"], "D_rec": d["rec"], "G_GAN": g["gan"],
            "G_feat": g["feat"], "G_seg": g["seg"], "G_rec": g["rec"]}
    for name, value in ours.items():
        torch.testing.assert_close(value, golden[f"loss.{name}"], rtol=1e-4, atol=1e-6, msg=name)
    assert set(g1) == {"gan", "feat"} and float(golden["loss.G_seg_stage1"]) == 0.0


def test_segmentation_targets_are_the_reference_train_ids(golden):
    ids = torch.arange(34)
    assert torch.equal(segmentation_targets(ids, train_id_lut("cityscapes_ids")), golden["loss.train_id_of"])
    assert segmentation_targets(torch.tensor([-1, 300, 33]), train_id_lut("cityscapes_ids")).tolist() == [255, 255, 18]
    carla = segmentation_targets(torch.tensor([1, 24, 14, 0]), train_id_lut("carla"))  # road, road line, car
    assert carla.tolist() == [0, 0, 13, 255]
    with pytest.raises(DrivesimError, match="label map"):
        train_id_lut("color")


def test_class_weights_balance_present_classes():
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[:, :2] = 1  # class 1 covers a quarter, class 0 the rest, class 2 is absent
    w = class_weight_maps(encode_input(label, InputSpec(num_classes=3)), (8, 8), fine_grained_scale=0.3)
    assert w.shape == (1, 4, 8, 8)
    # each present class sums to scale / classes over the map, whatever its area; the coarse channel is ones
    torch.testing.assert_close(w[0, :3].mean((1, 2)), torch.tensor([0.1, 0.1, 0.0]), atol=1e-6, rtol=0)
    assert torch.equal(w[0, 3], torch.ones(8, 8))
    raw = class_weight_maps(encode_input(label, InputSpec(num_classes=3)), (4, 4), normalize=False)
    assert raw[0, 1].sum() == 4  # nearest resize of the one-hot


# ----- checkpoints and the converter -----------------------------------------------------------
def test_save_and_load_round_trip(converted, golden, tmp_path):
    assert resolve(NETWORKS, "semdisc.SemDiscDiscriminator", "network") is SemDiscDiscriminator
    assert resolve(CONVERTERS, "semdisc", "converter") is convert
    save_pretrained(converted.net, tmp_path, network=converted.network, meta=converted.meta)
    back = from_pretrained(tmp_path)
    assert back.config == converted.net.config
    assert read_card(tmp_path).meta["heads"] == {"fine": 35, "coarse": 1, "segmentation": 19, "reconstruction": 3}
    with torch.no_grad():
        a, b = converted.net(golden["input.image"]), back(golden["input.image"])
    for x, y in zip(a.segmentation + a.adversarial, b.segmentation + b.adversarial):
        assert torch.equal(x, y)


def test_rebuilds_from_its_config():
    net = SemDiscDiscriminator(num_classes=5, ndf=4, n_layers=3, num_D=3, norm="batch", spectral=True)
    again = SemDiscDiscriminator(**net.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    out = net(torch.zeros(2, 3, 32, 32))
    assert [a.shape[1] for a in out.adversarial] == [6, 6, 6] and len(out.features[0]) == 4


def test_converter_infers_other_widths_and_norms():
    for norm in ("instance", "instanceaffine", "batch", "none"):
        for spectral in (True, False):
            net = SemDiscDiscriminator(num_classes=35, ndf=4, n_layers=3, num_D=1, norm=norm, spectral=spectral)
            assert convert(_reference_names(net.state_dict())).net.config == net.config


def _reference_names(state):
    """Our state dict under the reference's `torch.nn.utils.spectral_norm` names."""
    names = {"parametrizations.weight.original": "weight_orig", "parametrizations.weight.0._u": "weight_u",
             "parametrizations.weight.0._v": "weight_v"}
    out = {}
    for k, v in state.items():
        for ours, theirs in names.items():
            k = k.replace(ours, theirs)
        out[k] = v
    return out


def _one_line_error(state, match, **kw):
    with pytest.raises(DrivesimError, match=match) as err:
        convert(state, **kw)
    assert "\n" not in str(err.value)


def test_converter_rejects_other_checkpoints(reference_state):
    spade_d = {k: v for k, v in reference_state.items()}
    spade_d["discriminator_0.model0.0.weight"] = torch.zeros(8, 3 + 35 + 1, 4, 4)  # label + image input
    _one_line_error(spade_d, "SPADE")
    truncated = {k: v for k, v in reference_state.items() if "model2" not in k}
    _one_line_error(truncated, "missing|another model")
    too_few = dict(reference_state)
    too_few["discriminator_0.model4.0.weight"] = torch.zeros(1, 64, 4, 4)  # SPADE's 1-channel head
    _one_line_error(too_few, "c2f_sem_rec")
    _one_line_error(dict(reference_state), "preset", preset="ade20k")
    other = _reference_names(SemDiscDiscriminator(num_classes=20, ndf=4, n_layers=2, num_D=1).state_dict())
    _one_line_error(other, "preset", preset="cityscapes")


def test_converter_hands_a_generator_to_spade():
    from drivesim_carla.training.spade.generators import SPADEGenerator

    torch.manual_seed(0)
    ours = SPADEGenerator(semantic_nc=36, ngf=4, num_upsampling_layers="more").eval()
    converted = convert(_reference_names(ours.state_dict()))  # what SemDisc's latest_net_G.pth holds
    assert converted.network == "spade.SPADEGenerator"
    assert converted.meta["family"] == "semdisc" and converted.meta["source"] == "converted from vita-epfl/SemDisc"
    assert converted.meta["input"]["num_classes"] == 35 and converted.meta["input"]["instance_edges"]
    x = torch.rand(1, 36, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted.net(x), ours(x), atol=1e-5, rtol=0)
    _one_line_error({"fc.weight": torch.zeros(1024, 36, 3, 3)}, "checkpoint")


# ----- the training task -----------------------------------------------------------------------------
def _tiny(**changes) -> SemDiscConfig:
    options = dict(netG="pix2pixhd", ngf=4, resnet_n_downsample=2, resnet_n_blocks=1, ndf=4, size=(64, 64),
                   lambda_vgg=0.0, label_space="train_ids", label_nc=19, contain_dontcare_label=True,
                   instance_edges=False, steps=4)
    return SemDiscConfig(**{**options, **changes})


def _batch(b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 19, (b, 8, 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    label[:, :4] = 255  # don't-care rows: a fine-grained channel of their own, ignored by the segmentation loss
    return {"label": label, "image": torch.rand(b, 3, 64, 64, generator=g) * 2 - 1}


def test_config_defaults_are_the_readme_recipe():
    c = SemDiscConfig()
    assert (c.lambda_gan, c.lambda_seg, c.lambda_rec, c.lambda_feat, c.lambda_vgg) == (35, 1, 1, 10, 10)
    assert (c.normalize_smaps, c.fine_grained_scale, c.gan_mode, c.netG) == (True, 0.05, "hinge", "spade")
    assert (c.size, c.epochs, c.lr_decay_start, c.finetune_start) == ((256, 256), 200, 0.5, 0.5)
    assert (c.lr, c.beta1, c.beta2, c.ttur, c.ndf, c.num_D, c.n_layers_D) == (2e-4, 0.0, 0.9, True, 64, 2, 4)
    assert SemDiscTask.family == "semdisc" and resolve(FAMILIES, "semdisc", "family") is SemDiscTask
    with pytest.raises(DrivesimError, match="gan_mode"):
        load_config(SemDiscConfig, overrides={"gan_mode": "vanilla"})


def test_discriminator_follows_the_label_space():
    task = SemDiscTask(_tiny(netG="spade", num_upsampling_layers="normal"))
    assert isinstance(task.D, SemDiscDiscriminator)
    assert task.D.config == dict(num_classes=20, seg_classes=19, input_nc=3, ndf=4, n_layers=4, num_D=2,
                                 norm="instance", spectral=True)
    name, net, meta = task.export()
    assert name == "spade.SPADEGenerator" and meta["family"] == "semdisc" and meta["input"]["num_classes"] == 19


def test_set_step_switches_stage():
    task = SemDiscTask(_tiny(steps=10, finetune_start=0.3))
    task.set_step(2)
    assert not task.guided
    task.set_step(3)
    assert task.guided
    task = SemDiscTask(_tiny(steps=None, finetune_step=5))
    task.set_step(4)
    assert not task.guided
    task.set_step(5)
    assert task.guided
    with pytest.raises(DrivesimError, match="finetune_step"):
        SemDiscTask(_tiny(steps=None)).set_step(0)


def _grads(params) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


def _head(task) -> torch.nn.Conv2d:
    return task.D.discriminator_0.model4[0]


def test_d_step_trains_every_head_in_both_stages():
    torch.manual_seed(0)
    task = SemDiscTask(_tiny())
    for step in (0, 3):
        task.set_step(step)
        task.zero_grad(set_to_none=True)
        losses = task.d_step(_batch())
        assert set(losses) == {"loss", "fake", "real", "seg", "rec"}
        losses["loss"].backward()
        head = _head(task).weight.grad.abs().sum((1, 2, 3))
        assert bool((head > 0).all())  # fine, coarse, segmentation and reconstruction rows all learn
        assert not any(_grads(task.G.parameters()))


def test_g_step_uses_the_extra_heads_in_stage_2_only():
    torch.manual_seed(0)
    task = SemDiscTask(_tiny())
    task.set_step(1)
    losses = task.g_step(_batch())
    assert set(losses) == {"loss", "gan", "feat"}
    task.set_step(2)
    losses = task.g_step(_batch())
    assert set(losses) == {"loss", "gan", "feat", "seg", "rec"}
    torch.testing.assert_close(losses["loss"], sum(v for k, v in losses.items() if k != "loss"))
    task.zero_grad(set_to_none=True)
    (losses["seg"] + losses["rec"]).backward()
    assert any(_grads(task.G.parameters()))  # the heads guide G ...
    assert not any(_grads(task.D.parameters()))  # ... and D stays frozen in G's phase


def test_a_step_with_the_optimizers_moves_both_networks():
    torch.manual_seed(0)
    task = SemDiscTask(_tiny())
    optimizers = task.optimizers()
    before = {n: _head(task).weight.detach().clone() if n == "d" else next(task.G.parameters()).detach().clone()
              for n in optimizers}
    task.set_step(3)
    for phase in task.phases:
        optimizers[phase].zero_grad(set_to_none=True)
        losses = getattr(task, f"{phase}_step")(_batch())
        assert all(bool(torch.isfinite(v)) for v in losses.values())
        losses["loss"].backward()
        optimizers[phase].step()
    assert not torch.equal(before["d"], _head(task).weight)
    assert not torch.equal(before["g"], next(task.G.parameters()))
    fake = task.generate(_batch())
    assert fake.shape == (2, 3, 64, 64) and float(fake.abs().max()) <= 1


@pytest.mark.slow
def test_trainer_runs_both_stages_on_a_recording(tmp_path_factory, tmp_path, caplog):
    import recordings

    from drivesim_carla.labels import NUM_TAGS
    from drivesim_carla.training.core.data import Sources
    from drivesim_carla.training.core.trainer import Trainer

    session = recordings.record(tmp_path_factory, "default", 12, seed=1)
    config = _tiny(label_space="carla", label_nc=NUM_TAGS, contain_dontcare_label=False, steps=2, batch_size=2,
                   log_every=1, image_every=2, eval_every=2, save_every=2)
    with caplog.at_level("INFO", logger="drivesim_carla.training.semdisc.task"):
        summary = Trainer(SemDiscTask, config, tmp_path, Sources((session,))).fit()
    assert "stage 2 from step 1" in caplog.text
    assert summary["steps"] == 2 and summary["family"] == "semdisc"
    assert read_card(tmp_path).network == "spade.Pix2PixHDGenerator"
    d = load_file(str(tmp_path / "checkpoints" / "step_00000002" / "D.safetensors"))
    assert d["discriminator_1.model4.0.weight"].shape[0] == NUM_TAGS + 1 + 19 + 3
