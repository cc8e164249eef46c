"""Frames per second of the image generators at inference: SPADE, pix2pixHD, ASAPNet (and
pix2pix's U-Net when that family is installed).

    python benchmarks/bench_generators.py [--size 256x512] [--repeats 3] [--device cpu|cuda|all]
                                          [--reference /tmp/ref/SPADE] [--threads N] [--min-seconds 1]

Every contender: batch 1, eval mode, `torch.inference_mode`, channels_last, the reference widths
(ngf 64) and the Cityscapes input (35 labels + instance edges; the U-Net takes a colour image),
random weights. On CUDA each also runs under fp16 autocast. The contenders run interleaved: each
repeat times every contender in turn (as many frames as fill --min-seconds, at least one), and
the best repeat counts, since the machine is shared and noisy (the median and the process's CPU
time per frame are printed too).

With --reference (a checkout of github.com/NVlabs/SPADE), NVlabs' SPADEGenerator with the
Cityscapes options runs beside ours at the same weights (ours converted from its state dict,
spectral norm folded) on the same input, as the reference ships (NCHW, spectral norm recomputed
every call) and in channels_last; the largest output difference is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import pickle
import sys
import time
import types
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from drivesim_carla.models.inputs import InputSpec, encode_input
from drivesim_carla.training.spade.convert import convert
from drivesim_carla.training.spade.generators import ASAPNetGenerator, Pix2PixHDGenerator, SPADEGenerator
from drivesim_carla.training.spade.normalization import fold_spectral_norm

SPEC = InputSpec(kind="onehot", label_space="cityscapes_ids", num_classes=35, instance_edges=True)
# the Cityscapes options; crop_size and aspect_ratio follow --size (the reference's grid is fixed by them)
REFERENCE_OPTIONS = dict(label_nc=35, contain_dontcare_label=False, no_instance=False, semantic_nc=36, ngf=64,
                         num_upsampling_layers="more", norm_G="spectralspadesyncbatch3x3", use_vae=False, z_dim=256,
                         output_nc=3, gpu_ids=[])


@dataclass
class Contender:
    name: str
    net: nn.Module
    x: torch.Tensor
    amp: bool = False
    times: list[float] = field(default_factory=list)  # wall seconds per frame, one per repeat
    cpu_times: list[float] = field(default_factory=list)  # CPU seconds (all threads) per frame
    frames: int = 1

    @property
    def device(self) -> str:
        return self.x.device.type + (" fp16" if self.amp else "")

    def run(self, n: int) -> tuple[float, float]:
        """(wall, CPU) seconds per frame over n frames."""
        sync = torch.cuda.synchronize if self.x.is_cuda else (lambda: None)
        amp = torch.autocast("cuda", torch.float16) if self.amp else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                self.net(self.x)
            sync()
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def labels(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A blocky Cityscapes-id label map and instance map, `1 h w`."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 34, (1, h // 16, w // 16), generator=g)
    label = label.repeat_interleave(16, 1).repeat_interleave(16, 2)
    return label, label * 1000 + torch.randint(0, 3, label.shape, generator=g)


def channels_last(net: nn.Module, x: torch.Tensor, device: str) -> tuple[nn.Module, torch.Tensor]:
    return net.to(device).eval().to(memory_format=torch.channels_last), \
        x.to(device).contiguous(memory_format=torch.channels_last)


def import_reference(root: Path):
    """NVlabs/SPADE's `models.networks`; torch's BatchNorm2d stands in for the sync-BN submodule
    when it is missing (the same computation on one device), pickle for `dill`."""
    sys.path.insert(0, str(root))
    if not (root / "models" / "networks" / "sync_batchnorm").is_dir():
        shim = types.ModuleType("models.networks.sync_batchnorm")
        shim.SynchronizedBatchNorm2d = nn.BatchNorm2d
        shim.DataParallelWithCallback = nn.DataParallel
        sys.modules["models.networks.sync_batchnorm"] = shim
    try:
        import dill  # noqa: F401
    except ImportError:
        sys.modules["dill"] = pickle
    import models.networks as networks

    return networks


def reference_pair(root: Path, x: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """(NVlabs' SPADEGenerator, ours converted from its weights), both in eval mode."""
    networks = import_reference(root)
    h, w = x.shape[-2:]
    ref = networks.SPADEGenerator(Namespace(**REFERENCE_OPTIONS, crop_size=w, aspect_ratio=w / h))
    ref.train()
    with torch.no_grad():  # one training pass: spectral vectors and batch statistics off their initial values
        ref(x)
    ref.eval()
    ours = convert(ref.state_dict(), preset="cityscapes").net
    return ref, ours.eval()


def contenders(args, device: str, x: torch.Tensor, colour: torch.Tensor) -> list[Contender]:
    out = []
    amps = (False, True) if device == "cuda" else (False,)
    nets: list[tuple[str, nn.Module, torch.Tensor]] = []
    if args.reference is not None:
        ref, ours = reference_pair(args.reference, x)
        nets += [("spade (ours, converted)", ours, x), ("spade (NVlabs, as shipped)", ref, x),
                 ("spade (NVlabs, channels_last)", copy.deepcopy(ref), x)]
    else:
        spade = fold_spectral_norm(SPADEGenerator(semantic_nc=SPEC.channels, ngf=64, num_upsampling_layers="more"))
        nets.append(("spade (ours)", spade, x))
    nets += [("pix2pixhd", Pix2PixHDGenerator(input_nc=SPEC.channels), x),
             ("asapnet", ASAPNetGenerator(input_nc=SPEC.channels), x)]
    try:
        from drivesim_carla.training.pix2pix.networks import UnetGenerator
    except ImportError:
        pass
    else:
        if all(s % 256 == 0 for s in colour.shape[-2:]):  # unet_256: 8 halvings
            nets.append(("pix2pix unet_256", UnetGenerator(3, 3, 8, 64, "batch", True), colour))
    for name, net, inp in nets:
        if "as shipped" in name:
            net, inp = net.to(device).eval(), inp.to(device)
        else:
            net, inp = channels_last(net, inp, device)
        out += [Contender(name, net, inp, amp) for amp in amps]
    return out


def measure(cs: list[Contender], repeats: int, min_seconds: float) -> None:
    for c in cs:  # warm-up, and frames per timing
        first = c.run(1)[0]
        c.frames = max(1, round(min_seconds / max(c.run(1)[0], 1e-6))) if first < min_seconds else 1
    for r in range(repeats):
        for c in cs:
            wall, cpu = c.run(c.frames)
            c.times.append(wall)
            c.cpu_times.append(cpu)
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{c.name} {c.device} {c.times[-1] * 1e3:.0f} ms "
                                                        f"(CPU {c.cpu_times[-1] * 1e3:.0f})" for c in cs), flush=True)


def report(cs: list[Contender], args, diffs: dict[str, float]) -> None:
    h, w = args.size
    print(f"\ngenerators at {h}x{w}, batch 1, eval, inference_mode; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; best (and median) of {args.repeats} repeats; CPU time "
          "sums every thread")
    print(f"{'generator':32s} {'device':10s} {'ms/frame':>10s} {'frames/s':>9s} {'median ms':>10s} "
          f"{'CPU ms/frame':>13s} {'frames':>7s}")
    for c in cs:
        best, median = min(c.times), sorted(c.times)[len(c.times) // 2]
        print(f"{c.name:32s} {c.device:10s} {best * 1e3:10.1f} {1 / best:9.3f} {median * 1e3:10.1f} "
              f"{min(c.cpu_times) * 1e3:13.1f} {c.frames:7d}")
    by = {(c.name, c.device): (min(c.times), min(c.cpu_times)) for c in cs}
    for dev in sorted({c.device for c in cs}):
        ours = by.get(("spade (ours, converted)", dev))
        for ref in ("spade (NVlabs, as shipped)", "spade (NVlabs, channels_last)"):
            if ours and (ref, dev) in by:
                wall, cpu = by[(ref, dev)][0] / ours[0], by[(ref, dev)][1] / ours[1]
                print(f"{dev}: ours is {wall:.2f}x as fast as {ref.split('(')[1][:-1]} (best wall; {cpu:.2f}x "
                      "in CPU time)")
    for dev, d in diffs.items():
        print(f"{dev}: max |ours - NVlabs| over the frame = {d:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x512", help="HxW")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="frames per timing fill at least this")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="all = the CPU, and CUDA when present")
    parser.add_argument("--reference", type=Path, default=None, help="a checkout of NVlabs/SPADE")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    label, instance = labels(*args.size)
    x = encode_input(label, SPEC, instance)
    colour = torch.rand(1, 3, *args.size) * 2 - 1
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    all_cs, diffs = [], {}
    for device in devices:
        cs = contenders(args, device, x, colour)
        measure(cs, args.repeats, args.min_seconds)
        all_cs += cs
        pair = [c for c in cs if not c.amp and c.name.startswith("spade (") and "channels_last" not in c.name]
        if len(pair) == 2:
            with torch.inference_mode():
                diffs[device] = float((pair[0].net(pair[0].x) - pair[1].net(pair[1].x)).abs().max())
    report(all_cs, args, diffs)


if __name__ == "__main__":
    main()
