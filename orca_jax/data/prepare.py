"""Prepare a seqio Task or Mixture once: run its preprocessing and cache tokenized examples.

This is the only data step that imports TensorFlow/seqio; training reads the cache with NumPy
(`orca_jax.data.loader`). A mixture's directory holds `mixture.json` and one sub-cache per task
under `tasks/`. Prompt erasing is chosen per task (per source), never per mixture: a mixture of
Orca 1 traces and Orca 2's strategy-prompted data erases only the latter's system messages.
Each cache records the system message every example was tokenized with (`system_ids.bin`).
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any

from orca_jax.data.cache import SystemMessages, empty_task_message, write_cache, write_metadata, write_mixture
from orca_jax.data.system_messages import erased_task_names, erasing_policy
from orca_jax.errors import UserError

if TYPE_CHECKING:  # tasks.traces imports TensorFlow: only when preparing
    from tasks.traces import Screen


def _prepare_task(task_name: str, directory: str, max_length: int | None, screen: Screen | None) -> dict[str, Any]:
    import seqio
    from tasks.traces import TRACE_TASKS

    if task_name not in TRACE_TASKS:
        raise UserError(f"task {task_name}: not a trace task (known: {', '.join(sorted(TRACE_TASKS)) or 'none; set --data_dir'})")
    spec = TRACE_TASKS[task_name]
    policy = erasing_policy(task_name)
    spec.reset(policy, screen)
    dataset = seqio.get_mixture_or_task(task_name).get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1)
    too_long = 0
    systems = SystemMessages()

    def examples():
        nonlocal too_long
        iterator = dataset.as_numpy_iterator()
        for produced in itertools.count():
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
            systems.add(spec.systems[produced])  # the task's generator runs in order, one system per example
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
        teacher_system_messages=len(read.per_system),
    )
    systems.write(directory, metadata)
    write_metadata(directory, metadata)
    if metadata["num_examples"] == 0:  # a stage on this task would train on nothing
        raise UserError(empty_task_message(task_name, metadata))
    return metadata


def prepare(name: str, cache_root: str, max_length: int | None = None, screen: Screen | None = None) -> dict[str, Any]:
    """Cache the Task or Mixture `name` under `cache_root/name`; returns {task: metadata}.

    `screen(file, trace)` sees every trace read and returns why to drop it (counted among the
    skipped records per reason), or None to keep it."""
    import seqio

    mixtures = [key for key in erased_task_names() if key in seqio.MixtureRegistry.names()]
    if mixtures:
        raise UserError(f"erasing_policy.per_task: {', '.join(mixtures)} is a mixture; erasing is chosen per trace task "
                        "(source), so a mixture's other sources keep their system messages: name its tasks, "
                        "e.g. {'traces_orca2_data': 'cautious'}")
    if name in seqio.MixtureRegistry.names():
        mixture = seqio.get_mixture_or_task(name)
        rates, out = {}, {}
        for task in mixture.tasks:
            rel = os.path.join("tasks", task.name)
            out[task.name] = _prepare_task(task.name, os.path.join(cache_root, name, rel), max_length, screen)
            rates[rel] = mixture.get_rate(task)
        write_mixture(os.path.join(cache_root, name), rates)
        return out
    if name not in seqio.TaskRegistry.names():
        raise UserError(f"--task {name}: no such seqio Task or Mixture (trace tasks are named traces_<file name> under --data_dir)")
    return {name: _prepare_task(name, os.path.join(cache_root, name), max_length, screen)}
