"""Data-parallel training under `torchrun`: process group, device, gradient averaging.

Gradients are averaged with explicit all-reduces after each phase's backward (the way NVlabs'
StyleGAN2-ADA trains GANs), not through `DistributedDataParallel` wrappers: a GAN step runs the
discriminator in the generator's phase with its parameters frozen, which DDP's reducer does not
allow without `find_unused_parameters` and an extra graph traversal every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ...models.devices import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` = CUDA when present, else CPU; under torchrun, GPU `local_rank`."""
    device = resolve_device(preference)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def init(preference: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world <= 1:
        return Dist(0, 1, device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), device)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, d: Dist) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not d.enabled:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], d: Dist) -> None:
    """Average the gradients of `params` over ranks in one flat all-reduce (missing grads count as 0)."""
    if not d.enabled:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def gather_tensors(t: torch.Tensor, d: Dist) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor (for per-rank RNG states)."""
    if not d.enabled:
        return [t]
    out = [torch.empty_like(t) for _ in range(d.world)]
    dist.all_gather(out, t)
    return out
