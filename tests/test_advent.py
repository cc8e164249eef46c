"""ADVENT: networks equal to the reference's, the converter, metrics, training steps, data, the
`eval miou` command and the segmenter as an agent's perception."""

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import recordings
import torch
from click.testing import CliRunner
from safetensors import safe_open

from drivesim_carla.errors import DrivesimError
from drivesim_carla.labels import to_train_ids
from drivesim_carla.models.registry import NETWORKS, resolve
from drivesim_carla.recorders.datasets import image_tensor, resize_image
from drivesim_carla.recorders.session import Session
from drivesim_carla.training import from_pretrained, read_card, save_pretrained
from drivesim_carla.training.advent.convert import convert
from drivesim_carla.training.advent.eval_miou import labelled_frames, miou, score_segmenter
from drivesim_carla.training.advent.metrics import (
    SegmentationScores,
    confusion_matrix,
    mean_iou,
    per_class_iou,
)
from drivesim_carla.training.advent.networks import DeepLabV2, EntropyDiscriminator, upsample
from drivesim_carla.training.advent.task import (
    AdventConfig,
    AdventDataset,
    AdventTask,
    entropy_loss,
    segmenter_meta,
    self_information,
)
from drivesim_carla.training.core.config import load_config
from drivesim_carla.training.core.data import Sources
from drivesim_carla.training.core.registry import CONVERTERS, FAMILIES
from drivesim_carla.training.core.trainer import Trainer

FIXTURE = Path(__file__).parent / "fixtures" / "advent_reference.safetensors"
CAFFE_MEAN = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def reference():
    """net -> (state dict as the reference names it, input, outputs); see make_advent_fixtures.py."""
    out = {}
    with safe_open(str(FIXTURE), "pt") as f:
        for net in ("seg", "d"):
            state = {k[len(f"{net}.state."):]: _f32(f.get_tensor(k)) for k in f.keys() if k.startswith(f"{net}.state.")}
            outputs = {k[len(f"{net}.output"):].lstrip("."): f.get_tensor(k) for k in f.keys()
                       if k.startswith(f"{net}.output")}
            out[net] = (state, _f32(f.get_tensor(f"{net}.input")), outputs)
        out["options"] = json.loads(f.metadata()["options"])
    return out


def _f32(t):
    return t.float() if t.is_floating_point() else t


def _one_line(match, fn, *args, **kwargs):
    with pytest.raises(DrivesimError, match=match) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)


# ----- golden: converted reference weights give the reference's outputs --------------------------------
def test_converted_deeplab_matches_reference(reference):
    state, x, y = reference["seg"]
    converted = convert(state)
    assert converted.network == "advent.DeepLabV2" and not converted.net.training
    assert converted.net.config == dict(num_classes=19, backbone="resnet101", multi_level=True, width=4,
                                        normalization="caffe")
    with torch.no_grad():
        aux, main = converted.net(x)
    assert aux.shape == main.shape == (1, 19, 10, 14)  # 71x103 -> ceil-mode pooling keeps 10x14 (floor: 9x13)
    assert torch.allclose(main, y["main"], atol=1e-4), (main - y["main"]).abs().max()
    assert torch.allclose(aux, y["aux"], atol=1e-4), (aux - y["aux"]).abs().max()
    assert y["main"].std() > 1 and y["aux"].std() > 1  # not near-constant maps
    up = upsample(main, tuple(reference["options"]["seg"]["upsampled"]))
    assert torch.allclose(up, y["upsampled"], atol=1e-4)


def test_predict_takes_rgb_and_normalizes_as_the_reference(reference):
    """predict(RGB in [-1, 1]) = the reference on its BGR, 0..255, mean-subtracted input, upsampled."""
    state, x, y = reference["seg"]
    net = convert(state).net
    rgb = ((x + CAFFE_MEAN).flip(1) / 127.5 - 1)
    with torch.no_grad():
        assert torch.allclose(net.normalize(rgb), x, atol=1e-4)
        up = net.predict(rgb, size=tuple(reference["options"]["seg"]["upsampled"]))
    assert torch.allclose(up, y["upsampled"], atol=1e-3), (up - y["upsampled"]).abs().max()


def test_discriminator_matches_reference(reference):
    state, x, y = reference["d"]
    converted = convert(state)
    assert converted.network == "advent.EntropyDiscriminator"
    assert converted.net.config == {"num_classes": 19, "ndf": 8} and converted.meta["kind"] == "discriminator"
    with torch.no_grad():
        ours = converted.net(x)
    assert ours.shape == y[""].shape == (1, 1, 2, 3)
    assert torch.allclose(ours, y[""], atol=1e-4)


def test_imagenet_init_layout_keeps_the_backbone(reference):
    """DeepLab_resnet_pretrained_imagenet.pth: backbone under `Scale.`, a classifier of another task."""
    state, x, _ = reference["seg"]
    init = {f"Scale.{k}": v for k, v in state.items() if not k.startswith(("layer5", "layer6"))}
    init |= {f"Scale.layer5.conv2d_list.{i}.weight": torch.zeros(21, 128, 3, 3) for i in range(4)}
    init = {k: v for k, v in init.items() if not k.endswith("num_batches_tracked")}  # pre-0.4 file
    converted = convert(init)
    assert converted.meta["kind"] == "backbone_init" and converted.net.config["width"] == 4
    ours = converted.net.state_dict()
    assert torch.equal(ours["layer3.22.conv2.weight"], state["layer3.22.conv2.weight"])
    assert ours["layer6.conv2d_list.0.weight"].shape == (19, 128, 3, 3)  # fresh heads, N(0, 0.01)
    assert 0.005 < float(ours["layer6.conv2d_list.0.weight"].std()) < 0.02


def test_pre_041_checkpoints_convert(reference):
    state, x, y = reference["seg"]
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    with torch.no_grad():
        assert torch.allclose(convert(old).net(x)[1], y["main"], atol=1e-4)


def test_rejects_other_checkpoints(reference):
    state = reference["seg"][0]
    _one_line("unknown advent preset 'nope'; valid: cityscapes", convert, state, preset="nope")
    _one_line("not an ADVENT DeepLab-v2 .*keys start model.model.0.weight",
              convert, {"model.model.0.weight": torch.zeros(64, 3, 4, 4)})
    heads = [f"conv2d_list.{i}.{p}" for i in range(4) for p in ("weight", "bias")]
    aux16 = dict(state) | {f"layer5.{k}": torch.zeros(16, *state[f"layer5.{k}"].shape[1:]) for k in heads}
    _one_line("mismatched class counts: the aux head .* 16 classes, the main head .* 19", convert, aux16)
    both16 = aux16 | {k.replace("layer5", "layer6"): torch.zeros(16, *state[k.replace("layer5", "layer6")].shape[1:])
                      for k in aux16 if k.startswith("layer5")}
    _one_line("predicts 16 classes; .* 19 Cityscapes train ids", convert, both16)
    shallow = {k: v for k, v in state.items() if not k.startswith("layer3.22.")}
    _one_line(r"bottleneck blocks \[3, 4, 22, 3\]", convert, shallow)
    no_bias = {k: v for k, v in state.items() if k != "layer6.conv2d_list.3.bias"}
    _one_line("1 missing: layer6.conv2d_list.3.bias", convert, no_bias)


def test_registries_point_here():
    assert resolve(NETWORKS, "advent.DeepLabV2", "network") is DeepLabV2
    assert resolve(NETWORKS, "advent.EntropyDiscriminator", "network") is EntropyDiscriminator
    assert resolve(CONVERTERS, "advent", "converter") is convert
    assert resolve(FAMILIES, "advent", "family") is AdventTask


# ----- networks and checkpoints -----------------------------------------------------------------------
def test_save_pretrained_round_trip(reference, tmp_path):
    converted = convert(reference["seg"][0])
    save_pretrained(converted.net, tmp_path / "seg", network=converted.network, meta=converted.meta)
    back = from_pretrained(tmp_path / "seg")
    x = reference["seg"][1]
    assert isinstance(back, DeepLabV2) and not back.training and back.config == converted.net.config
    with torch.no_grad():
        assert torch.equal(back(x)[1], converted.net(x)[1])
    assert read_card(tmp_path / "seg").meta["normalization"]["channels"] == "bgr"

    torch.manual_seed(0)
    d = EntropyDiscriminator(5, 4).eval()
    save_pretrained(d, tmp_path / "d", network="advent.EntropyDiscriminator")
    z = torch.rand(1, 5, 64, 64)
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path / "d")(z), d(z))


def test_batch_norm_is_frozen_and_heads_get_their_own_group():
    net = DeepLabV2(backbone="resnet18", width=4)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(p.requires_grad for m in bns for p in m.parameters())
    backbone, heads = net.parameter_groups()
    assert len(heads) == 16  # two ASPP heads x four dilated convolutions x (weight, bias)
    assert {id(p) for p in backbone}.isdisjoint(id(p) for p in heads)
    assert len(backbone) + len(heads) == sum(p.requires_grad for p in net.parameters())
    assert DeepLabV2(backbone="resnet18", width=4, multi_level=False)(torch.randn(1, 3, 64, 64))[0] is None
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        DeepLabV2(backbone="vgg16")


def test_small_backbone_has_torchvision_resnet18_names():
    import torchvision

    with torch.device("meta"):  # shapes only
        ours = DeepLabV2(backbone="resnet18").state_dict()
        theirs = torchvision.models.resnet18().state_dict()
    backbone = {k for k in ours if not k.startswith(("layer5", "layer6"))}
    assert backbone == set(theirs) - {"fc.weight", "fc.bias"}
    assert all(ours[k].shape == theirs[k].shape for k in backbone)


def test_imagenet_backbone_through_torchvisions_loader(torch_home):
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = torch_home / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(torchvision.models.resnet18().state_dict().items())
    # a value per tensor, stored as one element broadcast to the shape (a tiny file)
    torch.save({k: torch.full((1,), 0.001 * i).expand(v.shape) if v.is_floating_point() else v
                for i, (k, v) in enumerate(names)}, path)
    task = AdventTask(_tiny(pretrained=True, backbone="resnet18", width=64))
    ours = task.seg.state_dict()
    for i, (k, v) in enumerate(names):
        if v.is_floating_point() and not k.startswith("fc."):
            assert torch.all(ours[k] == 0.001 * i), k
    assert task.seg.config["normalization"] == "imagenet"


def test_imagenet_weights_offline_name_the_way_out(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    _one_line(f"not in the torch hub cache .*{re.escape(str(tmp_path))}.*resnet18-.*--set pretrained=false",
              AdventTask, _tiny(pretrained=True, backbone="resnet18", width=64))
    _one_line("width 64 only.*--set pretrained=false", AdventTask, _tiny(pretrained=True))


# ----- metrics --------------------------------------------------------------------------------------------
def test_confusion_iou_miou_by_hand():
    label = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, label, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows: label; the 255 pixel is not scored
    assert torch.allclose(per_class_iou(conf), torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64))
    assert mean_iou(conf) == pytest.approx(1 / 3)
    four = confusion_matrix(pred, label, 4)
    assert math.isnan(float(per_class_iou(four)[3])) and mean_iou(four) == pytest.approx(1 / 3)
    scores = SegmentationScores(four)
    assert scores.pixel_accuracy == pytest.approx(3 / 5) and scores.pixels == 5
    assert set(scores.scalars()) == {"miou", "pixel_accuracy", "iou/class_0", "iou/class_1", "iou/class_2"}
    d = scores.to_dict()
    assert d["iou"][3] is None and d["confusion"][2] == [1, 0, 0, 0]
    json.dumps(d, allow_nan=False)
    assert "| class_1 | 66.67 | 2 |" in scores.table() and "| class_3 | - | 0 |" in scores.table()
    names = SegmentationScores(torch.eye(19, dtype=torch.long)).scalars()
    assert names["iou/road"] == 1.0 and names["iou/bicycle"] == 1.0 and names["miou"] == 1.0


def test_confusion_rejects_labels_of_other_classes():
    _one_line("labels hold class 25, outside the model's 19 classes", confusion_matrix,
              torch.zeros(4, dtype=torch.long), torch.tensor([0, 25, 255, 1]), 19)
    _one_line("differ in shape", confusion_matrix, torch.zeros(2, 3), torch.zeros(3, 2))


def test_entropy_maps():
    k = 19
    uniform = torch.full((1, k, 2, 3), 1 / k)
    assert torch.allclose(self_information(uniform), torch.full_like(uniform, 1 / k))
    assert entropy_loss(uniform) == pytest.approx(1.0)
    onehot = torch.zeros(1, k, 2, 3)
    onehot[:, 4] = 1
    assert torch.equal(self_information(onehot), torch.zeros_like(onehot)) and entropy_loss(onehot) == 0
    half = torch.tensor([0.5, 0.5, 0.0, 0.0]).view(1, 4, 1, 1)
    assert self_information(half).flatten().tolist() == [0.25, 0.25, 0.0, 0.0]  # -0.5 log2(0.5) / log2(4)
    mixed = torch.cat([uniform, onehot], 0)
    assert entropy_loss(mixed) == pytest.approx(0.5)  # the mean over pixels of the batch


# ----- training steps ---------------------------------------------------------------------------------------
def _tiny(**kw) -> AdventConfig:
    base = dict(backbone="resnet18", width=4, ndf=4, pretrained=False, size=(32, 64), target_size=(32, 64))
    return load_config(AdventConfig, None, base | kw)


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 19, (2, 4, 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    label[:, :4] = 255
    image = torch.rand(2, 3, 32, 64, generator=g) * 2 - 1
    return {"image": image, "label": label, "target": torch.rand(2, 3, 32, 64, generator=g) * 2 - 1}


def _snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _changed(before, net):
    return {k for k, v in net.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])}


def test_config_defaults_are_the_reference_recipe():
    c = AdventConfig()
    assert (c.method, c.backbone, c.multi_level, c.lr, c.momentum, c.weight_decay) == ("advent", "resnet101", True,
                                                                                      2.5e-4, 0.9, 5e-4)
    assert (c.lr_policy, c.lr_power, c.head_lr_mult, c.lr_d, c.beta1_d, c.beta2_d) == ("poly", 0.9, 10, 1e-4,
                                                                                       0.9, 0.99)
    assert (c.lambda_seg_main, c.lambda_seg_aux, c.lambda_adv_main, c.lambda_adv_aux) == (1, 0.1, 0.001, 0.0002)
    assert (c.lambda_ent_main, c.lambda_ent_aux, c.ndf, c.batch_size, c.steps) == (0.001, 0.0002, 64, 1, 120000)
    assert (c.size, c.target_size, c.flip, c.crop, c.seed) == ((720, 1280), (512, 1024), False, None, 1234)
    _one_line("unknown key 'lambda_adv'", load_config, AdventConfig, None, {"lambda_adv": 1})
    _one_line("invalid value for 'method'", load_config, AdventConfig, None, {"method": "cycada"})
    _one_line("caffe normalization", load_config, AdventConfig, None,
              {"init_checkpoint": "x.pth", "normalization": "imagenet"})


@pytest.mark.parametrize("method, phases, terms", [
    ("source_only", ("seg",), {"seg_main", "seg_aux"}),
    ("minent", ("seg",), {"seg_main", "seg_aux", "ent_main", "ent_aux"}),
    ("advent", ("seg", "d"), {"seg_main", "seg_aux", "adv_main", "adv_aux"}),
    ("advent_minent", ("seg", "d"), {"seg_main", "seg_aux", "adv_main", "adv_aux", "ent_main", "ent_aux"}),
])
def test_seg_step_per_method(method, phases, terms):
    torch.manual_seed(0)
    task = AdventTask(_tiny(method=method))
    assert task.phases == phases and set(task.optimizers()) == set(phases)
    assert set(task.networks()) == ({"seg", "d_main", "d_aux"} if "d" in phases else {"seg"})
    optimizers = task.optimizers()
    seg_before = _snapshot(task.seg)
    d_before = {n: _snapshot(d) for n, d in task.networks().items() if n != "seg"}
    losses = task.seg_step(_batch())
    assert set(losses) == {"loss"} | terms
    weights = {"seg_main": 1, "seg_aux": 0.1, "adv_main": 0.001, "adv_aux": 0.0002, "ent_main": 0.001,
               "ent_aux": 0.0002}
    assert torch.allclose(losses["loss"], sum(weights[t] * losses[t] for t in terms))
    losses["loss"].backward()
    for d in task.discriminators():
        assert all(p.grad is None and p.requires_grad for p in d.parameters())
    optimizers["seg"].step()
    moved = _changed(seg_before, task.seg)
    assert {"layer1.0.conv1.weight", "layer6.conv2d_list.0.weight", "layer5.conv2d_list.0.bias"} <= moved
    frozen = [k for k in moved if ("bn" in k or "downsample.1" in k) and k.endswith((".weight", ".bias"))]
    assert not frozen  # batch-norm scale and shift stay (their running statistics follow train mode)
    for name, before in d_before.items():
        assert not _changed(before, task.networks()[name])


def test_seg_step_gradients_come_from_the_right_domain():
    """source_only ignores the target; minent's extra gradient comes only through the target images."""
    batch = _batch()
    grads = {}
    for method in ("source_only", "minent"):
        torch.manual_seed(0)
        task = AdventTask(_tiny(method=method))
        task.seg.eval()  # batch statistics would couple the two images
        task.seg_step(batch)["loss"].backward()
        grads[method] = task.seg.layer6.conv2d_list[0].weight.grad.clone()
    assert not torch.allclose(grads["source_only"], grads["minent"])
    torch.manual_seed(0)
    task = AdventTask(_tiny(method="source_only"))
    task.seg.eval()
    other = dict(batch, target=torch.zeros_like(batch["target"]))
    task.seg_step(other)["loss"].backward()
    assert torch.equal(task.seg.layer6.conv2d_list[0].weight.grad, grads["source_only"])


def test_d_step_learns_source_zero_target_one_on_the_same_maps():
    torch.manual_seed(0)
    task = AdventTask(_tiny())
    optimizers = task.optimizers()
    seen = []
    task.d_main.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    batch = _batch()
    task.seg_step(batch)["loss"].backward()
    optimizers["seg"].step()
    seg_before = _snapshot(task.seg)
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    losses = task.d_step(batch)
    assert len(seen) == 3 and torch.equal(seen[0], seen[2])  # the target maps seg_step's adversarial term saw
    entropy = seen[1].sum(1)
    assert bool(((entropy >= 0) & (entropy <= 1 + 1e-5)).all()) and entropy.std() > 0  # normalised entropies
    with torch.no_grad():
        d_src, d_trg = task.d_main(seen[1]), task.d_main(seen[2])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert torch.allclose(losses["main_source"], bce(d_src, torch.zeros_like(d_src)) / 2)
    assert torch.allclose(losses["main_target"], bce(d_trg, torch.ones_like(d_trg)) / 2)
    assert torch.allclose(losses["loss"], sum(v for k, v in losses.items() if k != "loss"))
    losses["loss"].backward()
    assert all(p.grad is None for p in task.seg.parameters())
    assert all(p.grad is not None for d in task.discriminators() for p in d.parameters())
    optimizers["d"].step()
    assert not _changed(seg_before, task.seg)


def test_bad_labels_in_a_step():
    task = AdventTask(_tiny(method="source_only"))
    batch = _batch()
    batch["label"][0, -1, -1] = 33  # a Cityscapes label id, not a train id
    _one_line("a label holds class 33, but the segmenter predicts 19 classes", task.seg_step, batch)
    unlabelled = dict(batch, label=torch.full_like(batch["label"], 255))
    assert task.seg_step(unlabelled)["seg_main"] == 0


def test_poly_schedule_through_the_trainer(tmp_path_factory, tmp_path):
    session = recordings.record(tmp_path_factory, "default", 8, seed=1)
    config = _tiny(steps=100)
    trainer = Trainer(AdventTask, config, tmp_path / "run", Sources((session,), extra={"target": (session,)}))
    task = AdventTask(config)
    optimizers = task.optimizers()
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    for step in (0, 50, 99):
        trainer._set_lr(optimizers, step, 100)
        factor = (1 - step / 100) ** 0.9
        seg_lrs = [g["lr"] for g in optimizers["seg"].param_groups]
        assert seg_lrs == pytest.approx([2.5e-4 * factor, 2.5e-3 * factor])  # heads at 10x
        assert optimizers["d"].param_groups[0]["lr"] == pytest.approx(1e-4 * factor)


# ----- data -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """(flat labelled source, textured target with labels), 64x128."""
    return (recordings.record(tmp_path_factory, "default", 8, seed=1, style="flat"),
            recordings.record(tmp_path_factory, "default", 10, seed=4, style="textured"))


def test_datasets_pair_source_with_target_and_hold_out_labelled_target(domains):
    source, target = domains
    config = _tiny(val_fraction=0.2, size=(32, 64), target_size=(16, 32))
    train, held = AdventTask.datasets(config, Sources((source,), extra={"target": (target,)}))
    assert len(train) == 8 and len(held) == 2
    sample = train[3]
    assert sample["image"].shape == (3, 32, 64) and sample["label"].shape == (32, 64)
    assert sample["target"].shape == (3, 16, 32) and 0 <= sample["target_index"] < 8  # training part only
    assert train[3]["target_index"] == sample["target_index"]  # a pure function of (seed, epoch, index)
    draws = {e: [train.set_epoch(e) or train[i]["target_index"] for i in range(8)] for e in (0, 1)}
    assert draws[0] != draws[1]
    frame = Session(target).read(9)
    assert torch.equal(held[1]["label"], torch.from_numpy(to_train_ids(frame.semantic).astype(np.int64)))
    assert held[1]["image"].shape == (3, 64, 128)  # stored size: scored at full resolution

    train, held = AdventTask.datasets(_tiny(method="source_only"), Sources((source,)))
    assert held is None and "target" not in train[0]


def _rgb_only_session(tmp_path) -> Path:
    from drivesim_carla.agents import make_agent
    from drivesim_carla.loop import ClosedLoop
    from drivesim_carla.recorders.hdf5 import Recorder
    from drivesim_carla.scenarios import load_scenario
    from drivesim_carla.synth import load_synthesizer
    from drivesim_carla.types import CameraSpec
    from drivesim_carla.world import make_world

    path = tmp_path / "rgb_only.h5"
    spec = load_scenario("default")
    world = make_world("embedded", spec, 0, cameras=[CameraSpec("front", 64, 32, streams=("rgb",))])
    ClosedLoop(world, make_agent("autopilot"), load_synthesizer("none"), taps=[Recorder(path)]).run(3, seed=0)
    return path


def test_bad_sources_end_in_one_line(domains, tmp_path):
    source, target = domains
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    cv2.imwrite(str(pictures / "a.png"), np.zeros((8, 8, 3), np.uint8))
    config = _tiny()
    _one_line("a folder without sessions .* has no labels.*pass unlabelled images as --target",
              AdventTask.datasets, config, Sources((pictures,), extra={"target": (target,)}))
    _one_line("has no semantic stream, so no labels", AdventTask.datasets, config,
              Sources((_rgb_only_session(tmp_path),), extra={"target": (target,)}))
    _one_line("method advent adapts to a target domain; pass --target", AdventTask.datasets, config,
              Sources((source,)))
    _one_line("advent needs labelled source frames", AdventTask.datasets, config, Sources(extra={"target": (target,)}))
    _one_line("--target .*nowhere: not found", AdventTask.datasets, config,
              Sources((source,), extra={"target": (tmp_path / "nowhere",)}))
    train, held = AdventTask.datasets(config, Sources((source,), extra={"target": (pictures,)}))
    assert held is None and train[0]["target"].shape == (3, 32, 64)  # images: a target without evaluation


def test_gta5_source_and_cityscapes_target(domains, tmp_path):
    """GTA5 folders as labelled source; a Cityscapes root as target: train images, val held out with labels."""
    from test_gta5 import TRAIN, make_gta5

    from drivesim_carla.recorders.export import export_cityscapes

    source, target = domains
    city = tmp_path / "cityscapes"
    export_cityscapes(target, city, split="train", every=2)
    export_cityscapes(source, city, split="val", every=4)
    gta5 = make_gta5(tmp_path / "gta5")
    config = _tiny(size=(8, 16), target_size=(16, 32))
    train, held = AdventTask.datasets(config, Sources((source,), extra={"gta5": gta5, "target": (city,)}))
    assert len(train) == 8 + 3 and train.target is not None and len(train.target) == 5  # 10 frames, every 2nd
    assert torch.equal(train[8]["label"], torch.from_numpy(TRAIN.repeat(4, 0).repeat(4, 1)))
    assert train[8]["target"].shape == (3, 16, 32)
    assert len(held) == 2 and held[0]["label"].shape == (64, 128)
    frame = Session(source).read(4)
    assert torch.equal(held[1]["label"], torch.from_numpy(to_train_ids(frame.semantic).astype(np.int64)))


def test_init_checkpoint(reference, tmp_path):
    """Start from an ADVENT .pth: a trained model (all weights) or the ImageNet init (backbone only)."""
    state = reference["seg"][0]
    torch.save(state, tmp_path / "model_2000.pth")
    config = dict(backbone="resnet101", width=4, pretrained=True)
    task = AdventTask(_tiny(init_checkpoint=str(tmp_path / "model_2000.pth"), **config))
    assert task.seg.config["normalization"] == "caffe"
    assert all(torch.equal(v, state[k]) for k, v in task.seg.state_dict().items())
    torch.save({f"Scale.{k}": v for k, v in state.items() if not k.startswith("layer5")}, tmp_path / "init.pth")
    task = AdventTask(_tiny(init_checkpoint=str(tmp_path / "init.pth"), **config))
    ours = task.seg.state_dict()
    assert torch.equal(ours["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
    assert not torch.equal(ours["layer6.conv2d_list.0.weight"], state["layer6.conv2d_list.0.weight"])
    _one_line("is a resnet101 of width 4 .*train with --set backbone=resnet101", AdventTask,
              _tiny(init_checkpoint=str(tmp_path / "model_2000.pth")))


def test_target_dataset_without_images():
    with pytest.raises(DrivesimError, match="no images"):
        AdventDataset([], target=[])


@pytest.mark.slow
def test_trainer_runs_advent_between_two_styles(domains, tmp_path):
    """flat -> textured through the shared trainer: evaluation on held-out target frames, loadable model."""
    source, target = domains
    config = _tiny(steps=3, batch_size=2, val_fraction=0.2, eval_every=3, save_every=3, image_every=3)
    summary = Trainer(AdventTask, config, tmp_path / "run", Sources((source,), extra={"target": (target,)})).fit()
    assert summary["steps"] == 3 and summary["eval"]["samples"] == 2
    assert 0 <= summary["eval"]["miou"] <= 1
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["step"] == 3 and any(k.startswith("iou/") for k in line)
    assert {p.name for p in (tmp_path / "run" / "checkpoints" / "step_00000003").glob("*.safetensors")} == \
        {"seg.safetensors", "d_main.safetensors", "d_aux.safetensors"}
    net = from_pretrained(tmp_path / "run")
    assert isinstance(net, DeepLabV2) and net.config["width"] == 4
    meta = read_card(tmp_path / "run").meta
    assert (meta["family"], meta["kind"], meta["num_classes"], meta["label_space"]) == ("advent", "segmenter", 19,
                                                                                          "train_ids")
    assert meta["input"]["kind"] == "rgb" and meta["normalization"]["name"] == "imagenet"
    assert meta["input_size"] == [32, 64] and meta["method"] == "advent"


@pytest.mark.parametrize("with_target", [False, True])
def test_exported_input_size_is_the_size_the_run_saw(domains, tmp_path, with_target):
    """Without a target domain the network only saw source frames, so `eval miou` must feed it frames
    at the source size, not at target_size (which it never saw); with one, at target_size."""
    source, target = domains
    config = _tiny(method="source_only", steps=1, batch_size=2, val_fraction=0.0, save_every=1, image_every=1,
                   size=(32, 64), target_size=(48, 96))
    extra = {"target": (target,)} if with_target else {}
    Trainer(AdventTask, config, tmp_path / "run", Sources((source,), extra=extra)).fit()
    assert read_card(tmp_path / "run").meta["input_size"] == ([48, 96] if with_target else [32, 64])


# ----- drivesim eval miou -----------------------------------------------------------------------------------
def constant_segmenter(train_id: int) -> DeepLabV2:
    """A segmenter that predicts `train_id` everywhere."""
    net = DeepLabV2(backbone="resnet18", width=4, normalization="imagenet")
    with torch.no_grad():
        for conv in net.layer6.conv2d_list:
            conv.weight.zero_()
            conv.bias.zero_()
        net.layer6.conv2d_list[0].bias[train_id] = 10.0
    return net.eval()


def _save(net, folder: Path, **meta) -> Path:
    save_pretrained(net, folder, network="advent.DeepLabV2", meta=segmenter_meta(net) | meta)
    return folder


def test_miou_command_by_hand(domains, tmp_path):
    """A segmenter that says "road" everywhere: road IoU = road / scored pixels, other present classes 0."""
    target = domains[1]
    model = _save(constant_segmenter(0), tmp_path / "road")
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(miou, ["--model", str(model), "--data", str(target), "--json", str(out),
                                       "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    ids = to_train_ids(Session(target)[0:10].semantic)
    scored = ids[ids != 255]
    present = np.unique(scored)
    expected_road = (scored == 0).sum() / scored.size
    record = json.loads(out.read_text())
    assert record["frames"] == 10 and record["pixels"] == scored.size
    assert record["iou"][0] == pytest.approx(expected_road)
    assert record["miou"] == pytest.approx(expected_road / len(present))
    assert [i for i, v in enumerate(record["iou"]) if v is None] == sorted(set(range(19)) - set(present.tolist()))
    assert f"mIoU {100 * expected_road / len(present):.2f}% over 10 frames" in result.output
    assert "| road |" in result.output


def test_miou_of_synthesized_frames_pairs_by_order(domains, tmp_path):
    """The session's own rgb written as PNGs scores exactly as the session does; counts must match."""
    target = domains[1]
    torch.manual_seed(0)
    net = DeepLabV2(backbone="resnet18", width=4, normalization="imagenet").eval()
    with torch.no_grad():
        for conv in net.layer6.conv2d_list:
            conv.weight.normal_(0, 1)  # predictions that vary over the image
    model = _save(net, tmp_path / "m", input_size=[32, 64])
    frames = tmp_path / "synth"
    frames.mkdir()
    rgb = Session(target)[0:10].rgb
    for i, img in enumerate(rgb):
        cv2.imwrite(str(frames / f"{i:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    direct, n = score_segmenter(model, target, batch_size=4, device="cpu")
    paired, m = score_segmenter(model, target, images=frames, batch_size=4, device="cpu")
    assert n == m == 10
    assert len(direct.confusion.diag().nonzero()) > 1  # not a constant prediction
    assert torch.equal(direct.confusion, paired.confusion)
    (frames / "000009.png").unlink()
    result = CliRunner().invoke(miou, ["--model", str(model), "--data", str(target), "--images", str(frames)])
    assert isinstance(result.exception, DrivesimError)
    assert "--images has 9 images but --data 10 labelled frames" in str(result.exception)


def test_miou_rejects_models_it_cannot_score(domains, tmp_path):
    target = domains[1]
    five = _save(DeepLabV2(num_classes=5, backbone="resnet18", width=4), tmp_path / "five")
    _one_line("predicts 5 classes; the labels here are the 19 Cityscapes train ids", score_segmenter, five, target)
    d = tmp_path / "d"
    save_pretrained(EntropyDiscriminator(19, 4), d, network="advent.EntropyDiscriminator")
    _one_line("a advent.EntropyDiscriminator, not a trained segmenter", score_segmenter, d, target)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    cv2.imwrite(str(pictures / "a.png"), np.zeros((8, 8, 3), np.uint8))
    _one_line("has no labels; give labelled frames as --data", score_segmenter,
              _save(constant_segmenter(0), tmp_path / "road"), pictures)


def test_reestimate_batchnorm_takes_the_frames_statistics():
    """The first batch norm's running mean becomes the mean of its input over the frames (equal batches,
    so the average of batch means is the overall mean); weights, momentum and eval mode are kept."""
    from drivesim_carla.training.advent.adabn import reestimate_batchnorm

    torch.manual_seed(0)
    net = DeepLabV2(backbone="resnet18", width=4, normalization="imagenet").eval()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.rand(8, 3, 32, 64) * 2 - 1
    with torch.no_grad():
        expected = net.conv1(net.normalize(images)).mean((0, 2, 3))
    assert not torch.allclose(net.bn1.running_mean, expected, atol=1e-3)
    assert reestimate_batchnorm(net, images, batch_size=4) == sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(net.bn1.running_mean, expected, atol=1e-5, rtol=1e-5)
    assert not net.training and net.bn1.momentum == 0.1
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    _one_line("at least 2 frames", reestimate_batchnorm, net, images[:1])


def test_miou_with_batchnorm_statistics_of_other_frames(domains, tmp_path):
    """`eval miou --bn-frames`: the score of the segmenter whose statistics were re-estimated on those
    frames, which differs from the stored statistics' score; a missing source is one line."""
    from drivesim_carla.training.advent.adabn import reestimate_batchnorm, sample_frames

    source, target = domains
    torch.manual_seed(0)
    net = DeepLabV2(backbone="resnet18", width=4, normalization="imagenet").eval()
    with torch.no_grad():
        for conv in net.layer6.conv2d_list:
            conv.weight.normal_(0, 1)
    model = _save(net, tmp_path / "m", input_size=[32, 64])
    plain, _ = score_segmenter(model, target, batch_size=4, device="cpu")
    adapted, n = score_segmenter(model, target, batch_size=4, device="cpu", bn_frames=[source], bn_max=6)
    assert n == 10 and not torch.equal(plain.confusion, adapted.confusion)
    frames = sample_frames([source], None, (32, 64), 6)
    assert frames.shape == (6, 3, 32, 64)
    torch.testing.assert_close(frames[-1], image_tensor(resize_image(Session(source)[7].rgb, (32, 64))))
    by_hand = from_pretrained(model)
    reestimate_batchnorm(by_hand, frames, batch_size=4)
    labelled, confusion = labelled_frames(target), torch.zeros(19, 19, dtype=torch.long)
    with torch.no_grad():
        for i in range(10):
            image = image_tensor(resize_image(Session(target)[i].rgb, (32, 64)))[None]
            label = labelled[i]["label"]
            confusion += confusion_matrix(by_hand.predict(image, size=tuple(label.shape))[0].argmax(0), label, 19)
    assert torch.equal(adapted.confusion, confusion)
    out = tmp_path / "s.json"
    result = CliRunner().invoke(miou, ["--model", str(model), "--data", str(target), "--bn-frames", str(source),
                                       "--bn-max", "6", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert f"batch-norm statistics of {source}" in result.output
    record = json.loads(out.read_text())
    assert record["bn_frames"] == [str(source)] and record["miou"] == pytest.approx(adapted.miou)
    _one_line("--bn-frames .*nowhere.h5: not found", score_segmenter, model, target,
              bn_frames=[tmp_path / "nowhere.h5"])


# ----- perception in the loop ---------------------------------------------------------------------------------
class _Controls:
    def __init__(self):
        self.controls = []

    def on_reset(self, info):
        pass

    def on_step(self, step):
        self.controls.append(step.control)

    def on_close(self):
        pass


def _drive(agent, frames: int = 4):
    from drivesim_carla.loop import ClosedLoop
    from drivesim_carla.scenarios import load_scenario
    from drivesim_carla.synth import load_synthesizer
    from drivesim_carla.world import make_world

    spec = load_scenario("default")
    world = make_world("embedded", spec, 0, cameras=spec.camera_specs(128, 64))
    tap = _Controls()
    ClosedLoop(world, agent, load_synthesizer("none"), taps=[tap]).run(frames, seed=0)
    return tap.controls


def test_segmentation_autopilot_in_the_loop(tmp_path, monkeypatch):
    from drivesim_carla.agents import make_agent
    from drivesim_carla.agents.autopilot import Autopilot
    from drivesim_carla.agents.perception import PerceivingAgent, SegmentationAutopilot, SegmenterPerception

    plain = _drive(Autopilot())
    clear_road = SegmentationAutopilot(constant_segmenter(0), device="cpu")
    assert _drive(clear_road) == plain  # nothing seen ahead: the autopilot's own controls
    assert clear_road.last.shape == (64, 128) and clear_road.last.dtype == np.uint8 and not clear_road.last.any()

    cars = SegmentationAutopilot(constant_segmenter(13), device="cpu")
    controls = _drive(cars)
    assert all(c.brake == 1.0 and c.throttle == 0.0 for c in controls) and cars.inner.braking

    seen = []

    class Looks(Autopilot):
        def act(self, obs):
            seen.append(obs.perception)
            return super().act(obs)

    perception = SegmenterPerception(constant_segmenter(8), device="cpu")
    _drive(PerceivingAgent(Looks(), perception), frames=2)
    assert len(seen) == 3 and all(s.shape == (64, 128) and (s == 8).all() for s in seen)  # reset + 2 steps
    assert perception(np.zeros((2, 16, 24, 3), np.uint8)).shape == (2, 16, 24)

    monkeypatch.delenv("DRIVESIM_SEGMENTER", raising=False)
    _one_line("needs a segmenter: pass --perception DIR \\(or set DRIVESIM_SEGMENTER=DIR\\)", make_agent,
              "drivesim_carla.agents.perception:SegmentationAutopilot")
    monkeypatch.setenv("DRIVESIM_SEGMENTER", str(_save(constant_segmenter(13), tmp_path / "cars")))
    monkeypatch.setenv("DRIVESIM_SEGMENTER_DEVICE", "cpu")
    agent = make_agent("drivesim_carla.agents.perception:SegmentationAutopilot")
    assert all(c.brake == 1.0 for c in _drive(agent, frames=2))


def test_perception_through_drivesim_run(tmp_path, capsys):
    """`--agent segmentation-autopilot --perception DIR` brakes for what the segmenter sees; `--perception`
    with another agent hands it `obs.perception`; a segmenter is refused as a synthesizer."""
    from drivesim_carla.cli import main

    cars = _save(constant_segmenter(13), tmp_path / "cars")
    common = ["--frames", "20", "--headless", "--width", "128", "--height", "64", "--quiet"]
    main(["run", "--agent", "segmentation-autopilot", "--perception", str(cars), *common,
          "--summary", str(tmp_path / "braking.json")])
    main(["run", "--perception", str(_save(constant_segmenter(0), tmp_path / "road")), *common,
          "--summary", str(tmp_path / "road.json")])
    braking, road = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("braking", "road"))
    assert braking["agent"] == "segmentation-autopilot" and braking["distance_m"] < 0.05
    assert road["agent"] == "autopilot+perception" and road["distance_m"] > 1.0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["run", "--synth", str(cars), *common])
    assert e.value.code == 2
    assert "this is a segmenter (advent.DeepLabV2), not a generator" in capsys.readouterr().err


def test_warm_start_from_a_drivesim_segmenter(tmp_path):
    """init_checkpoint = a run or model directory: every weight starts there, with its normalization;
    another network is refused in one line naming the options to change."""
    torch.manual_seed(0)
    net = DeepLabV2(backbone="resnet18", width=4, normalization="imagenet")
    warm = _save(net, tmp_path / "warm")
    config = _tiny(method="advent", init_checkpoint=str(warm))
    assert config.input_normalization == "imagenet"
    task = AdventTask(config)
    ours = task.seg.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in net.state_dict().items())
    _one_line(r"init_checkpoint .* is another network; train with --set width=4", AdventTask,
              _tiny(init_checkpoint=str(warm), width=8))
    _one_line("takes imagenet normalization; drop normalization=caffe", load_config, AdventConfig, None,
              {"init_checkpoint": str(warm), "normalization": "caffe"})
