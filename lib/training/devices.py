"""Where and how the computation runs: the device, memory format, bfloat16 autocast,
compilation and torch.distributed plumbing.

Without torchrun every function here is a no-op around a single process, so the training
loops read the same whether one process or many run them.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when there is one, else the CPU; any other name as torch spells it.

    On CUDA, float32 matrix products may use TF32, as convolutions do by PyTorch's default:
    float32 runs (amp off) keep float32 weights and activations at tensor-core speed.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return device


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast where the device has it (CUDA, and CPUs with AVX-512 BF16 or AMX)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def init_distributed(device_name: str) -> torch.device:
    """Join the process group torchrun describes (WORLD_SIZE > 1); return this rank's device.

    nccl on GPUs (one per process, LOCAL_RANK), gloo on CPUs. Without torchrun: a no-op.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
    return resolve_device(device_name)


def wrap_distributed(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the model when a process group is active (SyncBatchNorm on GPUs, where it
    exists; on CPUs each process normalises its own share of the batch)."""
    if not is_distributed():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def compiled(model: nn.Module, config) -> nn.Module:
    """What the training steps call: the model, compiled when the config asks."""
    return torch.compile(model) if config.compile else model


def forward(model: nn.Module, x: torch.Tensor, config, device: torch.device, **options):
    """The model on a batch, in the config's memory format and precision."""
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, config.amp):
        return model(x, **options)
