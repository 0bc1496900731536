"""Multi-process pretraining on the CPU (gloo): one DDP step equals the single-process step,
and a torchrun launch of `aclaudio pretrain` trains and evaluates once, on rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aclaudio.data import features, synth
from aclaudio.nn import models, objectives
from aclaudio.nn.augment import AugmentConfig
from aclaudio.training import config, devices, results, runs
from aclaudio.training.step import Augmentation, contrastive_step

pytestmark = pytest.mark.slow  # process groups and torchrun: not in ./run_tests.sh --fast

BATCH = 8


def step_inputs(cfg):
    generator = torch.Generator().manual_seed(11)
    preset = features.PRESETS[cfg.preset]
    shape = (BATCH, 1, preset.n_mels, preset.patch_frames)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def one_step(cfg, v1, v2, step_model, model):
    """The training step on v1, v2 as they are (no augmentation, no normalisation)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.eval()  # BatchNorm on running statistics: per-sample, so the split cannot matter
    objective = objectives.build(cfg.objective, "views", cfg.loss, gather=devices.is_distributed())
    augmentation = Augmentation(
        AugmentConfig.off(), torch.tensor(0.0), torch.tensor(1.0), torch.Generator()
    )
    loss = contrastive_step(
        step_model,
        (v1, v2, v2, v1),
        objective=objective,
        augmentation=augmentation,
        execution=cfg,
        device=torch.device("cpu"),
    ).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), {k: v.detach().clone() for k, v in model.state_dict().items()}


def step_config():
    return config.profile_config("pretrain", "smoke", alpha=0.5, amp=False, channels_last=False)


def ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    cfg = step_config()
    v1, v2 = step_inputs(cfg)
    half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
    model = models.build_contrastive_model(cfg, torch.device("cpu"))
    wrapped = devices.wrap_distributed(model, torch.device("cpu"))
    loss, weights = one_step(cfg, v1[half], v2[half], wrapped, model)
    torch.save({"loss": loss, "weights": weights}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_one_ddp_step_equals_the_single_process_step(tmp_path):
    """Both views go through the model in one forward call, which DDP needs."""
    torch.set_num_threads(1)
    cfg = step_config()
    v1, v2 = step_inputs(cfg)
    model = models.build_contrastive_model(cfg, torch.device("cpu"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    loss, expected = one_step(cfg, v1, v2, model, model)

    mp.spawn(ddp_worker, args=(29617, str(tmp_path / "step")), nprocs=2)
    for rank in range(2):
        result = torch.load(tmp_path / f"step.{rank}", weights_only=True)
        torch.testing.assert_close(result["loss"], loss, rtol=1e-5, atol=1e-6)
        for name, value in expected.items():
            torch.testing.assert_close(result["weights"][name], value, rtol=1e-5, atol=1e-6)
    moved = [name for name in expected if not torch.equal(expected[name], initial[name])]
    assert any("encoder" in name for name in moved) and any("head" in name for name in moved)


def test_torchrun_pretraining(tmp_path):
    data = tmp_path / "data"
    synth.synthesize(data, profile="smoke", seed=0, progress=False)
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "--master_port",
        "29619",
        "-m",
        "aclaudio.cli",
        "pretrain",
        "--profile",
        "smoke",
        "--data-dir",
        str(data),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--set",
        "subset=all",
        "--set",
        "epochs=2",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and all(s["ok"] for s in summaries)
    (run_dir,) = (tmp_path / "runs").glob("pretrain-*")
    run = runs.load_run(run_dir)
    assert run.finished and run.metrics()["epoch"].tolist() == [0, 1]
    assert len(results.load_results(tmp_path / "runs")) == 1  # evaluated and recorded once
