"""Flat -> textured video translation: the unsupervised Recycle-GAN against CycleGAN, one CPU budget.

Both families translate the embedded world's flat style (domain A) into its textured style
(domain B) from unpaired frames, train for the same CPU budget, and are scored on held-out clips
of a town never trained on by the warping error between consecutive translated frames (recorded
flow, occlusions masked by depth; `drivesim eval warp`), beside the same figure for the untranslated
clips. The translated frames are also scored for semantic consistency: a segmenter trained on
labelled frames of domain B (textured) reads them, and their mIoU against the clips' labels says how
much of the layout survived translation (`drivesim eval miou --images`; the FCN score of the
pix2pix and CycleGAN papers, with our own segmenter standing in for theirs).

    python benchmarks/exp_recycle.py --out runs/exp_recycle
    python benchmarks/exp_recycle.py --quick          # a smoke run of a few minutes, same code path

1. Records domain A (flat) for `--a-seeds`, domain B (textured) for `--b-seeds`, `--frames` frames
   each, and `--heldout-frames` flat frames of `--heldout-seed` with rgb, semantic, depth and flow.
   Recordings are cached in OUT/data.
2. Each family trains for `--budget-min` CPU minutes (user + system of the training process): two
   calibration runs of n and 2n steps give seconds per step, then `steps = budget / (s/step)`.
   Both get the same architecture and data options (size, no crop or flip, batch 1, ngf, ndf,
   `--n-blocks` ResNet blocks, no held-out tail) and their own recipe otherwise: CycleGAN's
   lambda_A/B 10, identity 0.5, pool 50, decay after half the steps; Recycle-GAN's README recipe
   (spatial and recycle losses 10, plain cycle 0, pool 0, constant rate) without its VGG content loss
   (`lambda_content=0`: no VGG19 weights can be downloaded here).
3. The segmenter (unless `--segmenter DIR` names one, or `--segmenter-steps 0`): `drivesim train
   advent --set method=source_only` on domain B's seeds recorded again with labels, `--segmenter-steps`
   steps, ResNet-18 DeepLab-v2 from scratch at the same size.
4. Scores: warping error (L1 on [0, 1], visible pixels, mean over consecutive pairs) of each
   generator run as `--synth` runs it, and of the source frames; mIoU of the translated frames, of
   the untranslated flat frames (the domain gap the translation should close) and of the same
   held-out scenes recorded in the textured style (the segmenter's ceiling).

Progress to stderr; the table and the commands to stdout; OUT/results.json holds everything;
OUT/samples.png shows held-out frames and their translations.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _experiment import complete, drivesim, parse_size, say, set_args

from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.session import Session

CAMERA = "front"
FAMILIES = ("cyclegan", "recycle")
NOTE = ("lambda_content=0 for Recycle-GAN: its VGG content loss needs pretrained VGG19 weights, which cannot be "
        "downloaded on this machine")


# ----- 1. recordings ------------------------------------------------------------------------------------
def recording(folder: Path, seed: int, frames: int, size: tuple[int, int], style: str, streams: str) -> Path:
    h, w = size
    path = folder / f"{style}_seed{seed}_{frames}f_{h}x{w}_{streams.replace('+', '-')}.h5"
    if complete(path):
        say(f"reusing {path}")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("partial_" + path.name)
    drivesim(["record", "--seed", str(seed), "--frames", str(frames), "--width", str(w), "--height", str(h),
              "--style", style, "--cameras", f"{CAMERA}:{streams}", "--quiet", "--out", str(tmp), "--overwrite"])
    os.replace(tmp, path)
    return path


# ----- 2. training --------------------------------------------------------------------------------------
def options(args) -> dict:
    return {"size": list(args.size), "crop": None, "flip": False, "batch_size": 1, "device": "cpu",
            "val_fraction": 0.0, "seed": args.seed, "ngf": args.ngf, "ndf": args.ndf, "n_blocks": args.n_blocks}


def family_options(family: str, args) -> dict:
    opts = options(args)
    if family == "recycle":
        opts["lambda_content"] = 0
    return opts


def train_command(family: str, opts: dict, a: list[Path], b: list[Path], run: Path) -> list[str]:
    return ["train", family, *[x for p in a for x in ("--data", str(p))], *[x for p in b for x in ("--target", str(p))],
            *set_args(opts), "--out", str(run), "--quiet"]


def train(family: str, a: list[Path], b: list[Path], out: Path, args) -> dict:
    """Calibrate, then train `family` for the budget (or reuse a finished run of the same key)."""
    opts = family_options(family, args)
    run, record = out / "runs" / family, out / "runs" / f"{family}.json"
    key = {"options": opts, "a": [str(p) for p in a], "b": [str(p) for p in b], "budget_min": args.budget_min}
    if not args.retrain and record.is_file() and (run / "summary.json").is_file():
        info = json.loads(record.read_text())
        if info.get("key") == key:
            say(f"reusing the finished {family} run in {run} ({info['steps']} steps)")
            return info
    used = []
    for n in (args.calibration_steps, 2 * args.calibration_steps):
        cal = out / "calibrate" / family
        shutil.rmtree(cal, ignore_errors=True)
        used.append(drivesim(train_command(family, {**opts, "steps": n}, a, b, cal))[0])
    sps = seconds_per_step(used, args.calibration_steps)
    steps = max(1, int(args.budget_min * 60 / sps))
    say(f"{family}: {sps:.3g} CPU s/step -> {steps} steps for {args.budget_min:g} min")
    shutil.rmtree(run, ignore_errors=True)
    cpu, command = drivesim(train_command(family, {**opts, "steps": steps}, a, b, run))
    info = {"key": key, "family": family, "seconds_per_step": sps, "steps": steps, "train_seconds": cpu,
            "command": command}
    record.write_text(json.dumps(info, indent=2) + "\n")
    return info


def seconds_per_step(used: list[float], n: int) -> float:
    """From the CPU seconds of n and 2n steps: their difference over n (start-up, data loading and the
    final save cancel out); when noise swallows the difference, the longer run's mean (an upper bound)."""
    diff = used[1] - used[0]
    return diff / n if diff > 0.2 * used[1] else used[1] / (2 * n)


def segmenter(data: Path, out: Path, args) -> Path | None:
    """The domain-B segmenter that scores translations: `--segmenter`, or one trained here (cached)."""
    if args.segmenter is not None or args.segmenter_steps <= 0:
        return args.segmenter
    labelled = [recording(data, s, args.frames, args.size, "textured", "rgb+semantic") for s in args.b_seeds]
    n = args.segmenter_steps
    opts = {"method": "source_only", "steps": n, "backbone": "resnet18", "width": args.segmenter_width,
            "pretrained": False, "size": list(args.size), "batch_size": 4, "lr": 2.5e-3, "val_fraction": 0.0,
            "device": "cpu", "seed": 0, "log_every": 10, "save_every": n, "image_every": max(n // 4, 1),
            "camera": CAMERA}
    run, record = out / "runs" / "segmenter", out / "runs" / "segmenter.json"
    key = {"options": opts, "data": [str(p) for p in labelled]}
    if not args.retrain and record.is_file() and (run / "summary.json").is_file():
        if json.loads(record.read_text()).get("key") == key:
            say(f"reusing the finished segmenter run in {run}")
            return run
    shutil.rmtree(run, ignore_errors=True)
    cpu, command = drivesim(["train", "advent", *[x for p in labelled for x in ("--data", str(p))],
                             *set_args(opts), "--out", str(run), "--quiet"])
    record.write_text(json.dumps({"key": key, "train_seconds": cpu, "command": command}, indent=2) + "\n")
    return run


# ----- 3. scores ----------------------------------------------------------------------------------------
def warp_score(model: Path, held: Path) -> dict:
    from drivesim_carla.training.recycle.temporal import warping_error

    r = warping_error(model, [held], camera=CAMERA, device="cpu")
    return {"warping_error": r.warping_error, "input_warping_error": r.input_warping_error, "pairs": r.pairs,
            "valid_fraction": r.valid_fraction,
            "command": shlex.join(["drivesim", "eval", "warp", "--model", str(model), "--data", str(held),
                                   "--camera", CAMERA])}


def translate_all(model: Path, held: Path, folder: Path) -> list[np.ndarray]:
    """Every held-out frame through the generator as the loop runs it, as zero-padded PNGs."""
    import cv2

    from drivesim_carla.synth import load_synthesizer
    from drivesim_carla.training.recycle.temporal import SessionFrames, synth_translator

    synth = load_synthesizer(str(model), device="cpu", precision="fp32")
    source = SessionFrames(held, CAMERA, synth.streams, use_flow=False)
    translate = synth_translator(synth, CAMERA)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(len(source)):
        img = translate(source.frame(i))
        cv2.imwrite(str(folder / f"{i:06d}.png"), img[..., ::-1])
        out.append(img)
    return out


def miou_score(segmenter: Path, held: Path, images: Path | None) -> dict:
    from drivesim_carla.training.advent.eval_miou import score_segmenter

    scores, n = score_segmenter(segmenter, held, camera=CAMERA, images=images, device="cpu")
    cmd = ["drivesim", "eval", "miou", "--model", str(segmenter), "--data", str(held), "--camera", CAMERA]
    cmd += ["--images", str(images)] if images else []
    return {"miou": scores.miou, "frames": n, "command": shlex.join(cmd)}


def sample_grid(columns: dict[str, list[np.ndarray]], rows: list[int], path: Path) -> None:
    import cv2

    h, w = columns[next(iter(columns))][0].shape[:2]
    gap, title = 2, np.full((18, len(columns) * (w + 2) - 2, 3), 255, np.uint8)
    for c, name in enumerate(columns):
        cv2.putText(title, name, (c * (w + gap) + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    lines = [title]
    for i in rows:
        tiles = sum(([columns[k][i], np.full((h, gap, 3), 255, np.uint8)] for k in columns), [])[:-1]
        lines += [np.full((gap, title.shape[1], 3), 255, np.uint8), np.concatenate(tiles, 1)]
    cv2.imwrite(str(path), np.concatenate(lines, 0)[..., ::-1])


# ----- main ---------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--budget-min", type=float, default=None, help="training CPU minutes per family [20; quick 0.2]")
    ap.add_argument("--out", type=Path, default=None, help="output folder [runs/exp_recycle(_quick)]")
    ap.add_argument("--a-seeds", default="0,1", help="world seeds of domain A (flat) [0,1]")
    ap.add_argument("--b-seeds", default="2,3", help="world seeds of domain B (textured) [2,3]")
    ap.add_argument("--frames", type=int, default=None, help="frames per training seed [300; quick 16]")
    ap.add_argument("--seed", type=int, default=0, help="training seed of both families (initialisation, data "
                    "order, synthetic flow) [0]")
    ap.add_argument("--heldout-seed", type=int, default=100)
    ap.add_argument("--heldout-frames", type=int, default=None, help="held-out frames [120; quick 10]")
    ap.add_argument("--size", type=parse_size, default=None,
                    help="HxW of recordings and training [128x256; quick 64x128]")
    ap.add_argument("--ngf", type=int, default=None, help="generator width [32; quick 8]")
    ap.add_argument("--ndf", type=int, default=None, help="discriminator width [32; quick 8]")
    ap.add_argument("--n-blocks", type=int, default=None, help="ResNet blocks of both families [6; quick 2]")
    ap.add_argument("--calibration-steps", type=int, default=None, help="steps of the timing runs [6; quick 5]")
    ap.add_argument("--segmenter", type=Path, default=None,
                    help="a domain-B segmenter (drivesim train advent run or model) for mIoU [trained here]")
    ap.add_argument("--segmenter-steps", type=int, default=None,
                    help="steps of the segmenter trained here; 0 skips mIoU [1500; quick 5]")
    ap.add_argument("--segmenter-width", type=int, default=None, help="its ResNet-18 base width [16; quick 4]")
    ap.add_argument("--threads", type=int, default=None, help="torch threads [torch's default]; 1 holds up better "
                    "on a shared machine")
    ap.add_argument("--retrain", action="store_true", help="train again even where a finished run matches")
    ap.add_argument("--quick", action="store_true", help="smoke run: few frames, tiny nets, a tiny budget")
    args = ap.parse_args()
    defaults = {"budget_min": (20.0, 0.2), "frames": (300, 16), "heldout_frames": (120, 10),
                "size": ((128, 256), (64, 128)), "ngf": (32, 8), "ndf": (32, 8), "n_blocks": (6, 2),
                "calibration_steps": (6, 5), "segmenter_steps": (1500, 5), "segmenter_width": (16, 4),
                "out": (Path("runs/exp_recycle"), Path("runs/exp_recycle_quick"))}
    for k, pair in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, pair[args.quick])
    args.a_seeds = [int(s) for s in args.a_seeds.split(",") if s.strip()]
    args.b_seeds = [int(s) for s in args.b_seeds.split(",") if s.strip()]
    if args.heldout_seed in args.a_seeds + args.b_seeds:
        ap.error(f"--heldout-seed {args.heldout_seed} is also a training seed")
    if args.heldout_frames < 2:
        ap.error("--heldout-frames must be at least 2 (the warping error compares consecutive frames)")
    return args


def main() -> None:
    args = parse_args()
    out = args.out
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from drivesim_carla.models.registry import resolve
    from drivesim_carla.training.core.config import load_config
    from drivesim_carla.training.core.registry import FAMILIES as REGISTRY

    for family in FAMILIES:  # a bad size or width fails before anything is recorded
        load_config(resolve(REGISTRY, family, "model family").Config, None, family_options(family, args))
    data = out / "data"
    a = [recording(data, s, args.frames, args.size, "flat", "rgb") for s in args.a_seeds]
    b = [recording(data, s, args.frames, args.size, "textured", "rgb") for s in args.b_seeds]
    held = recording(data, args.heldout_seed, args.heldout_frames, args.size, "flat", "rgb+semantic+depth+flow")
    seg = segmenter(data, out, args)

    rows, columns = [], {"flat (A)": None}
    for family in FAMILIES:
        info = train(family, a, b, out, args)
        run = out / "runs" / family
        say(f"scoring {family} on {len(Session(held))} held-out frames")
        row = {"method": family, "steps": info["steps"], "train_seconds": info["train_seconds"],
               "seconds_per_step": info["seconds_per_step"], "train_command": info["command"],
               **warp_score(run, held)}
        frames = translate_all(run, held, out / "translated" / family)
        columns[family] = frames
        if seg is not None:
            row["miou"] = miou_score(seg, held, out / "translated" / family)
        rows.append(row)
    source = {"method": "source frames (flat, untranslated)", "warping_error": rows[0]["input_warping_error"]}
    rows.insert(0, source)
    if seg is not None:
        source["miou"] = miou_score(seg, held, None)
        held_b = recording(data, args.heldout_seed, args.heldout_frames, args.size, "textured", "rgb+semantic")
        rows.insert(1, {"method": "the same scenes recorded textured (segmenter's ceiling)",
                        "miou": miou_score(seg, held_b, None)})
    held_session = Session(held)
    columns["flat (A)"] = [held_session.read(i, CAMERA, ("rgb",)).rgb for i in range(len(held_session))]
    n = len(held_session)
    sample_grid(columns, sorted({0, n // 3, 2 * n // 3, n - 1}), out / "samples.png")
    results = {"rows": rows, "seed": args.seed, "budget_min": args.budget_min, "size": list(args.size),
               "a_seeds": args.a_seeds, "b_seeds": args.b_seeds, "heldout_seed": args.heldout_seed, "heldout_frames": n,
               "frames": args.frames, "options": options(args), "note": NOTE,
               "experiment_command": shlex.join(["python", *sys.argv]),
               "segmenter": str(seg) if seg is not None else None, "segmenter_command": _segmenter_command(seg),
               "loadavg": os.getloadavg(), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


def _segmenter_command(seg: Path | None) -> str | None:
    record = seg.parent / f"{seg.name}.json" if seg is not None else None
    return json.loads(record.read_text())["command"] if record is not None and record.is_file() else None


def report(r: dict) -> str:
    has_miou = any("miou" in row for row in r["rows"])
    head = "| method | steps | train CPU min | warping error | mIoU |" if has_miou else \
        "| method | steps | train CPU min | warping error |"
    lines = [f"Flat -> textured translation at {r['size'][0]}x{r['size'][1]}: trained on flat seeds "
             f"{','.join(map(str, r['a_seeds']))} and textured seeds {','.join(map(str, r['b_seeds']))} "
             f"({r['frames']} frames each), scored on {r['heldout_frames']} flat frames of seed {r['heldout_seed']} "
             f"(recorded flow); {r['budget_min']:g} CPU minutes of training per family, training seed "
             f"{r.get('seed', 0)}.", "", head,
             "|---|---:|---:|---:|" + ("---:|" if has_miou else "")]
    for row in r["rows"]:
        steps = str(row.get("steps", "-"))
        minutes = f"{row['train_seconds'] / 60:.1f}" if "train_seconds" in row else "-"
        warp = f"{row['warping_error']:.5f}" if "warping_error" in row else "-"
        cells = [row["method"], steps, minutes, warp]
        if has_miou:
            cells.append(f"{100 * row['miou']['miou']:.2f}" if "miou" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{r['note']}.", "", "Commands:", "```", r["experiment_command"]]
    if r.get("segmenter_command"):
        lines.append(r["segmenter_command"])
    for row in r["rows"]:
        for key in ("train_command", "command"):
            if key in row:
                lines.append(row[key])
        if "miou" in row:
            lines.append(row["miou"]["command"])
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except DrivesimError as e:
        raise SystemExit(f"exp_recycle: {e}") from None
