"""Image quality metrics: FID (pytorch-fid), LPIPS (lpips), PSNR and SSIM (torchmetrics).

The pretrained networks load through the libraries' own loaders, from the torch hub cache
(`$TORCH_HOME/hub/checkpoints`), downloading there when online; `weights=PATH` reads a local
file instead. Image sources are folders of PNG/JPEG, session files or folders of sessions (the
rgb of one camera), or anything with `__len__` and `rgb(i)` (see `recorders.datasets.image_source`).
Everything runs batched, without gradients, on CUDA when there is a device and `device="auto"`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DrivesimError
from ..models.devices import resolve_device
from ..recorders.datasets import ImageSource, SessionImages, image_source

log = logging.getLogger(__name__)

FID_DIMS = (64, 192, 768, 2048)  # pytorch-fid's InceptionV3 blocks: pool1, pool2, pre-aux, final pool
LPIPS_NETS = ("alex", "vgg")
DATA_RANGE = 2.0  # images in [-1, 1]


# ----- PSNR / SSIM -----------------------------------------------------------------------------
def psnr(fake: Tensor, real: Tensor) -> Tensor:
    """`b 3 h w` in [-1, 1] -> `b` PSNR in dB (inf where the images are equal)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_pair(fake, real)
    return peak_signal_noise_ratio(fake.float(), real.float(), data_range=DATA_RANGE, reduction="none",
                                   dim=(1, 2, 3))


def ssim(fake: Tensor, real: Tensor) -> Tensor:
    """`b 3 h w` in [-1, 1] -> `b` SSIM (Gaussian window 11, sigma 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(fake, real)
    return structural_similarity_index_measure(fake.float(), real.float(), data_range=DATA_RANGE, reduction="none")


def _check_pair(fake: Tensor, real: Tensor) -> None:
    if fake.shape != real.shape or fake.ndim != 4:
        raise DrivesimError(f"image metrics need two b 3 h w batches of one shape, got {tuple(fake.shape)} "
                            f"and {tuple(real.shape)}")


# ----- hub weights -------------------------------------------------------------------
def hub_cache_path(url: str) -> Path:
    """Where torch's `load_state_dict_from_url` keeps the file of `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _from_hub(build: Callable[[], nn.Module], what: str, url: str) -> nn.Module:
    """Run a library's loader; turn "missing and no download" or a damaged cache file into one line."""
    path = hub_cache_path(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation, as lpips calls it
            return build()
    except OSError as e:  # URLError, HTTPError, timeouts, a read-only cache
        raise DrivesimError(f"{what} weights are missing and cannot be downloaded ({_first_line(e)}); put "
                            f"{path.name} (from {url}) at {path}, or pass --weights PATH") from None
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:  # a truncated or foreign file
        raise DrivesimError(f"{what} weights {path} cannot be loaded ({_first_line(e)}); delete the file to "
                            f"download it again, or pass --weights PATH") from None


def _load_state(path: str | Path, what: str) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DrivesimError(f"{what} weights {path}: file not found; give the path of the .pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DrivesimError(f"{what} weights {path}: not a loadable state dict ({_first_line(e)})") from None
    if not isinstance(state, dict):
        raise DrivesimError(f"{what} weights {path}: not a state dict (a mapping of names to tensors)")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:160] if text else type(e).__name__)


# ----- image sources -------------------------------------------------------------------------------
def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise DrivesimError(f"--batch-size must be at least 1, got {batch_size}")


def _source(src, camera: str | None, side: str) -> ImageSource:
    if isinstance(src, (str, Path)) and not Path(src).exists():
        raise DrivesimError(f"--{side} {src}: not found; give a folder of PNG/JPEG images, a session file or a "
                            "folder of sessions")
    source = image_source(src, camera)
    if len(source) == 0:
        raise DrivesimError(f"--{side} {src}: no images in it")
    return source


def _read_batches(source: ImageSource, batch_size: int) -> Iterator[list[np.ndarray]]:
    """Images in order, `batch_size` at a time, the next batch read while the current is used."""
    threads = 1 if isinstance(source, SessionImages) else min(8, os.cpu_count() or 1)  # h5py reads serialize
    n = len(source)
    with ThreadPoolExecutor(threads) as pool:
        pending = None
        for start in range(0, n, batch_size):
            futures = [pool.submit(source.rgb, i) for i in range(start, min(n, start + batch_size))]
            if pending is not None:
                yield [f.result() for f in pending]
            pending = futures
        if pending is not None:
            yield [f.result() for f in pending]


def _same_size_runs(images: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Split a batch into `b h w 3` stacks of one size each (consecutive runs)."""
    start = 0
    for i in range(1, len(images) + 1):
        if i == len(images) or images[i].shape != images[start].shape:
            yield np.stack(images[start:i])
            start = i


def _to_device(stack: np.ndarray, device: torch.device) -> Tensor:
    """`b h w 3` uint8 -> `b 3 h w` uint8 on `device`."""
    return torch.from_numpy(stack).to(device, non_blocking=True).permute(0, 3, 1, 2)


# ----- FID -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FIDResult:
    fid: float
    dims: int
    n_real: int
    n_fake: int

    def to_dict(self) -> dict:
        return {"metric": "fid", **asdict(self)}


def fid_inception(dims: int = 2048, weights: str | Path | None = None,
                  device: str | torch.device = "cpu") -> nn.Module:
    """pytorch-fid's InceptionV3 (the TF FID weights) up to the block with `dims` features."""
    from pytorch_fid import inception as fid_lib

    if dims not in FID_DIMS:
        raise DrivesimError(f"FID feature dims {dims} unknown; valid: {', '.join(map(str, FID_DIMS))}")
    blocks = [fid_lib.InceptionV3.BLOCK_INDEX_BY_DIM[dims]]
    if weights is None:
        model = _from_hub(lambda: fid_lib.InceptionV3(blocks), "Inception (FID)", fid_lib.FID_WEIGHTS_URL)
    else:
        state = _load_state(weights, "Inception (FID)")
        try:  # the library's own builder, fed the local file instead of its download
            with mock.patch.object(fid_lib, "load_state_dict_from_url", lambda *a, **k: state):
                model = fid_lib.InceptionV3(blocks)
        except RuntimeError as e:
            raise DrivesimError(f"Inception (FID) weights {weights}: do not fit pytorch-fid's InceptionV3 "
                                f"({_first_line(e)}); give {Path(fid_lib.FID_WEIGHTS_URL).name}") from None
    return model.to(device).eval()


@torch.inference_mode()
def inception_features(source: ImageSource, model: nn.Module, *, batch_size: int = 50,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """`n dims` float64 activations, as pytorch-fid computes them (images in [0, 1], resized to 299)."""
    device = torch.device(device)
    out = []
    for images in _read_batches(source, batch_size):
        for stack in _same_size_runs(images):
            x = _to_device(stack, device).float().div_(255.0)
            f = model(x)[0]
            if f.shape[-2:] != (1, 1):
                f = F.adaptive_avg_pool2d(f, 1)
            out.append(f.flatten(1).double().cpu().numpy())
    return np.concatenate(out)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two `n d` feature sets (pytorch-fid's `calculate_frechet_distance`)."""
    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy.linalg import LinAlgWarning

    for name, f in (("real", real), ("fake", fake)):
        if len(f) < 2:
            raise DrivesimError(f"FID needs at least 2 {name} images, got {len(f)}")
    if min(len(real), len(fake)) < real.shape[1]:
        log.warning("FID from %d real / %d fake images, fewer than the %d feature dims: the figure is biased "
                    "(thousands of images are usual)", len(real), len(fake), real.shape[1])
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (real, fake)]
    said = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(said):
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's sqrtm(disp=) as pytorch-fid calls it
        warnings.simplefilter("ignore", LinAlgWarning)  # singular covariances: the bias warning above says it
        value = calculate_frechet_distance(*stats[0], *stats[1])
    if said.getvalue().strip():
        log.info("pytorch-fid: %s", said.getvalue().strip())
    return float(value)


def fid(real, fake, *, weights: str | Path | None = None, dims: int = 2048, batch_size: int = 50,
        device: str | torch.device = "auto", camera: str | None = None) -> FIDResult:
    """Fréchet Inception Distance between two image sources."""
    _check_batch_size(batch_size)
    device = resolve_device(device)
    sources = _source(real, camera, "real"), _source(fake, camera, "fake")
    model = fid_inception(dims, weights, device)
    feats = [inception_features(s, model, batch_size=batch_size, device=device) for s in sources]
    return FIDResult(frechet_distance(*feats), dims, len(feats[0]), len(feats[1]))


# ----- LPIPS ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LPIPSResult:
    mean: float
    std: float
    n: int
    net: str
    values: tuple[float, ...]  # one per pair, in sorted order

    def to_dict(self) -> dict:
        return {"metric": "lpips", "lpips": self.mean, "std": self.std, "n": self.n, "net": self.net,
                "values": list(self.values)}


def _trunk_url(net: str) -> str:
    import torchvision

    weights = torchvision.models.AlexNet_Weights if net == "alex" else torchvision.models.VGG16_Weights
    return weights.IMAGENET1K_V1.url


def lpips_model(net: str = "alex", weights: str | Path | None = None,
                device: str | torch.device = "cpu") -> nn.Module:
    """`lpips.LPIPS` v0.1 with its shipped linear layers; the ImageNet trunk (torchvision's AlexNet
    or VGG16) from the hub cache, or from `weights`."""
    import lpips

    if net not in LPIPS_NETS:
        raise DrivesimError(f"unknown LPIPS network '{net}'; valid: {', '.join(LPIPS_NETS)}")
    if weights is None:
        model = _from_hub(lambda: lpips.LPIPS(net=net, verbose=False), f"LPIPS {net} trunk", _trunk_url(net))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation, as lpips calls it
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        _load_trunk(model.net, weights, net)
    return model.to(device).eval().requires_grad_(False)


def _load_trunk(trunk: nn.Module, weights: str | Path, net: str) -> None:
    """torchvision AlexNet/VGG16 weights into lpips' sliced trunk (`sliceK.I.*` = `features.I.*`)."""
    state = _load_state(weights, f"LPIPS {net} trunk")
    try:
        trunk.load_state_dict({k: state[f"features.{k.split('.', 1)[1]}"] for k in trunk.state_dict()})
    except (KeyError, RuntimeError) as e:
        tv_name = "alexnet" if net == "alex" else "vgg16"
        raise DrivesimError(f"LPIPS {net} trunk weights {weights}: do not fit torchvision's {tv_name} "
                            f"({_first_line(e)}); give {Path(_trunk_url(net)).name}") from None


@torch.inference_mode()
def lpips_values(real: ImageSource, fake: ImageSource, model: nn.Module, *, batch_size: int = 16,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """LPIPS of each pair (i-th real with i-th fake), `n` float64."""
    if len(real) != len(fake):
        raise DrivesimError(f"LPIPS pairs images by sorted order, but real has {len(real)} and fake "
                            f"{len(fake)}; give two sources with the same number of images")
    device, out, k = torch.device(device), [], 0
    for a, b in zip(_read_batches(real, batch_size), _read_batches(fake, batch_size)):
        for i, (x, y) in enumerate(zip(a, b)):
            if x.shape != y.shape:
                raise DrivesimError(f"LPIPS pair {k + i}: real image is {x.shape[1]}x{x.shape[0]}, fake "
                                    f"{y.shape[1]}x{y.shape[0]}; pairs must have the same size")
        k += len(a)
        for x, y in zip(_same_size_runs(a), _same_size_runs(b)):
            x, y = (_to_device(s, device).float().div_(127.5).sub_(1.0) for s in (x, y))
            out.append(model(x, y).flatten().double().cpu().numpy())
    return np.concatenate(out)


def lpips_distance(real, fake, *, net: str = "alex", weights: str | Path | None = None, batch_size: int = 16,
                   device: str | torch.device = "auto", camera: str | None = None) -> LPIPSResult:
    """Mean LPIPS between paired images of two sources (paired by sorted order; sizes must match)."""
    _check_batch_size(batch_size)
    device = resolve_device(device)
    sources = _source(real, camera, "real"), _source(fake, camera, "fake")
    model = lpips_model(net, weights, device)
    values = lpips_values(*sources, model, batch_size=batch_size, device=device)
    return LPIPSResult(float(values.mean()), float(values.std()), len(values), net, tuple(map(float, values)))
