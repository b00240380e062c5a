"""Shared by the benchmark scripts: timing, a description of the machine, the JSON record.

Imports only the standard library, so scripts meant for bare accelerator hosts can use it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from typing import Callable


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeats` calls of fn after `warmup` untimed ones (compilation, caches).
    fn must block until its work is done (e.g. end with jax.block_until_ready)."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Like time_calls for several contenders, alternating them call by call, so load from other
    processes on a shared machine falls on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_description(accelerator: str | None = None) -> str:
    """e.g. 'x86_64, 2 cores' or 'NVIDIA H200, x86_64, 16 cores'."""
    host = f"{platform.machine()}, {os.cpu_count()} cores"
    return f"{accelerator}, {host}" if accelerator else host


def write_json(path: str, record: dict) -> dict:
    """Write `record` with the date (UTC) added; returns what was written."""
    record = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), **record}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return record
