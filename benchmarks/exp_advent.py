"""AdvEnt against source-only: a segmenter learns from one embedded look with labels and is scored
on another look it only saw unlabelled, at the same budget (steps, backbone, size).

    python benchmarks/exp_advent.py --out runs/exp_advent           # the full experiment
    python benchmarks/exp_advent.py --quick                         # a smoke run of a few minutes

1. Records the embedded world (cached in OUT/data, reused by later runs), camera `front`, at
   `--size` (h x w):
   source: `--source-look` (flat:clear) with rgb + semantic, `--frames` frames of each `--world-seeds`;
   target: `--target-look` (textured:night) with rgb only (no labels to leak), the same number of
           frames of other towns (each world seed + 50);
   held-out: `--heldout-frames` of world seed `--heldout-seed`, recorded in both looks with labels
           (the same scenes in both looks, so the two held-out scores differ by the look alone).
2. Trains every `--methods` once per `--seeds` (initialisation and data order) with
   `drivesim train advent`, the same options for all: ResNet-18 DeepLab-v2 (`--width`), from
   scratch (no ImageNet weights can be downloaded here), batch `--batch`, `--steps` steps,
   SGD lr `--lr` (the reference's 2.5e-4 fine-tunes a pretrained network; from scratch, 10x
   learns faster at these budgets), everything else the reference recipe (poly schedule, loss
   weights, discriminator). With `--warm-start N`, each seed first trains source-only for N steps
   and every method continues from that network (`init_checkpoint`), as the reference adapts an
   initialised network. A finished run with the same options is reused (`--retrain` trains again).
3. Scores each model (`drivesim eval miou`: the library call, and the command it equals) on the
   held-out target frames (the bar: AdvEnt above source-only) and on the held-out source frames;
   each method against source-only on the same seed. With `--bn-stats`, the target score again with
   the batch-norm statistics re-estimated on the source, then the target training frames: the
   reference's DeepLab-v2 keeps its batch norms in training mode, so an adapting run's statistics
   mix in target frames while source-only's do not, and this tells that apart from the losses.

stdout: a Markdown table (mean +- std over seeds), per-class target IoU, and the commands;
OUT/results.json holds the same plus every run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
from _experiment import CLI, complete, drivesim, parse_size, say, set_args, shown

from drivesim_carla.recorders.session import Session
from drivesim_carla.training.advent.eval_miou import score_segmenter
from drivesim_carla.training.advent.metrics import class_names
from drivesim_carla.training.advent.task import METHODS, AdventConfig
from drivesim_carla.training.core.config import load_config

CAMERA = "front"
TARGET_SEED_OFFSET = 50


# ----- 1. recordings ----------------------------------------------------------------------------------
def record(folder: Path, seed: int, frames: int, look: tuple[str, str], labels: bool, size) -> tuple[Path, str]:
    """A cached session: (path, the command that records it)."""
    (style, weather), (h, w) = look, size
    streams = "rgb+semantic" if labels else "rgb"
    path = folder / f"seed{seed}_{frames}f_{h}x{w}_{style}_{weather}_{streams.replace('+', '_')}.h5"
    args = ["record", "--seed", str(seed), "--frames", str(frames), "--width", str(w), "--height", str(h),
            "--style", style, "--weather", weather, "--cameras", f"{CAMERA}:{streams}", "--quiet"]
    command = shown([*CLI, *args, "--out", str(path)])
    if complete(path):
        say(f"reusing {path}")
        return path, command
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("partial_" + path.name)
    drivesim([*args, "--out", str(tmp), "--overwrite"])
    os.replace(tmp, path)
    return path, command


# ----- 2. training --------------------------------------------------------------------------------------
def options(args, method: str, seed: int) -> dict:
    opts = {"method": method, "steps": args.steps, "backbone": "resnet18", "width": args.width, "ndf": args.ndf,
            "pretrained": False, "size": list(args.size), "target_size": list(args.size), "batch_size": args.batch,
            "lr": args.lr, "val_fraction": 0.0, "device": "cpu", "seed": seed, "log_every": 10,
            "save_every": args.steps, "image_every": max(args.steps // 4, 1), "camera": CAMERA}
    load_config(AdventConfig, None, opts)  # a bad option fails before anything runs
    return opts


def train(out: Path, method: str, seed: int, opts: dict, source: list[Path], target: list[Path],
          retrain: bool) -> dict:
    run, record_file = out / "runs" / f"{method}_seed{seed}", out / "runs" / f"{method}_seed{seed}.json"
    key = {"options": opts, "source": [str(p) for p in source], "target": [str(p) for p in target]}
    if not retrain and record_file.is_file() and (run / "summary.json").is_file():
        info = json.loads(record_file.read_text())
        if info.get("key") == key:
            say(f"reusing the finished run {run}")
            return info
    shutil.rmtree(run, ignore_errors=True)
    data = [a for p in source for a in ("--data", str(p))] + [a for p in target for a in ("--target", str(p))]
    cpu, command = drivesim(["train", "advent", *data, *set_args(opts), "--out", str(run), "--quiet"])
    summary = json.loads((run / "summary.json").read_text())
    info = {"key": key, "run": str(run), "steps": summary["steps"], "train_cpu_seconds": round(cpu, 1),
            "wall_seconds": summary["seconds"], "command": command}
    record_file.write_text(json.dumps(info, indent=2) + "\n")
    return info


# ----- 3. scores and output ----------------------------------------------------------------------------
def bn_scores(run: Path, held: Path, domains: dict[str, list[Path]], frames: int = 256) -> dict[str, tuple]:
    """Per domain: (target mIoU of `run` with its batch-norm statistics re-estimated on `frames` of
    that domain's training frames (AdaBN; the weights stay), the command). DeepLab-v2's batch norms
    keep updating their statistics in training mode, so AdvEnt's carry target frames and
    source-only's do not; this separates that from the effect of the adaptation losses."""
    out = {}
    for name, paths in domains.items():
        scores, _ = score_segmenter(run, held, camera=CAMERA, batch_size=8, device="cpu", bn_frames=paths,
                                    bn_max=frames)
        command = [*CLI, "eval", "miou", "--model", str(run), "--data", str(held), "--camera", CAMERA,
                   *[a for p in paths for a in ("--bn-frames", str(p))], "--bn-max", str(frames), "--batch-size", "8"]
        out[name] = (scores.miou, shown(command))
    return out


def score(run: Path, held: Path) -> tuple[dict, str]:
    scores, n = score_segmenter(run, held, camera=CAMERA, batch_size=8, device="cpu")
    command = shown([*CLI, "eval", "miou", "--model", str(run), "--data", str(held), "--camera", CAMERA])
    return {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy, "frames": n,
            "iou": [None if v != v else v for v in scores.iou.tolist()]}, command


def _mean_std(values: list[float]) -> str:
    v = 100 * np.asarray(values, float)
    return f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")


def table(rows: dict[str, list[dict]]) -> str:
    lines = ["| method | seeds | steps | train CPU min (mean) | target mIoU (%) | source mIoU (%) | target per seed |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for method, runs in rows.items():
        cpu = np.mean([r["train_cpu_seconds"] for r in runs]) / 60
        per_seed = ", ".join(f"{100 * r['target']['miou']:.2f}" for r in runs)
        lines.append(f"| {method} | {len(runs)} | {runs[0]['steps']} | {cpu:.1f} | "
                     f"{_mean_std([r['target']['miou'] for r in runs])} | "
                     f"{_mean_std([r['source']['miou'] for r in runs])} | {per_seed} |")
    return "\n".join(lines)


def paired_table(rows: dict[str, list[dict]]) -> str:
    """Each method minus source-only on the same seed (same warm start and data order), target mIoU."""
    if "source_only" not in rows:
        return ""
    base = {r["seed"]: r for r in rows["source_only"]}
    keys = [("target", "as trained")] + [(f"bn_{d}", f"BN statistics of {d} frames")
                                         for d in ("source", "target") if f"bn_{d}" in rows["source_only"][0]]
    lines = ["| method | " + " | ".join(f"{label}: mean ± std (wins)" for _, label in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for method, runs in rows.items():
        if method == "source_only":
            continue
        cells = []
        for key, _ in keys:
            diff = 100 * np.array([r[key]["miou"] - base[r["seed"]][key]["miou"] for r in runs if r["seed"] in base])
            std = f" ± {diff.std(ddof=1):.2f}" if len(diff) > 1 else ""
            cells.append(f"{diff.mean():+.2f}{std} ({int((diff > 0).sum())}/{len(diff)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bn_table(rows: dict[str, list[dict]]) -> str:
    if not all("bn_source" in r for runs in rows.values() for r in runs):
        return ""
    lines = ["| method | target mIoU, as trained | with source-frame BN statistics | with target-frame BN statistics |",
             "|---|---:|---:|---:|"]
    for method, runs in rows.items():
        lines.append(f"| {method} | {_mean_std([r['target']['miou'] for r in runs])} | "
                     f"{_mean_std([r['bn_source']['miou'] for r in runs])} | "
                     f"{_mean_std([r['bn_target']['miou'] for r in runs])} |")
    return "\n".join(lines)


def class_table(rows: dict[str, list[dict]]) -> str:
    """Mean target IoU per class over seeds; classes without a defined IoU in every run are left out."""
    names = class_names()
    means = {}
    for method, runs in rows.items():
        per = np.array([[np.nan if v is None else v for v in r["target"]["iou"]] for r in runs], float)
        count = np.isfinite(per).sum(0)
        means[method] = np.where(count > 0, np.nansum(per, 0) / np.maximum(count, 1), np.nan)
    keep = [i for i in range(len(names)) if all(np.isfinite(m[i]) for m in means.values())]
    lines = ["| class | " + " | ".join(means) + " |", "|---|" + "---:|" * len(means)]
    for i in keep:
        lines.append(f"| {names[i]} | " + " | ".join(f"{100 * m[i]:.1f}" for m in means.values()) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--methods", default="source_only,advent", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--seeds", default=None, help="training seeds per method [0,1,2; quick 0]")
    ap.add_argument("--world-seeds", default=None, help="world seeds of the training towns [1,2,3; quick 1]")
    ap.add_argument("--frames", type=int, default=None, help="frames per world seed and domain [400; quick 12]")
    ap.add_argument("--heldout-seed", type=int, default=100)
    ap.add_argument("--heldout-frames", type=int, default=None, help="[200; quick 6]")
    ap.add_argument("--source-look", default="flat:clear", help="STYLE:WEATHER of the labelled source")
    ap.add_argument("--target-look", default="textured:night", help="STYLE:WEATHER of the unlabelled target")
    ap.add_argument("--size", type=parse_size, default=None,
                    help="HxW of recordings and training [64x128; quick 32x64]")
    ap.add_argument("--steps", type=int, default=None, help="training steps of every run [2000; quick 3]")
    ap.add_argument("--width", type=int, default=None, help="ResNet-18 base width [16; quick 4]")
    ap.add_argument("--ndf", type=int, default=None, help="discriminator width [32; quick 4]")
    ap.add_argument("--batch", type=int, default=4, help="batch size [4]")
    ap.add_argument("--lr", type=float, default=2.5e-3, help="segmenter SGD lr [2.5e-3: 10x the reference's]")
    ap.add_argument("--out", type=Path, default=None, help="[runs/exp_advent(_quick)]")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of every run [torch's default]")
    ap.add_argument("--warm-start", type=int, default=0,
                    help="steps of a source-only warm-up per seed that every method then starts from "
                         "(init_checkpoint), as the reference adapts an initialised network [0: from scratch]")
    ap.add_argument("--bn-stats", action="store_true",
                    help="also score every model with its batch-norm statistics re-estimated on source, then "
                         "target training frames (separates the adaptation losses from the statistics)")
    ap.add_argument("--retrain", action="store_true", help="train again even where a finished run matches")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data, model and budget")
    args = ap.parse_args()
    defaults = {"seeds": ("0,1,2", "0"), "world_seeds": ("1,2,3", "1"), "frames": (400, 12),
                "heldout_frames": (200, 6), "size": ((64, 128), (32, 64)), "steps": (2000, 3), "width": (16, 4),
                "ndf": (32, 4), "out": (Path("runs/exp_advent"), Path("runs/exp_advent_quick"))}
    for k, pair in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, pair[args.quick])
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.world_seeds = [int(s) for s in str(args.world_seeds).split(",") if s.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad}; valid: {', '.join(METHODS)}")
    args.source_look, args.target_look = _look(ap, args.source_look), _look(ap, args.target_look)
    if args.heldout_seed in args.world_seeds or args.heldout_seed - TARGET_SEED_OFFSET in args.world_seeds:
        ap.error(f"--heldout-seed {args.heldout_seed} is also a training town")
    return args


def _look(ap, text: str) -> tuple[str, str]:
    style, sep, weather = text.partition(":")
    if not sep:
        ap.error(f"a look is STYLE:WEATHER, e.g. textured:night; got {text!r}")
    return style, weather


def main() -> None:
    args = parse_args()
    out = args.out
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    for method in args.methods:
        options(args, method, args.seeds[0])
    say(f"recording {len(args.world_seeds)} x {args.frames} frames per domain and {args.heldout_frames} held out")
    data = out / "data"
    rec = [record(data, s, args.frames, args.source_look, True, args.size) for s in args.world_seeds]
    rec += [record(data, s + TARGET_SEED_OFFSET, args.frames, args.target_look, False, args.size)
            for s in args.world_seeds]
    held_src = record(data, args.heldout_seed, args.heldout_frames, args.source_look, True, args.size)
    held_trg = record(data, args.heldout_seed, args.heldout_frames, args.target_look, True, args.size)
    source = [p for p, _ in rec[: len(args.world_seeds)]]
    target = [p for p, _ in rec[len(args.world_seeds):]]

    rows: dict[str, list[dict]] = {}
    commands = {"record": [c for _, c in rec] + [held_src[1], held_trg[1]], "train": [], "eval": []}
    for method in args.methods:
        for seed in args.seeds:
            opts = options(args, method, seed)
            if args.warm_start:
                warm = options(args, "source_only", seed) | {"steps": args.warm_start, "save_every": args.warm_start}
                warm_info = train(out, "warmup", seed, warm, source, target, args.retrain)
                opts["init_checkpoint"] = warm_info["run"]
                if warm_info["command"] not in commands["train"]:
                    commands["train"].append(warm_info["command"])
            info = train(out, method, seed, opts, source, target, args.retrain)
            run = Path(info["run"])
            say(f"scoring {run}")
            trg, trg_cmd = score(run, held_trg[0])
            src, src_cmd = score(run, held_src[0])
            row = {**info, "seed": seed, "target": trg, "source": src}
            if args.bn_stats:
                for domain, (miou, cmd) in bn_scores(run, held_trg[0], {"source": source, "target": target}).items():
                    row[f"bn_{domain}"] = {"miou": miou}
                    commands["eval"].append(cmd)
            rows.setdefault(method, []).append(row)
            commands["train"].append(info["command"])
            commands["eval"] += [trg_cmd, src_cmd]

    main_table, classes, paired, bn = table(rows), class_table(rows), paired_table(rows), bn_table(rows)
    looks = f"{':'.join(args.source_look)} -> {':'.join(args.target_look)}"
    results = {"rows": rows, "looks": {"source": args.source_look, "target": args.target_look},
               "size": list(args.size), "world_seeds": args.world_seeds, "heldout_seed": args.heldout_seed,
               "heldout_frames": len(Session(held_trg[0])), "commands": commands,
               "experiment_command": shlex.join(["python", *sys.argv]), "table": main_table,
               "class_table": classes, "paired_table": paired, "bn_table": bn, "cpus": os.cpu_count(),
               "loadavg": os.getloadavg()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    warm = f", after a shared {args.warm_start}-step source-only warm-up" if args.warm_start else ""
    print(f"## AdvEnt vs source-only, {looks}, {args.size[0]}x{args.size[1]}, {args.steps} steps{warm}\n")
    print(main_table)
    if paired:
        print("\nTarget mIoU difference to source-only on the same seed (points; wins = seeds above it):\n")
        print(paired)
    if bn:
        print("\nTarget mIoU (%) with batch-norm statistics re-estimated on 256 training frames of one domain:\n")
        print(bn)
    print("\nTarget IoU per class (%), mean over seeds:\n")
    print(classes)
    print("\nCommands:\n")
    print("\n".join(f"    {c}" for group in commands.values() for c in group))
    print(f"\nResults in {out / 'results.json'}")


if __name__ == "__main__":
    main()
