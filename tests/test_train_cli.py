"""`drivesim train`, `drivesim convert` and `drivesim run --synth` end to end, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import recordings
import torch
from safetensors import safe_open

from drivesim_carla.cli import main
from drivesim_carla.training import from_pretrained

TINY = ["size=[64,128]", "crop=null", "num_downs=6", "ngf=8", "ndf=8", "lambda_vgg=0",
        "save_every=10", "eval_every=10", "image_every=10", "log_every=5"]
FIXTURE = Path(__file__).parent / "fixtures" / "pix2pix_reference.safetensors"


def drivesim(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return recordings.record(tmp_path_factory, "default", 12, seed=2)


def _sets(*items):
    return [x for item in items for x in ("--set", item)]


def test_train_then_drive_on_what_it_paints(rec, tmp_path, capsys):
    """The issue's bar: `train pix2pix --data REC.h5 --set steps=N --out RUN`, then
    `run --synth RUN --frames 50 --headless --summary s.json` (small widths so it runs in seconds)."""
    run = tmp_path / "run"
    assert drivesim("train", "pix2pix", "--data", rec, *_sets("steps=20", *TINY), "--out", run, "--quiet") == 0
    assert "trained pix2pix for 20 steps" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["eval"]["psnr"] > 0
    assert (run / "model" / "model.safetensors").is_file()

    s = tmp_path / "s.json"
    assert drivesim("run", "--synth", run, "--frames", 50, "--headless", "--summary", s, "--quiet") == 0
    result = json.loads(s.read_text())
    assert result["frames"] == 50
    assert result["synth"] == f"pix2pix.UnetGenerator@{run}"
    assert result["synth_ms_mean"] > 0

    # --resume continues the same run to a longer schedule
    assert drivesim("train", "pix2pix", "--resume", "--out", run, "--set", "steps=30", "--quiet") == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 30
    assert (run / "checkpoints" / "step_00000030").is_dir()


@pytest.mark.parametrize("args, message", [
    (["train", "pix3pix", "--data", "{rec}", "--out", "{tmp}/r"], "unknown model family 'pix3pix'; valid: "),
    (["train", "pix2pix", "--data", "{tmp}/none.h5", "--out", "{tmp}/r"], "--data {tmp}/none.h5: not found"),
    (["train", "pix2pix", "--data", "{rec}", "--set", "stepz=3", "--out", "{tmp}/r"],
     "unknown key 'stepz' for Pix2PixConfig"),
    (["train", "pix2pix", "--data", "{rec}", "--config", "{tmp}/none.yaml", "--out", "{tmp}/r"],
     "config {tmp}/none.yaml: cannot read it"),
    (["train", "pix2pix", "--resume", "--out", "{tmp}/r"], "{tmp}/r/config.yaml not found"),
    (["convert", "pix2pix", "{tmp}/none.pth", "--out", "{tmp}/m"], "{tmp}/none.pth: checkpoint not found"),
    (["convert", "spadex", "{tmp}/none.pth", "--out", "{tmp}/m"], "unknown checkpoint family 'spadex'"),
])
def test_bad_input_is_one_line_and_exit_2(rec, tmp_path, capsys, args, message):
    args = [a.format(rec=rec, tmp=tmp_path) for a in args]
    assert drivesim(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()


def test_convert_a_reference_checkpoint_and_run_it(tmp_path, capsys):
    """A .pth of the reference project -> our model directory -> the reference's outputs."""
    with safe_open(str(FIXTURE), "pt") as f:
        state = {k[len("g256.state."):]: f.get_tensor(k).float() if f.get_tensor(k).is_floating_point()
                 else f.get_tensor(k) for k in f.keys() if k.startswith("g256.state.")}
        x, y = f.get_tensor("g256.input").float(), f.get_tensor("g256.output")
    torch.save(state, tmp_path / "latest_net_G.pth")
    out = tmp_path / "m"
    assert drivesim("convert", "pix2pix", tmp_path / "latest_net_G.pth", "--out", out) == 0
    assert "pix2pix.UnetGenerator" in capsys.readouterr().out
    with torch.no_grad():
        assert torch.allclose(from_pretrained(out)(x), y, atol=1e-4)
    assert drivesim("convert", "pix2pix", tmp_path / "latest_net_G.pth", "--out", out) == 2
    assert "already holds files; pass --overwrite" in capsys.readouterr().err
    # a checkpoint of another model is refused with one line, and nothing is written
    torch.save({"model.0.weight": torch.zeros(8, 6, 4, 4)}, tmp_path / "d.pth")
    assert drivesim("convert", "pix2pix", tmp_path / "d.pth", "--out", tmp_path / "m2") == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "m2").exists()
