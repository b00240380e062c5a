"""Prepare a seqio Task or Mixture once: run its preprocessing and cache tokenized examples.

This is the only data step that imports TensorFlow/seqio; training reads the cache with NumPy
(`orca_jax.data.loader`). A mixture's directory holds `mixture.json` and one sub-cache per task
under `tasks/`, so an erasing policy chosen for the mixture applies to its copy of each task.
"""

from __future__ import annotations

import os
from typing import Any

from orca_jax.data.cache import empty_task_message, write_cache, write_metadata, write_mixture
from orca_jax.data.system_messages import erasing_policy
from orca_jax.errors import UserError


def _prepare_task(task_name: str, directory: str, policy_scope: list[str], max_length: int | None) -> dict[str, Any]:
    import seqio
    from tasks.traces import TRACE_TASKS

    if task_name not in TRACE_TASKS:
        raise UserError(f"task {task_name}: not a trace task (known: {', '.join(sorted(TRACE_TASKS)) or 'none; set --data_dir'})")
    spec = TRACE_TASKS[task_name]
    policy = next((p for p in (erasing_policy(n) for n in policy_scope) if p is not None), None)
    spec.reset(policy)
    dataset = seqio.get_mixture_or_task(task_name).get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1)
    too_long = 0

    def examples():
        nonlocal too_long
        iterator = dataset.as_numpy_iterator()
        while True:
            try:
                ex = next(iterator)
            except StopIteration:
                return
            except Exception:
                if spec.error is not None:  # tf.data wrapped a bad record; report it as itself
                    raise spec.error from None
                raise
            if max_length is not None and len(ex["ids"]) > max_length:
                too_long += 1  # dropped and counted, never truncated
                continue
            yield ex

    tokenizer = spec.tokenizer()
    metadata = write_cache(directory, examples(), {
        "task": task_name,
        "files": spec.files,
        # Tokens the template needed that the tokenizer lacked: the model must be resized to vocab_size.
        "tokenizer": {"path": spec.tokenizer_path, "vocab_size": tokenizer.vocab_size, "added_tokens": spec.added_tokens,
                      "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id},
        "template": spec.template,
        "erasing_policy": policy,
        "on_bad_record": spec.on_bad_record,
    })
    read = spec.read_report
    skipped = dict(read.skipped_per_reason)
    for reason, n in spec.rejected.items():
        skipped[reason] = skipped.get(reason, 0) + n
    if too_long:
        skipped[f"longer than max_length {max_length}"] = too_long
    metadata.update(
        records_read=read.records,
        skipped=sum(skipped.values()),
        skipped_per_reason=skipped,
        per_source=dict(read.per_source),
        per_strategy=dict(read.per_strategy),
        system_messages=len(read.per_system),
    )
    write_metadata(directory, metadata)
    if metadata["num_examples"] == 0:  # a stage on this task would train on nothing
        raise UserError(empty_task_message(task_name, metadata))
    return metadata


def prepare(name: str, cache_root: str, max_length: int | None = None) -> dict[str, Any]:
    """Cache the Task or Mixture `name` under `cache_root/name`; returns {task: metadata}."""
    import seqio

    if name in seqio.MixtureRegistry.names():
        mixture = seqio.get_mixture_or_task(name)
        rates, out = {}, {}
        for task in mixture.tasks:
            rel = os.path.join("tasks", task.name)
            out[task.name] = _prepare_task(task.name, os.path.join(cache_root, name, rel), [task.name, name], max_length)
            rates[rel] = mixture.get_rate(task)
        write_mixture(os.path.join(cache_root, name), rates)
        return out
    if name not in seqio.TaskRegistry.names():
        raise UserError(f"--task {name}: no such seqio Task or Mixture (trace tasks are named traces_<file name> under --data_dir)")
    return {name: _prepare_task(name, os.path.join(cache_root, name), [name], max_length)}
