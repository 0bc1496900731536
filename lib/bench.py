"""Benchmarks behind `aclaudio bench ...`: each returns a table and writes it under results/bench/."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

BENCH_DIR = Path("results") / "bench"


def machine() -> str:
    """A short description of where a benchmark ran, stored beside its numbers."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def best_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time of `fn` over `repeats` calls, in seconds (the least disturbed run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def write_table(table: pd.DataFrame, name: str, out_dir: Path | None = None) -> Path:
    """Write a benchmark table as CSV and Markdown (with the machine) and return the CSV path."""
    out_dir = Path(out_dir or BENCH_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / f"{name}.csv"
    table.to_csv(csv, index=False)
    header = f"# bench {name}\n\nmachine: {machine()}\n\n"
    (out_dir / f"{name}.md").write_text(header + table.to_markdown(index=False) + "\n")
    (out_dir / f"{name}.json").write_text(json.dumps(table.to_dict(orient="records"), indent=1))
    return csv
