"""Process-group set-up under torchrun; a plain single-process run needs none of it.

Besides the training backend (NCCL on CUDA, gloo on the CPU), a run with several processes keeps a gloo group
for the few things the processes must agree on outside the model: whether the output folder was claimed
(:meth:`Dist.share`) and whether any process was asked to stop (:meth:`Dist.max`). These move one small CPU
object or integer, so they never wait for the GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..core.errors import FskdError

#: loader processes per training process when the recipe leaves ``data.workers`` unset (the README measures
#: one worker feeding an iResNet-50 step at ~2,000 img/s; more only adds headroom)
MAX_AUTO_WORKERS = 8


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    cpu_group: Any = None  # the gloo group for agreement (None: the default group, when it is gloo)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        cpu_group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", "1")), cpu_group)

    def device(self, wanted: str) -> torch.device:
        """The recipe's ``device`` (auto, cpu, cuda, cuda:N) for this process; plain ``cuda`` is the local rank's GPU."""
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        if not wanted.startswith("cuda"):
            return torch.device(wanted)
        if not torch.cuda.is_available():
            raise FskdError(f"device {wanted}: CUDA is not available on this machine; use --device cpu or auto")
        index = int(wanted.partition(":")[2] or self.local_rank)
        if index >= torch.cuda.device_count():
            raise FskdError(f"device {wanted}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)

    def loader_workers(self) -> int:
        """Loader processes for a recipe that does not set ``data.workers``: the CPUs this process may use,
        shared by this machine's training processes, less one for the process itself, at most 8."""
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(0, min(MAX_AUTO_WORKERS, cpus // self.local_world_size - 1))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def share(self, value: Any) -> Any:
        """The main process's ``value`` (any picklable object), on every process."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.cpu_group)
        return box[0]

    def max(self, value: int) -> int:
        """The largest of the processes' ``value``s, on every process (one CPU integer over gloo)."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.cpu_group)
        return int(t.item())
