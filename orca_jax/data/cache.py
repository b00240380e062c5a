"""On-disk cache of tokenized examples: flat token/weight arrays plus offsets, memory-mapped.

Written once by `orca-jax prepare` (which runs the seqio Task); read by the training loader
with NumPy only, so a training host needs neither TensorFlow nor seqio.

Layout of a task's cache directory:
  metadata.json              counts, tokenizer, template, erasing policy, skipped records, dtypes
  tokens.bin                 int32 [total_tokens]
  loss_weights.bin           float32 [total_tokens]
  offsets.bin                int64 [num_examples + 1]
  teacher_topk_ids.bin       int32 [total_tokens, k]     (only when examples carry top-k)
  teacher_topk_logprobs.bin  float32 [total_tokens, k]
  system_ids.bin             int32 [num_examples]: each example's system message, an index into
                             metadata `system_messages` (what it was tokenized with, after erasing)
A mixture's directory holds only `mixture.json`: `{"tasks": {task_name: rate, ...}}`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np

from orca_jax.errors import UserError

FORMAT_VERSION = 1
_ARRAYS = {  # name -> dtype
    "tokens": np.int32,
    "loss_weights": np.float32,
    "teacher_topk_ids": np.int32,
    "teacher_topk_logprobs": np.float32,
}


def write_cache(directory: str, examples: Iterable[dict[str, np.ndarray]], metadata: dict[str, Any]) -> dict[str, Any]:
    """Stream `examples` into `directory`; returns the metadata written (with counts and lengths)."""
    os.makedirs(directory, exist_ok=True)
    files = {name: open(os.path.join(directory, f"{name}.bin"), "wb") for name in ("tokens", "loss_weights")}
    offsets, k, loss_tokens = [0], None, 0
    try:
        for ex in examples:
            ids = np.asarray(ex["ids"], np.int32)
            files["tokens"].write(ids.tobytes())
            weights = np.asarray(ex["loss_weights"], np.float32)
            files["loss_weights"].write(weights.tobytes())
            loss_tokens += int((weights > 0).sum())
            has_topk = "teacher_topk_ids" in ex
            if len(offsets) == 1:
                k = ex["teacher_topk_ids"].shape[1] if has_topk else None
                if has_topk:
                    for name in ("teacher_topk_ids", "teacher_topk_logprobs"):
                        files[name] = open(os.path.join(directory, f"{name}.bin"), "wb")
            if has_topk != (k is not None) or (has_topk and ex["teacher_topk_ids"].shape[1] != k):
                raise UserError(f"{directory}: example {len(offsets) - 1}: teacher top-k must be present with the same k in every example of a task")
            if has_topk:
                files["teacher_topk_ids"].write(np.asarray(ex["teacher_topk_ids"], np.int32).tobytes())
                files["teacher_topk_logprobs"].write(np.asarray(ex["teacher_topk_logprobs"], np.float32).tobytes())
            offsets.append(offsets[-1] + len(ids))
    finally:
        for f in files.values():
            f.close()
    np.asarray(offsets, np.int64).tofile(os.path.join(directory, "offsets.bin"))
    lengths = np.diff(offsets)
    metadata = dict(
        metadata,
        format_version=FORMAT_VERSION,
        num_examples=len(offsets) - 1,
        num_tokens=int(offsets[-1]),
        num_loss_tokens=loss_tokens,
        topk=k,
        max_length=int(lengths.max()) if len(lengths) else 0,
        mean_length=float(lengths.mean()) if len(lengths) else 0.0,
    )
    write_metadata(directory, metadata)
    return metadata


class SystemMessages:
    """The system message of each cached example, as ids into a list of distinct messages."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.ids: list[int] = []

    def add(self, text: str) -> None:
        self.ids.append(self.index.setdefault(text, len(self.index)))

    def write(self, directory: str, metadata: dict[str, Any]) -> None:
        """Write system_ids.bin and list the messages (with example counts) in `metadata`."""
        ids = np.asarray(self.ids, np.int32)
        ids.tofile(os.path.join(directory, "system_ids.bin"))
        counts = np.bincount(ids, minlength=len(self.index)) if len(ids) else np.zeros(len(self.index), np.int64)
        metadata["system_messages"] = [{"text": text, "examples": int(n)} for text, n in zip(self.index, counts)]


def write_metadata(directory: str, metadata: dict[str, Any]) -> None:
    with open(os.path.join(directory, "metadata.json"), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, ensure_ascii=False)


def empty_task_message(task_name: str, metadata: dict[str, Any], extra_reasons: dict[str, int] | None = None) -> str:
    """Why a task has no examples: its files, the records read and the skips per reason."""
    skipped = dict(metadata.get("skipped_per_reason", {}), **(extra_reasons or {}))
    reasons = "; ".join(f"{n} x {reason}" for reason, n in skipped.items()) or "none"
    return (f"task {task_name}: no examples from {', '.join(metadata.get('files', [])) or 'its files'} "
            f"({metadata.get('records_read', 0)} records read; skipped per reason: {reasons})")


def write_mixture(directory: str, rates: dict[str, float]) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "mixture.json"), "w", encoding="utf-8") as f:
        json.dump({"tasks": rates}, f, indent=2)


class ExampleCache:
    """A prepared task's examples, memory-mapped; `example(i)` returns array views."""

    def __init__(self, directory: str):
        meta_path = os.path.join(directory, "metadata.json")
        if not os.path.isfile(meta_path):
            raise UserError(f"{directory}: no prepared cache here (run `orca-jax prepare --task NAME` first)")
        with open(meta_path, encoding="utf-8") as f:
            self.metadata = json.load(f)
        if self.metadata.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{meta_path}: format_version: expected {FORMAT_VERSION}, got {self.metadata.get('format_version')} (re-run prepare)")
        self.directory = directory
        self.offsets = np.fromfile(os.path.join(directory, "offsets.bin"), np.int64)
        self.lengths = np.diff(self.offsets)
        self.k = self.metadata.get("topk")
        # a cache holds one task: all its examples share one source
        self.source_names = [self.metadata.get("task") or os.path.basename(os.path.normpath(directory))]
        system_ids = os.path.join(directory, "system_ids.bin")
        self.system_ids = np.fromfile(system_ids, np.int32) if os.path.isfile(system_ids) else None
        self.arrays = {}
        for name, dtype in _ARRAYS.items():
            path = os.path.join(directory, f"{name}.bin")
            if name.startswith("teacher_topk") and self.k is None:
                continue
            shape = (int(self.offsets[-1]),) + ((self.k,) if name.startswith("teacher_topk") else ())
            self.arrays[name] = np.memmap(path, dtype=dtype, mode="r", shape=shape) if shape[0] else np.zeros(shape, dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    def source(self, i: int) -> int:
        return 0

    def system(self, i: int) -> str | None:
        """The system message example i was tokenized with (None in caches that predate it)."""
        if self.system_ids is None:
            return None
        return self.metadata["system_messages"][int(self.system_ids[i])]["text"]

    def example(self, i: int, start: int = 0, end: int | None = None) -> dict[str, np.ndarray]:
        """Example i (or its tokens [start, end)) as `{"ids", "loss_weights"[, top-k]}`."""
        base = int(self.offsets[i])
        a, b = base + start, base + (int(self.lengths[i]) if end is None else end)
        ex = {"ids": self.arrays["tokens"][a:b], "loss_weights": self.arrays["loss_weights"][a:b]}
        if self.k is not None:
            ex["teacher_topk_ids"] = self.arrays["teacher_topk_ids"][a:b]
            ex["teacher_topk_logprobs"] = self.arrays["teacher_topk_logprobs"][a:b]
        return ex


def read_mixture(directory: str) -> dict[str, float] | None:
    path = os.path.join(directory, "mixture.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)["tasks"]
