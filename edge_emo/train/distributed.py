"""One training loop for one process or many: torch.distributed as `torchrun` sets it up.

Under `torchrun --nproc-per-node N` (one machine) or `torchrun --nnodes M --rdzv-endpoint HOST:PORT ...`
(several), every process finds RANK, LOCAL_RANK and WORLD_SIZE in its environment and joins the process
group: NCCL on GPUs (one GPU per local rank), gloo on CPUs. Without torchrun the run is world size 1 and
nothing distributed is initialised; the same code path runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int
    local_rank: int  # rank within this machine: picks the GPU, and who extracts features on this machine
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of `values` over all processes (a float64 copy on every process)."""
        total = values.detach().to(self.device, torch.float64)
        if self.world_size > 1:
            dist.all_reduce(total)
        return total.cpu()

    def check_same(self, values: list[float], what: str) -> None:
        """Fail on every rank when the ranks disagree about `values` (e.g. each read a different file)."""
        if self.world_size == 1:
            return
        mine = torch.tensor(values, dtype=torch.float64)
        lowest, highest = mine.to(self.device), mine.to(self.device)
        dist.all_reduce(lowest, dist.ReduceOp.MIN)
        dist.all_reduce(highest, dist.ReduceOp.MAX)
        if not torch.equal(lowest, highest):
            raise RuntimeError(f"the processes disagree about {what}: rank {self.rank} has {values}")


def _device(local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def start() -> Distributed:
    """Join the process group that torchrun describes in the environment; alone when there is none."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        device = _device(int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current()


def current() -> Distributed:
    """The process group this process belongs to (world size 1 when none was started)."""
    if not dist.is_initialized():
        return Distributed(0, 0, 1, _device(0))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Distributed(dist.get_rank(), local_rank, dist.get_world_size(), _device(local_rank))


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def one_thread_unless_told() -> None:
    """Training runs one math thread per process unless OMP_NUM_THREADS says otherwise: on a shared 2-core
    machine a 2 x 256 GRU with two threads per process ran many times slower than with one. To use more
    cores, start more processes (`torchrun --nproc-per-node N -m edge_emo pretrain ...`)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
