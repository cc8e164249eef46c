"""Image metrics: PSNR/SSIM against independent computations, FID and LPIPS through their libraries
(random-weight files in a temporary torch hub cache), the offline errors, and `drivesim eval`."""

from __future__ import annotations

import json
import urllib.error

import cv2
import hub_weights
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.signal import convolve2d

from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.datasets import ImageFolder
from drivesim_carla.training import metrics as M
from drivesim_carla.training.eval_command import eval_group


# ----- data ----------------------------------------------------------------------------------------
def smooth_images(n: int, seed: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """`n` blurry random RGB images (h w 3 uint8): structure at several scales, like photos."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        coarse = rng.uniform(0, 255, (h // 8, w // 8, 3)).astype(np.float32)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (h, w, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def write_folder(path, images) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(path / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """real: 10 images; same: a copy; shifted: the real ones brighter; other: 10 other images; few: 3."""
    root = tmp_path_factory.mktemp("metric_images")
    real = smooth_images(10, seed=1)
    shifted = [np.clip(x.astype(np.int16) + 70, 0, 255).astype(np.uint8) for x in real]
    return {"real": write_folder(root / "real", real), "same": write_folder(root / "same", real),
            "shifted": write_folder(root / "shifted", shifted),
            "other": write_folder(root / "other", smooth_images(10, seed=2)),
            "few": write_folder(root / "few", smooth_images(3, seed=3)),
            "big": write_folder(root / "big", smooth_images(10, seed=4, size=(64, 64)))}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: every download fails as it does on our machines."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))

    def no_network(url, *a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "empty_home" / "hub" / "checkpoints"


# ----- PSNR / SSIM ---------------------------------------------------------------------------------
def test_psnr_of_a_constant_offset_is_analytic():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 3, 16, 24, generator=g) - 0.5  # in [-0.5, 0.5]: an offset keeps it in [-1, 1]
    d = torch.tensor([0.05, 0.2, 0.5])
    got = M.psnr(real + d[:, None, None, None], real)
    want = 10 * torch.log10(M.DATA_RANGE ** 2 / d ** 2)  # MSE = d^2
    assert got.shape == (3,)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert torch.isinf(M.psnr(real, real)).all()


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Wang et al.'s SSIM with an 11-tap Gaussian window (sigma 1.5), images reflect-padded by 5 and the
    map averaged over channels and every pixel (torchmetrics' convention); `c h w` float64."""
    t = np.arange(11) - 5.0
    g = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    win = np.outer(g, g) / g.sum() ** 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    maps = []
    for a, b in zip(x, y):
        a, b = np.pad(a, 5, mode="reflect"), np.pad(b, 5, mode="reflect")
        f = lambda z: convolve2d(z, win, mode="valid")  # noqa: E731
        mx, my = f(a), f(b)
        vx, vy, cxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
        maps.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(maps))


def test_ssim_matches_an_independent_computation():
    imgs = [torch.from_numpy(x).permute(2, 0, 1).double() / 127.5 - 1 for x in smooth_images(4, seed=5)]
    real, fake = torch.stack(imgs[:2]), torch.stack(imgs[2:])
    fake = 0.5 * fake + 0.5 * real  # related, so SSIM is well inside (0, 1)
    got = M.ssim(fake, real)
    want = [_ssim_reference(f.numpy(), r.numpy()) for f, r in zip(fake, real)]
    assert got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    assert 0.2 < min(want) < max(want) < 0.99
    # constant images: only the luminance term, (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, -0.2, (0.01 * 2) ** 2
    flat = M.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert flat.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-4)  # float32
    torch.testing.assert_close(M.ssim(real, real), torch.ones(2, dtype=torch.float32))


def test_psnr_ssim_reject_mismatched_batches():
    with pytest.raises(DrivesimError, match="one shape"):
        M.psnr(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9))


# ----- FID -----------------------------------------------------------------------------------------
def test_random_inception_gives_finite_image_dependent_features(fid_weights, folders):
    model = M.fid_inception(2048)
    three = ImageFolder(folders["real"])
    three.files = three.files[:3]
    f = M.inception_features(three, model, batch_size=2)
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    assert f.std(0).mean() > 1e-3 * np.abs(f).mean()  # features depend on the image
    assert np.abs(f).mean() > 1e-3  # and did not vanish through the depth


def test_fid_is_zero_for_a_set_against_itself_and_grows_with_a_shift(fid_weights, folders):
    same = M.fid(folders["real"], folders["same"], dims=192, batch_size=4, device="cpu")
    shifted = M.fid(folders["real"], folders["shifted"], dims=192, batch_size=4, device="cpu")
    assert (same.n_real, same.n_fake, same.dims) == (10, 10, 192)
    assert abs(same.fid) < 1e-4
    assert shifted.fid > 1e3 * max(abs(same.fid), 1e-6) and shifted.fid > 0.01


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")
def test_fid_equals_pytorch_fids_own_pipeline(fid_weights, folders):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    ours = M.fid(folders["real"], folders["other"], dims=64, batch_size=3, device="cpu").fid
    theirs = calculate_fid_given_paths([folders["real"], folders["other"]], 5, "cpu", 64, num_workers=0)
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_fid_weights_path_reads_a_local_file(fid_weights, folders, offline):
    hub = M.fid(folders["real"], folders["other"], dims=64, weights=fid_weights, device="cpu")
    assert not offline.exists() or not any(offline.iterdir())  # nothing came from (or went to) the cache
    with pytest.raises(DrivesimError, match="file not found"):
        M.fid(folders["real"], folders["other"], dims=64, weights=offline / "nope.pth")
    assert hub.fid > 0.01


def test_fid_of_session_sources(fid_weights, tmp_path_factory):
    import recordings

    path = recordings.front_only(tmp_path_factory)
    r = M.fid(path, path, dims=64, camera="front", device="cpu")
    assert r.n_real == r.n_fake == 10 and abs(r.fid) < 1e-4
    with pytest.raises(DrivesimError, match="no camera 'rear'"):
        M.fid(path, path, dims=64, camera="rear")


def test_fid_errors(fid_weights, folders, tmp_path):
    with pytest.raises(DrivesimError, match="dims 100 unknown; valid: 64, 192, 768, 2048"):
        M.fid(folders["real"], folders["same"], dims=100)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DrivesimError, match="no images"):
        M.fid(folders["real"], tmp_path / "empty", dims=64)
    with pytest.raises(DrivesimError, match="--fake .*nope: not found; give a folder of PNG/JPEG images"):
        M.fid(folders["real"], tmp_path / "nope", dims=64)
    with pytest.raises(DrivesimError, match="--batch-size must be at least 1, got 0"):
        M.fid(folders["real"], folders["same"], dims=64, batch_size=0)


def test_missing_fid_weights_offline_name_the_file_and_the_cache(offline, folders):
    with pytest.raises(DrivesimError) as e:
        M.fid(folders["real"], folders["same"], dims=64, device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "cannot be downloaded" in msg
    assert str(offline / "pt_inception-2015-12-05-6726825d.pth") in msg and "--weights" in msg


def test_a_damaged_cached_file_says_delete_it(offline, folders):
    offline.mkdir(parents=True)
    (offline / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DrivesimError, match="cannot be loaded .*delete the file"):
        M.fid(folders["real"], folders["same"], dims=64, device="cpu")


# ----- LPIPS ---------------------------------------------------------------------------------------
def test_lpips_zero_for_identical_positive_otherwise_and_symmetric(alexnet_weights, folders):
    same = M.lpips_distance(folders["real"], folders["same"], device="cpu")
    ab = M.lpips_distance(folders["real"], folders["other"], batch_size=4, device="cpu")
    ba = M.lpips_distance(folders["other"], folders["real"], batch_size=3, device="cpu")
    assert same.n == 10 and max(same.values) == 0.0
    assert min(ab.values) > 1e-4
    np.testing.assert_allclose(ab.values, ba.values, rtol=1e-6)
    assert ab.mean == pytest.approx(np.mean(ab.values))


@pytest.mark.filterwarnings("ignore:Arguments other than a weight enum", "ignore:The parameter 'pretrained'")
def test_lpips_equals_the_library_applied_directly(alexnet_weights, folders):
    import lpips

    ours = M.lpips_distance(folders["real"], folders["shifted"], batch_size=4, device="cpu").values
    net = lpips.LPIPS(net="alex", verbose=False)
    load = lambda d: torch.stack([lpips.im2tensor(lpips.load_image(str(p))) [0] for p in ImageFolder(d).files])  # noqa: E731
    with torch.no_grad():
        theirs = net(load(folders["real"]), load(folders["shifted"])).flatten()
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-7)


def test_lpips_weights_path_loads_the_trunk_from_a_file(alexnet_weights, folders, offline):
    from_file = M.lpips_distance(folders["real"], folders["other"], weights=alexnet_weights, device="cpu")
    with pytest.raises(DrivesimError, match="alexnet-owt-7be5be79.pth"):
        M.lpips_distance(folders["real"], folders["other"], device="cpu")  # the cache is empty here
    assert min(from_file.values) > 1e-4


def test_lpips_weights_path_equals_the_hub_loader(alexnet_weights, folders):
    a = M.lpips_distance(folders["real"], folders["other"], weights=alexnet_weights, device="cpu")
    b = M.lpips_distance(folders["real"], folders["other"], device="cpu")
    assert a.values == b.values


def test_lpips_vgg_trunk_from_a_file(tmp_path, folders):
    import torchvision

    with torch.device("meta"):  # shapes only: the random file is made here, without VGG16's slow init
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * (2 / s[1:].numel()) ** 0.5 if k.startswith("features") else
             torch.zeros(1).expand(s) for k, s in shapes.items()}
    torch.save(state, tmp_path / "vgg16-397923af.pth")
    r = M.lpips_distance(folders["real"], folders["other"], net="vgg", weights=tmp_path / "vgg16-397923af.pth",
                         device="cpu")
    assert r.net == "vgg" and min(r.values) > 1e-4
    with pytest.raises(DrivesimError, match="do not fit torchvision's vgg16"):
        M.lpips_distance(folders["real"], folders["other"], net="vgg", weights=hub_weights.install_alexnet(tmp_path))


def test_lpips_pairing_errors(alexnet_weights, folders):
    with pytest.raises(DrivesimError, match="real has 10 and fake 3"):
        M.lpips_distance(folders["real"], folders["few"], device="cpu")
    with pytest.raises(DrivesimError, match="pair 0: real image is 64x48, fake 64x64"):
        M.lpips_distance(folders["real"], folders["big"], device="cpu")
    with pytest.raises(DrivesimError, match="unknown LPIPS network 'squeeze'; valid: alex, vgg"):
        M.lpips_distance(folders["real"], folders["same"], net="squeeze")


def test_missing_lpips_trunk_offline(offline, folders):
    with pytest.raises(DrivesimError) as e:
        M.lpips_distance(folders["real"], folders["same"], device="cpu")
    assert str(offline / "alexnet-owt-7be5be79.pth") in str(e.value) and "\n" not in str(e.value)


# ----- the CLI ---------------------------------------------------------------------------------------
def run_eval(capsys, args: list[str]) -> tuple[int, str, str]:
    """`drivesim eval ...` through the real entry point once the group is registered, else the group alone
    with the entry point's handling of DrivesimError (`error: ...`, exit 2). -> (exit code, stdout, stderr)"""
    from drivesim_carla import cli

    if "eval" in cli.cli.commands:
        try:
            cli.main(["eval", *args])
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err
    result = CliRunner().invoke(eval_group, args)
    if isinstance(result.exception, DrivesimError):
        return 2, result.stdout, f"error: {result.exception}\n"
    return result.exit_code, result.stdout, result.stderr


def test_cli_fid_prints_the_figure_and_writes_json(fid_weights, folders, tmp_path, capsys):
    out = tmp_path / "fid.json"
    code, stdout, err = run_eval(capsys, ["fid", "--real", folders["real"], "--fake", folders["shifted"],
                                          "--dims", "64", "--batch-size", "4", "--device", "cpu", "--json", str(out)])
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["metric"] == "fid" and data["n_real"] == data["n_fake"] == 10 and data["dims"] == 64
    assert stdout.startswith(f"FID {data['fid']:.4f}") and data["fid"] > 0.01
    assert data["real"] == folders["real"] and data["fake"] == folders["shifted"]


def test_cli_lpips_and_its_errors(alexnet_weights, folders, tmp_path, capsys):
    code, stdout, err = run_eval(capsys, ["lpips", "--real", folders["real"], "--fake", folders["same"]])
    assert code == 0, err
    assert stdout.startswith("LPIPS (alex) 0.0000")
    code, stdout, err = run_eval(capsys, ["lpips", "--real", folders["real"], "--fake", folders["few"]])
    assert code == 2 and err.startswith("error: LPIPS pairs images by sorted order") and err.count("\n") == 1
    code, _, err = run_eval(capsys, ["fid", "--real", folders["real"], "--fake", folders["few"], "--json",
                             str(tmp_path / "no" / "x.json")])
    assert code == 2 and "folder" in err and "does not exist" in err
