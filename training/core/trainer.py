"""The training loop every family shares.

Seeding, device choice (CUDA when present), mixed precision on CUDA, the task's phases (a GAN's
`d_step` then `g_step`) each with its own optimizer and gradient scaler, linear learning-rate
decay, gradient averaging under `torchrun`, TensorBoard logs (losses, image grids, evaluation),
a progress bar, periodic evaluation on a held-out set, and checkpoints from which `resume`
continues bit-for-bit on CPU.

A run directory:
    config.yaml                  the resolved config (family, data, every option)
    model/                       the inference network: config.json + model.safetensors
    checkpoints/step_XXXXXXXX/   <net>.safetensors for each trained network + state.pt
    tb/                          TensorBoard events
    metrics.jsonl                one line per evaluation
    summary.json                 written when the run ends
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from ...errors import DrivesimError
from ...models.pretrained import load_weights, save_pretrained
from . import distributed as D
from .config import TrainConfig, load_config
from .data import Sources, eval_loader, steps_per_epoch, to_device, train_loader
from .task import Task

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
STATE_FILE = "state.pt"


class Trainer:
    """Runs one family's task over its data into a run directory."""

    def __init__(self, task_cls: type[Task], config: TrainConfig, out: str | Path, sources: Sources, *,
                 resume: bool = False, progress: bool = False):
        self.task_cls, self.config, self.out, self.sources = task_cls, config, Path(out), sources
        self.resume, self.progress = resume, progress
        self.dist = D.init(config.device)
        self.amp_dtype = _amp_dtype(config.amp, self.dist.device)

    # ----- the run ---------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, d = self.config, self.dist
        start_step = self._prepare_dir()
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (then broadcast anyway)
        task = self.task_cls(cfg).to(d.device)
        D.broadcast_module(task, d)
        train_ds, val_ds = self.task_cls.datasets(cfg, self.sources)
        task.bind_data(train_ds, val_ds)
        total = cfg.steps or max(1, round(cfg.epochs * steps_per_epoch(len(train_ds), cfg.batch_size, d.world)))
        task.total_steps = total
        optimizers = task.optimizers()
        missing = set(task.phases) - set(optimizers)
        if missing:
            raise TypeError(f"{type(task).__name__}.optimizers() lacks phases {sorted(missing)}")
        for opt in optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        use_scaler = self.amp_dtype == torch.float16
        scalers = {p: torch.amp.GradScaler(d.device.type, enabled=use_scaler) for p in task.phases}
        torch.manual_seed(cfg.seed + 7919 * d.rank)  # per-rank randomness (dropout, noise) from here on
        if start_step:
            self._load_checkpoint(task, optimizers, scalers, start_step)
        log.info("%s: %d training samples, %s held out; steps %d..%d on %s (amp %s)", self.task_cls.family,
                 len(train_ds), "none" if val_ds is None else len(val_ds), start_step, total, d.device,
                 self.amp_dtype)
        writer = self._writer()
        loader = train_loader(train_ds, cfg, rank=d.rank, world=d.world, start=start_step,
                              pin=d.device.type == "cuda")
        bar = self._bar(start_step, total)
        sums: dict[str, float] = defaultdict(float)
        count, step, t0, interrupted = 0, start_step, time.perf_counter(), False
        last_eval: dict[str, float] = {}
        try:
            with _GracefulStop() as stop:
                batches = iter(loader)
                while step < total and not stop.requested:
                    batch = to_device(next(batches), d.device)
                    task.train()
                    self._set_lr(optimizers, step, total)
                    task.set_step(step)
                    for name, value in self._train_step(task, optimizers, scalers, batch).items():
                        sums[name] += value
                    count += 1
                    step += 1
                    if bar is not None:
                        bar.update(1)
                    if d.main and (step % cfg.log_every == 0 or step == total):
                        means = {k: v / count for k, v in sums.items()}
                        for k, v in means.items():
                            writer.add_scalar(f"train/{k}", v, step)
                        writer.add_scalar("train/lr", next(iter(optimizers.values())).param_groups[0]["lr"], step)
                        if bar is not None:
                            bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
                        sums.clear()
                        count = 0
                    if d.main and (step % cfg.image_every == 0 or step == total):
                        self._log_images(task, batch, writer, step)
                    if val_ds is not None and (step % cfg.eval_every == 0 or step == total):
                        last_eval = self._evaluate(task, val_ds, writer, step)
                    if step % cfg.save_every == 0 or step == total:
                        self._save(task, optimizers, scalers, step)
                if stop.requested and step < total:
                    interrupted = True
                    self._save(task, optimizers, scalers, step)
                    log.warning("interrupted at step %d; saved a checkpoint, continue with --resume", step)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        summary = {"family": self.task_cls.family, "steps": step, "total_steps": total,
                   "seconds": round(time.perf_counter() - t0, 2), "interrupted": interrupted,
                   "device": str(d.device), "world_size": d.world, "train_samples": len(train_ds),
                   "eval": last_eval}
        if d.main:
            _write_json(self.out / "summary.json", summary)
        D.shutdown(d)
        if interrupted:
            raise KeyboardInterrupt
        return summary

    def _train_step(self, task: Task, optimizers, scalers, batch: dict) -> dict[str, float]:
        """One step: every phase's forward, backward, gradient average and update."""
        out = {}
        for phase in task.phases:
            opt, scaler = optimizers[phase], scalers[phase]
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                losses = getattr(task, f"{phase}_step")(batch)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                raise DrivesimError(f"the {phase} loss became {loss.item()} at step {task.step}; lower the learning "
                                    "rate or turn mixed precision off (--set amp=off)")
            scaler.scale(loss).backward()
            D.average_gradients([p for g in opt.param_groups for p in g["params"]], self.dist)
            scaler.step(opt)
            scaler.update()
            out.update({f"{phase}/{k}": float(v.detach()) for k, v in losses.items()})
        return out

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.amp_dtype)

    def _set_lr(self, optimizers, step: int, total: int) -> None:
        """Every group's initial lr times the schedule's factor (see `TrainConfig.lr_policy`)."""
        if self.config.lr_policy == "poly":
            horizon = max(self.config.lr_schedule_steps or total, total)
            factor = (1 - step / horizon) ** self.config.lr_power
        else:  # constant, then linear decay to 0 over the last (1 - lr_decay_start) of the steps
            decay_from = self.config.lr_decay_start * total
            factor = 1.0 if step < decay_from else max(0.0, (total - step) / max(total - decay_from, 1))
        for opt in optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor

    # ----- evaluation and logs ------------------------------------------------------------------
    def _evaluate(self, task: Task, val_ds, writer, step: int) -> dict[str, float]:
        result: dict[str, float] = {}
        if self.dist.main:
            task.eval()
            with torch.no_grad(), self._autocast():
                batches = (to_device(b, self.dist.device) for b in eval_loader(val_ds, self.config))
                result = task.evaluate_batches(batches)
            for k, v in result.items():
                if isinstance(v, (int, float)):  # tables (a confusion matrix) go to metrics.jsonl only
                    writer.add_scalar(f"eval/{k}", v, step)
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **result}) + "\n")
            task.train()
        D.barrier(self.dist)
        return result

    def _log_images(self, task: Task, batch: dict, writer, step: int) -> None:
        import torchvision

        task.eval()
        with torch.no_grad(), self._autocast():
            fake = task.generate(batch)
        panels = task.visuals(batch, fake.float())
        rows = torch.cat([panels[k][:4].float() for k in panels], 0)
        grid = torchvision.utils.make_grid((rows + 1) / 2, nrow=min(4, len(fake)), padding=2).clamp(0, 1)
        writer.add_image(f"samples/{' | '.join(panels)}", grid, step)
        task.train()

    def _writer(self):
        if not self.dist.main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tb"))

    def _bar(self, start: int, total: int):
        if not (self.progress and self.dist.main):
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=start, unit="step", desc=f"train {self.task_cls.family}")

    # ----- run directory and checkpoints ----------------------------------------------------------
    def _prepare_dir(self) -> int:
        """Check the run directory; the step to start from (0, or the last checkpoint's when resuming)."""
        cfg_path = self.out / CONFIG_FILE
        if self.resume:
            last = latest_checkpoint(self.out)
            if last is None:
                raise DrivesimError(f"--resume: {self.out} has no checkpoint to continue from; start a new run "
                                    "without --resume")
            return int(last.name.split("_")[1])
        occupied = self.out.exists() and any(self.out.iterdir())
        D.barrier(self.dist)  # every rank looks before rank 0 writes
        if occupied:
            raise DrivesimError(f"--out {self.out} already holds files; pass --resume to continue that run or "
                                "choose a new folder")
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            record = {"family": self.task_cls.family,
                      "data": {"data": [str(p) for p in self.sources.data],
                               "cityscapes": str(self.sources.cityscapes) if self.sources.cityscapes else None,
                               **{k: [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
                                  for k, v in self.sources.extra.items()}},
                      "config": self.config.model_dump(mode="json")}
            cfg_path.write_text(yaml.safe_dump(record, sort_keys=False))
        D.barrier(self.dist)
        return 0

    def _save(self, task: Task, optimizers, scalers, step: int) -> None:
        """Write checkpoints/step_N (complete before it appears), refresh model/, prune old ones."""
        rng = {"torch": D.gather_tensors(torch.get_rng_state(), self.dist)}
        if self.dist.device.type == "cuda":
            rng["cuda"] = D.gather_tensors(torch.cuda.get_rng_state(self.dist.device).to(self.dist.device), self.dist)
            rng["cuda"] = [t.cpu() for t in rng["cuda"]]
        if self.dist.main:
            ckpt_dir = self.out / "checkpoints"
            final = ckpt_dir / f"step_{step:08d}"
            tmp = ckpt_dir / f".tmp_step_{step:08d}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name, net in task.networks().items():
                save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                          str(tmp / f"{name}.safetensors"))
            state = {"step": step, "family": self.task_cls.family, "world_size": self.dist.world,
                     "optimizers": {p: o.state_dict() for p, o in optimizers.items()},
                     "scalers": {p: s.state_dict() for p, s in scalers.items()}, "rng": rng}
            torch.save(state, tmp / STATE_FILE)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            name, net, meta = task.export()
            save_pretrained(net, self.out / "model", network=name,
                            meta={"family": self.task_cls.family, "step": step, **meta})
            for old in sorted(ckpt_dir.glob("step_*"))[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        D.barrier(self.dist)

    def _load_checkpoint(self, task: Task, optimizers, scalers, step: int) -> None:
        path = self.out / "checkpoints" / f"step_{step:08d}"
        for name, net in task.networks().items():
            load_weights(net, path / f"{name}.safetensors")
        try:
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DrivesimError(f"{path / STATE_FILE}: unreadable training state ({type(e).__name__}); resume from "
                                "an earlier checkpoint by deleting this one") from None
        if state.get("family") != self.task_cls.family:
            raise DrivesimError(f"{path}: a checkpoint of '{state.get('family')}', not '{self.task_cls.family}'")
        if state.get("world_size") != self.dist.world:
            log.warning("resuming a %s-process run on %s processes: the data order changes",
                        state.get("world_size"), self.dist.world)
        for p, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][p])
        for p, scaler in scalers.items():
            scaler.load_state_dict(state["scalers"][p])
        ranks = state["rng"]["torch"]
        torch.set_rng_state(ranks[min(self.dist.rank, len(ranks) - 1)])
        if self.dist.device.type == "cuda" and "cuda" in state["rng"]:
            cuda = state["rng"]["cuda"]
            torch.cuda.set_rng_state(cuda[min(self.dist.rank, len(cuda) - 1)], self.dist.device)


def latest_checkpoint(out: Path) -> Path | None:
    done = sorted(p for p in (out / "checkpoints").glob("step_*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def load_run_config(task_cls: type[Task], out: Path, overrides: dict | None = None) -> tuple[TrainConfig, dict]:
    """The saved config of a run directory (for --resume), with overrides applied, and its data record."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise DrivesimError(f"--resume: {path} not found; {out} is not a training run directory")
    record = yaml.safe_load(path.read_text())
    if not isinstance(record, dict) or record.get("family") != task_cls.family:
        raise DrivesimError(f"--resume: {out} is a run of '{(record or {}).get('family')}', not '{task_cls.family}'")
    return load_config(task_cls.Config, None, {**record["config"], **(overrides or {})}), record.get("data", {})


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise DrivesimError(f"mixed precision ({amp}) runs on CUDA only; use --set amp=off on the CPU")
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


class _GracefulStop:
    """Ctrl-C or SIGTERM (a scheduler's stop) finish the current step, then the loop saves a
    checkpoint and stops; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
