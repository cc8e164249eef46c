"""Semantic -> textured frames: pix2pix, SPADE, SemDisc and a mean-colour baseline, one CPU budget.

Each family trains for the same CPU budget; all are compared with painting every class its
mean colour, by held-out PSNR / SSIM, as a Markdown table (stdout) and JSON.

    python benchmarks/exp_synthesis.py --out runs/exp_synthesis --samples docs/synthesis_samples.png
    python benchmarks/exp_synthesis.py --quick          # a smoke run of minutes, same code path

1. Records the embedded world in its textured style at `--size` (h x w; default 128x256), camera
   `front` with rgb + semantic + instance: `--frames` frames for each of `--train-seeds` and
   `--heldout-frames` of `--heldout-seed`, a town and traffic never trained on. Recordings are
   cached in OUT/data and reused by later runs.
2. Baseline: each CARLA tag painted its mean colour over the training frames.
3. Each family trains for the same CPU budget (`--budget-min` CPU minutes of the training process,
   user + system, so other load on the machine does not change what a family gets): two short
   calibration runs of n and 2n steps give CPU seconds per step from their difference (start-up,
   data loading and the final save cancel out), then `steps = budget / seconds_per_step`, so the
   linear learning-rate decay completes.
   Every family gets the same options where it has the knob: the size, batch 1, no crop, device
   cpu, ngf / ndf, `lambda_vgg=0` (no VGG19 weights can be downloaded here), no held-out tail of
   the training data (`val_fraction=0`); labels are CARLA tags (one-hot, plus instance edges where
   the family takes them) or CARLA's palette of them (pix2pix's colour input). The family's
   reference recipe for everything else. A finished run with the same options and budget in
   OUT/runs is reused (`--retrain` trains again).
4. Every generator (`training.from_pretrained`, in eval mode, its input encoded as its model
   card says) runs on all held-out frames; PSNR and SSIM are per frame, then averaged. (Eval mode
   is how the bridge runs them; the pix2pix reference tests with batch statistics unless `--eval`.)

Progress goes to stderr; the table and the commands that made it to stdout; OUT/results.json holds
the same plus calibration figures and the machine's load. With `--threads 1` a CPU minute is a
wall-clock minute on an idle core. The full run takes about three budgets
plus 10-20 minutes (recording, calibration, evaluation: a SPADE step costs ~10x a pix2pix one
at ngf 32, its SPADE blocks keeping the reference's 128 hidden channels at full resolution).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _experiment import CLI, complete, drivesim, parse_size, say, set_args, shown
from torch.utils.data import DataLoader

from drivesim_carla.errors import DrivesimError
from drivesim_carla.labels import NUM_TAGS, colorize
from drivesim_carla.models.inputs import InputSpec, encode_input
from drivesim_carla.models.pretrained import read_card
from drivesim_carla.models.registry import resolve
from drivesim_carla.recorders.datasets import PairedDataset
from drivesim_carla.recorders.session import Session
from drivesim_carla.training import from_pretrained
from drivesim_carla.training.core.config import load_config
from drivesim_carla.training.core.registry import FAMILIES
from drivesim_carla.training.metrics import psnr, ssim

CAMERA = "front"
STYLE = "textured"
VGG_NOTE = "lambda_vgg=0 for every family: no VGG19 weights can be downloaded on this machine"
GRID_ROWS = 4


# ----- 1. recordings ----------------------------------------------------------------------------------
def recording(folder: Path, seed: int, frames: int, size: tuple[int, int]) -> tuple[Path, str]:
    """A cached session of `frames` frames of seed `seed`: (path, the command that records it)."""
    h, w = size
    path = folder / f"seed{seed}_{frames}f_{h}x{w}_{STYLE}.h5"
    args = ["record", "--seed", str(seed), "--frames", str(frames), "--width", str(w), "--height", str(h),
            "--style", STYLE, "--cameras", f"{CAMERA}:rgb+semantic+instance", "--quiet"]
    if complete(path):
        say(f"reusing {path}")
        return path, shown([*CLI, *args, "--out", str(path)])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("partial_" + path.name)
    drivesim([*args, "--out", str(tmp), "--overwrite"])
    os.replace(tmp, path)
    if len(Session(path)) < frames:
        say(f"note: {path.name} ended early (route end) at {len(Session(path))} frames")
    return path, shown([*CLI, *args, "--out", str(path)])


# ----- 2. the mean-colour baseline ----------------------------------------------------------------------
def mean_colours(files: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """`256 3` mean training colour of each CARLA tag in [-1, 1]; unseen tags get the overall mean."""
    sums, counts = torch.zeros(256, 3, dtype=torch.float64), torch.zeros(256, dtype=torch.float64)
    for batch in _loader(PairedDataset(files, camera=CAMERA, labels="carla", size=size)):
        tags = batch["label"].flatten()
        pixels = batch["image"].permute(0, 2, 3, 1).reshape(-1, 3).double()
        sums.index_add_(0, tags, pixels)
        counts.index_add_(0, tags, torch.ones_like(tags, dtype=torch.float64))
    overall = sums.sum(0) / counts.sum()
    lut = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], overall)
    return lut.float()


def _loader(ds) -> DataLoader:
    return DataLoader(ds, batch_size=8, shuffle=False, num_workers=0)


# ----- 3. options, calibration, training ----------------------------------------------------------------
def family_options(family: str, args) -> dict:
    """The `--set` options of `family` for this experiment (validated against its config; no steps)."""
    cls = resolve(FAMILIES, family, "model family").Config
    fields = cls.model_fields
    opts = {"size": list(args.size), "crop": None, "batch_size": 1, "device": "cpu", "val_fraction": 0.0,
            "seed": 0}
    # SPADE's norm keeps the reference's 128 hidden channels at full resolution; scale it with ngf (128 at 64)
    for key, value in (("ngf", args.ngf), ("ndf", args.ndf), ("lambda_vgg", 0.0), ("spade_hidden", 2 * args.ngf)):
        if key in fields:
            opts[key] = value
    if "num_downs" in fields:  # U-Nets: as deep as the size allows, at most the recipe's depth
        n = fields["num_downs"].default
        while n > 1 and (args.size[0] % 2 ** n or args.size[1] % 2 ** n):
            n -= 1
        opts["num_downs"] = n
    if "instance_edges" in fields:
        opts["instance_edges"] = True
    try:  # a bad size or width fails here, before anything is recorded
        load_config(cls, None, opts)
    except DrivesimError as e:
        raise SystemExit(f"exp_synthesis: {family} with {' '.join(set_args(opts))}: {e}") from None
    opts.update(_label_options(family, cls, opts))
    return opts


def _label_options(family: str, cls, opts: dict) -> dict:
    """CARLA tags one-hot where the family takes them, else CARLA's palette of them."""
    if "label_space" not in cls.model_fields:
        return {}
    error = None
    for extra in ({"label_space": "carla", "label_nc": NUM_TAGS}, {"label_space": "carla_color"}):
        extra = {k: v for k, v in extra.items() if k in cls.model_fields}
        try:
            load_config(cls, None, {**opts, **extra})
            return extra
        except DrivesimError as e:
            error = e
    raise SystemExit(f"exp_synthesis: {family} takes neither CARLA tags nor their colours as labels ({error})")


def train_command(family: str, opts: dict, data: list[Path], run: Path) -> list[str]:
    return ["train", family, *[a for p in data for a in ("--data", str(p))], *set_args(opts), "--out", str(run),
            "--quiet"]


def calibrate(family: str, opts: dict, data: list[Path], run: Path, steps: int) -> float:
    """CPU seconds per training step: runs of `steps` and `2 * steps` steps, differenced."""
    used = []
    for n in (steps, 2 * steps):
        shutil.rmtree(run, ignore_errors=True)
        used.append(drivesim(train_command(family, {**opts, "steps": n}, data, run))[0])
    return max(used[1] - used[0], 1e-3) / steps


def train(family: str, opts: dict, data: list[Path], out: Path, args) -> dict:
    """Calibrate then train `family` for the budget (or reuse a finished run of the same options)."""
    run, record = out / "runs" / family, out / "runs" / f"{family}.json"
    key = {"options": opts, "data": [str(p) for p in data], "budget_min": args.budget_min, "threads": args.threads}
    if not args.retrain and record.is_file() and (run / "summary.json").is_file():
        info = json.loads(record.read_text())
        if info.get("key") == key:
            say(f"reusing the finished {family} run in {run} ({info['steps']} steps)")
            return info
    sps = calibrate(family, opts, data, out / "calibrate" / family, args.calibration_steps)
    steps = max(1, int(args.budget_min * 60 / sps))
    say(f"{family}: {sps:.3g} s/step -> {steps} steps for {args.budget_min:g} min")
    shutil.rmtree(run, ignore_errors=True)
    record.unlink(missing_ok=True)
    full = {**opts, "steps": steps}
    cpu, command = drivesim(train_command(family, full, data, run))
    summary = json.loads((run / "summary.json").read_text())
    info = {"key": key, "family": family, "seconds_per_step": sps, "steps": summary["steps"],
            "train_seconds": cpu, "wall_seconds": summary["seconds"], "options": full, "command": command}
    record.write_text(json.dumps(info, indent=2) + "\n")
    return info


# ----- 4. evaluation --------------------------------------------------------------------------------------
def evaluate(predict: Callable[[dict], torch.Tensor], ds: PairedDataset, keep: set[int]) -> dict:
    """Mean PSNR / SSIM of `predict` over every frame of `ds`, and its images of frames `keep`."""
    p, s, kept, i = [], [], {}, 0
    with torch.no_grad():
        for batch in _loader(ds):
            fake, real = predict(batch).float(), batch["image"]
            p.append(psnr(fake, real))
            s.append(ssim(fake, real))
            for j in range(len(fake)):
                if i + j in keep:
                    kept[i + j] = fake[j]
            i += len(fake)
    p, s = torch.cat(p), torch.cat(s)
    return {"psnr": float(p.mean()), "ssim": float(s.mean()), "psnr_std": float(p.std()),
            "ssim_std": float(s.std()), "frames": len(p), "images": kept}


def generator_predict(run: Path) -> tuple[Callable[[dict], torch.Tensor], InputSpec]:
    """The trained generator of a run as batch -> image, and the input it takes."""
    net = from_pretrained(run)
    spec = InputSpec.from_dict(read_card(run).meta["input"])
    return (lambda batch: net(encode_input(batch["label"], spec, batch.get("instance")))), spec


def heldout(path: Path, spec: InputSpec, size: tuple[int, int]) -> PairedDataset:
    return PairedDataset(path, camera=CAMERA, labels=spec.label_space, instance=spec.needs_instance, size=size)


# ----- output -------------------------------------------------------------------------------------------
def budget_notes(rows: list[dict], budget_min: float) -> list[str]:
    """Where a run's training time missed the budget by more than a quarter, say so."""
    notes = []
    for r in rows:
        if r["train_seconds"] is None:
            continue
        minutes = r["train_seconds"] / 60
        if r["steps"] < 4:
            notes.append(f"{r['method']}: the budget buys only {r['steps']} step(s) at the calibrated "
                         f"{r['seconds_per_step']:.3g} s/step.")
        elif not 0.75 <= minutes / budget_min <= 1.25:
            notes.append(f"{r['method']}: used {minutes:.1f} CPU min for a {budget_min:g} min budget; the calibration "
                         "missed (e.g. threads contending): rerun with --threads 1 (--retrain).")
    return notes


def table(rows: list[dict]) -> str:
    lines = ["| method | steps | train CPU minutes | PSNR (dB) | SSIM |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        steps = "-" if r["steps"] is None else str(r["steps"])
        minutes = "-" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f}"
        lines.append(f"| {r['method']} | {steps} | {minutes} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    return "\n".join(lines)


def sample_grid(columns: dict[str, dict[int, torch.Tensor]], frames: list[int], path: Path) -> None:
    """Rows = held-out frames, columns = semantic | baseline | models | real, with a title strip."""
    import cv2

    tiles = [[_uint8(columns[name][i]) for name in columns] for i in frames]
    h, w = tiles[0][0].shape[:2]
    gap = 2
    title = np.full((18, len(columns) * (w + gap) - gap, 3), 255, np.uint8)
    for c, name in enumerate(columns):
        cv2.putText(title, name, (c * (w + gap) + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [np.concatenate(sum(([t, np.full((h, gap, 3), 255, np.uint8)] for t in row), [])[:-1], 1)
            for row in tiles]
    sep = np.full((gap, title.shape[1], 3), 255, np.uint8)
    grid = np.concatenate([title] + sum(([sep, r] for r in rows), []), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid[..., ::-1])


def _uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """`3 h w` in [-1, 1] (or `h w 3` uint8) -> `h w 3` uint8."""
    if isinstance(x, np.ndarray):
        return x
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


# ----- main -----------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--families", default="pix2pix,spade,semdisc", help="comma-separated families")
    ap.add_argument("--budget-min", type=float, default=None, help="training minutes per family [12; quick 0.25]")
    ap.add_argument("--out", type=Path, default=None, help="output folder [runs/exp_synthesis(_quick)]")
    ap.add_argument("--train-seeds", default=None, help="comma-separated world seeds to train on [0,1,2; quick 0,1]")
    ap.add_argument("--frames", type=int, default=None, help="frames per training seed [300; quick 24]")
    ap.add_argument("--heldout-seed", type=int, default=100)
    ap.add_argument("--heldout-frames", type=int, default=None, help="held-out frames [100; quick 12]")
    ap.add_argument("--size", type=parse_size, default=(128, 256), help="HxW of recordings and training [128x256]")
    ap.add_argument("--ngf", type=int, default=32, help="generator width of every family that has one")
    ap.add_argument("--ndf", type=int, default=32, help="discriminator width of every family that has one")
    ap.add_argument("--calibration-steps", type=int, default=None, help="steps of the timing run [6; quick 3]")
    ap.add_argument("--samples", type=Path, default=None, help="also write the sample grid PNG here "
                    "(e.g. docs/synthesis_samples.png); it is always written to OUT/samples.png")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of training and evaluation "
                    "[torch's default: one per core]; 1 holds up better on a machine shared with other jobs")
    ap.add_argument("--retrain", action="store_true", help="train again even where a finished run matches")
    ap.add_argument("--quick", action="store_true", help="smoke run: few frames, a tiny budget")
    args = ap.parse_args()
    quick = args.quick
    defaults = {"budget_min": (12.0, 0.25), "train_seeds": ("0,1,2", "0,1"), "frames": (300, 24),
                "heldout_frames": (100, 12), "calibration_steps": (6, 3),
                "out": (Path("runs/exp_synthesis"), Path("runs/exp_synthesis_quick"))}
    for k, pair in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, pair[quick])
    args.train_seeds = [int(s) for s in str(args.train_seeds).split(",") if s.strip()]
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    if args.heldout_seed in args.train_seeds:
        ap.error(f"--heldout-seed {args.heldout_seed} is also a training seed")
    if args.calibration_steps < 2:
        ap.error("--calibration-steps must be at least 2 (the first step is a warm-up)")
    return args


def main() -> None:
    args = parse_args()
    out = args.out
    if args.threads is not None:  # the training subprocesses read the variable, this process the call
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    env = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "loadavg_start": os.getloadavg()}
    for family in args.families:  # fail on a bad family or option before recording anything
        family_options(family, args)
    say(f"recording {len(args.train_seeds)} x {args.frames} training frames and {args.heldout_frames} held out")
    recorded = [recording(out / "data", s, args.frames, args.size) for s in args.train_seeds]
    train_files = [p for p, _ in recorded]
    held_path, held_cmd = recording(out / "data", args.heldout_seed, args.heldout_frames, args.size)

    say("baseline: mean colour per CARLA tag")
    lut = mean_colours(train_files, args.size)
    carla_ds = heldout(held_path, InputSpec(kind="onehot", label_space="carla", num_classes=NUM_TAGS), args.size)
    n = len(carla_ds)
    keep = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(GRID_ROWS, n))})
    base = evaluate(lambda b: lut[b["label"]].permute(0, 3, 1, 2), carla_ds, set(keep))
    rows = [{"method": "mean colour per class", "steps": None, "train_seconds": None, "seconds_per_step": None,
             **{k: v for k, v in base.items() if k != "images"}}]
    columns = {"semantic": {i: colorize(carla_ds[i]["label"].numpy().astype(np.uint8)) for i in keep},
               "mean colour": base["images"]}

    trained = {}
    for family in args.families:
        opts = family_options(family, args)
        info = train(family, opts, train_files, out, args)
        predict, spec = generator_predict(out / "runs" / family)
        say(f"evaluating {family} on {n} held-out frames")
        result = evaluate(predict, heldout(held_path, spec, args.size), set(keep))
        columns[family] = result.pop("images")
        rows.append({"method": family, "steps": info["steps"], "train_seconds": info["train_seconds"],
                     "seconds_per_step": info["seconds_per_step"], **result})
        trained[family] = {k: info[k] for k in ("seconds_per_step", "options", "command")}
    columns["real"] = {i: carla_ds[i]["image"] for i in keep}

    sample_grid(columns, keep, out / "samples.png")
    if args.samples is not None:
        sample_grid(columns, keep, args.samples)
    env["loadavg_end"] = os.getloadavg()
    results = {"rows": rows, "families": trained, "budget_min": args.budget_min, "size": list(args.size),
               "style": STYLE, "train_seeds": args.train_seeds, "heldout_seed": args.heldout_seed,
               "frames_per_seed": [len(Session(p)) for p in train_files], "heldout_frames": n,
               "record_commands": [c for _, c in recorded] + [held_cmd], "note": VGG_NOTE,
               "experiment_command": shlex.join(["python", *sys.argv]), "environment": env,
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


def report(r: dict) -> str:
    frames = "+".join(map(str, r["frames_per_seed"]))
    lines = [f"Semantic -> {r['style']} frames at {r['size'][0]}x{r['size'][1]}: trained on seeds "
             f"{','.join(map(str, r['train_seeds']))} ({frames} frames), evaluated on {r['heldout_frames']} frames "
             f"of seed {r['heldout_seed']}; {r['budget_min']:g} CPU minutes of training per family "
             f"(torch threads: {r['environment']['torch_threads']}; load {r['environment']['loadavg_start'][0]:.1f} "
             "at the start).", "", table(r["rows"]), "", f"{r['note']}.", "", "Commands:", "```",
             r["experiment_command"], *r["record_commands"]]
    notes = budget_notes(r["rows"], r["budget_min"])
    if notes:
        lines[lines.index("Commands:"):lines.index("Commands:")] = [*notes, ""]
    for info in r["families"].values():
        lines.append(f"{info['command']}    # {info['seconds_per_step']:.3g} s/step calibrated")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except DrivesimError as e:
        raise SystemExit(f"exp_synthesis: {e}") from None
