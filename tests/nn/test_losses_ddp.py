"""Two gloo processes on the CPU: with gather=True every rank gets the single-process loss of
the global batch, its local inputs world_size times the single-process gradient, and DDP's
averaging turns that into exactly the single-process parameter gradient."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from aclaudio import losses

pytestmark = pytest.mark.slow  # process groups: not in ./run_tests.sh --fast

WORLD, LOCAL, DIM = 2, 3, 5


def global_batch() -> dict[str, torch.Tensor]:
    """The same inputs in every process: views of WORLD * LOCAL clips, logits and labels."""
    g = torch.Generator().manual_seed(0)
    batch = {
        name: torch.randn(WORLD * LOCAL, DIM, generator=g) for name in ("h1", "h2", "z1", "z2")
    }
    batch["logits"] = torch.randn(WORLD * LOCAL, 4, generator=g)
    batch["labels"] = torch.tensor([0, 1, 0, 2, 1, 3])  # positives within and across ranks
    return batch


def head() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(DIM, DIM)


def losses_and_grads(batch: dict[str, torch.Tensor], model: torch.nn.Module, gather: bool):
    """ACL and supervised ACL with their input gradients, and ACL through a shared head."""
    inputs = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in batch.items()}
    self_supervised = losses.acl(
        inputs["h1"], inputs["h2"], inputs["z1"], inputs["z2"], alpha=0.5, margin=1.5, gather=gather
    )
    supervised = losses.supervised_acl(
        inputs["logits"], inputs["h1"], inputs["labels"], alpha=0.5, margin=1.5, gather=gather
    )
    (self_supervised + supervised).backward()
    through_head = losses.acl(
        batch["h1"], batch["h2"], model(batch["h1"]), model(batch["h2"]), gather=gather
    )
    through_head.backward()
    return {
        "acl": self_supervised.detach(),
        "supervised": supervised.detach(),
        "through_head": through_head.detach(),
        **{f"grad_{k}": v.grad for k, v in inputs.items() if v.is_floating_point()},
        "grad_weight": model.module.weight.grad if gather else model.weight.grad,
    }


def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        local = {k: v[rank * LOCAL : (rank + 1) * LOCAL] for k, v in global_batch().items()}
        results = losses_and_grads(local, DistributedDataParallel(head()), gather=True)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_gathered_losses_match_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    single = losses_and_grads(global_batch(), head(), gather=False)
    for rank in range(WORLD):
        ranked = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        for name in ("acl", "supervised", "through_head"):
            torch.testing.assert_close(ranked[name], single[name], rtol=1e-6, atol=1e-6)
        for name in ("h1", "h2", "z1", "z2", "logits"):
            torch.testing.assert_close(
                ranked[f"grad_{name}"], WORLD * single[f"grad_{name}"][rows], rtol=1e-5, atol=1e-6
            )
        # DDP averaged the head's gradient over ranks: the single-process gradient, exactly
        torch.testing.assert_close(
            ranked["grad_weight"], single["grad_weight"], rtol=1e-5, atol=1e-6
        )
