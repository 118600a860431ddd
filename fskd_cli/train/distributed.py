"""Process-group set-up under torchrun; a plain single-process run needs none of it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.errors import FskdError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

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
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

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

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()
