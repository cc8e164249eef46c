"""Closed-loop speed with and without synthesis: `drivesim run --headless --synth ...` at 256x512.

    python benchmarks/bench_synth.py [--frames 40] [--spade-frames 3] [--device auto]

Builds each generator at its reference size with random weights (speed does not depend on the
weights; spectral norm folded away, as in exported and converted models), saves it as a model
directory, and runs the episode `drivesim run --synth DIR` runs (`episode.assemble`: embedded
world, autopilot, the generator loaded by `load_synthesizer`) after a warm-up. Prints
loop frames/s and the mean synthesis latency.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from drivesim_carla.episode import EpisodeConfig, assemble
from drivesim_carla.models.inputs import InputSpec
from drivesim_carla.training import save_pretrained

COLOR = InputSpec(kind="color", label_space="color")
CITYSCAPES = InputSpec(kind="onehot", label_space="cityscapes_ids", num_classes=35, instance_edges=True)


def generators() -> dict[str, tuple]:
    """name -> (network registry name, constructor, input spec)."""
    from drivesim_carla.training.pix2pix.networks import UnetGenerator
    from drivesim_carla.training.spade.generators import SPADEGenerator

    return {
        "pix2pix unet_256 ngf64": ("pix2pix.UnetGenerator", lambda: UnetGenerator(3, 3, 8, 64), COLOR),
        "spade ngf16": ("spade.SPADEGenerator", lambda: SPADEGenerator(CITYSCAPES.channels, 16, spectral=False),
                        CITYSCAPES),
        "spade ngf64 (Cityscapes)": ("spade.SPADEGenerator",
                                     lambda: SPADEGenerator(CITYSCAPES.channels, 64, spectral=False), CITYSCAPES),
    }


def run(synth_dir: str, frames: int, seed: int, device: str) -> dict:
    # rgb + semantic + instance on the front camera of the all_streams scenario
    config = EpisodeConfig(scenario="all_streams", cameras="front", seed=seed, frames=frames, width=512, height=256,
                           style="flat", synth={"model": synth_dir, "device": device})
    t0 = time.perf_counter()
    with assemble(config) as episode:
        result = episode.run()
    result.summary["total_seconds"] = time.perf_counter() - t0
    return result.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--spade-frames", type=int, default=3, help="frames for the full-size SPADE (slow on a CPU)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, CUDA {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"none": "none"}
        for name, (network, build, spec) in generators().items():
            torch.manual_seed(0)
            dirs[name] = str(save_pretrained(build().eval(), Path(tmp) / name.split()[0] / name.split()[1],
                                             network=network, meta={"input": spec.to_dict()}))
        run("none", 5, args.seed, args.device)  # warm-up: numba kernels, town cache
        print("| synth | frames | loop fps | synth ms/frame |\n|---|---|---|---|")
        for name, d in dirs.items():
            frames = args.spade_frames if "ngf64 (" in name else args.frames
            s = run(d, frames, args.seed, args.device)
            print(f"| {name} | {s['frames']} | {s['fps']:.2f} | {s.get('synth_ms_mean', 0):.1f} |", flush=True)


if __name__ == "__main__":
    main()
