"""SeqIO Tasks with t5x's features for the trace tasks, and Mixtures over them.

For every trace task `traces_<name>` (tasks/traces.py) this registers
  t5x_traces_<name>          {"targets", "targets_loss_weights"}: any trace, multi-turn included;
                             read by `orca_jax.t5x.features.WeightedLMFeatureConverter` (the
                             converter `orca_jax.t5x.model.decoder_only_model` gives t5x)
  t5x_prefix_traces_<name>   {"inputs", "targets"}: single-turn traces, for seqio's own
                             PrefixLMFeatureConverter / DecoderFeatureConverter (a multi-turn
                             trace is an error naming the task and example)
and for every mixture of trace tasks `m`, the mixtures `t5x_m` and `t5x_prefix_m` with its rates.

Each reads its trace task's own source and preprocessors (reading, prompt erasing per the gin
`erasing_policy`, chat template, tokenization) and adds one step, so loss falls on exactly the
tokens orca-jax's loader weighs (orca_jax/t5x/features.py says how the layouts line up). Token
features carry a `TokenizerVocabulary` over the task's tokenizer, EOS = the template's end of turn.

Importing this module (t5x's `MIXTURE_OR_TASK_MODULE = "tasks.t5x_features"`) registers the
trace tasks of `register_trace_tasks`'s gin data_dir / $ORCA_JAX_DATA_DIR and their t5x versions.
"""

from __future__ import annotations

from typing import Callable

import seqio
import tensorflow as tf

from orca_jax.data.system_messages import erasing_policy
from orca_jax.t5x.features import LOSS_WEIGHTS, prefix_features, weighted_features
from orca_jax.t5x.model import end_of_turn_id
from orca_jax.t5x.vocabulary import TokenizerVocabulary
from tasks.traces import TRACE_TASKS, _replace, register_trace_tasks

LAYOUTS = {"t5x_": weighted_features, "t5x_prefix_": prefix_features}


def _source(trace_task: seqio.Task) -> seqio.FunctionDataSource:
    """The trace task's source, with its spec reset to this task's erasing policy first (as
    `orca-jax prepare` does before reading)."""
    spec = TRACE_TASKS[trace_task.name]

    def dataset_fn(split, shuffle_files, seed=None):
        spec.reset(erasing_policy(trace_task.name))
        return trace_task.source.get_dataset(split=split, shuffle=shuffle_files, seed=seed)

    return seqio.FunctionDataSource(dataset_fn, splits=trace_task.source.splits)


def _layout_preprocessor(name: str, layout: Callable, signature: dict):
    def to_t5x(dataset: tf.data.Dataset) -> tf.data.Dataset:
        def generate():
            for i, example in enumerate(dataset.as_numpy_iterator()):
                yield layout(example, f"task {name} example {i}")

        return tf.data.Dataset.from_generator(generate, output_signature=signature)

    return to_t5x


def _features(layout: Callable, vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
    tokens = seqio.Feature(vocabulary, add_eos=False, dtype=tf.int32)  # the template wrote every end of turn
    if layout is weighted_features:
        return {"targets": tokens, LOSS_WEIGHTS: seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False,
                                                               dtype=tf.float32)}
    return {"inputs": tokens, "targets": tokens}


def register_t5x_trace_tasks(trace_task_names: list[str] | None = None) -> list[str]:
    """Register the t5x tasks of the given trace tasks (default: those `register_trace_tasks()`
    registers from gin / the environment) and of the mixtures over them; returns their names."""
    if trace_task_names is None:
        trace_task_names = register_trace_tasks()
    names = []
    for trace_name in trace_task_names:
        trace_task = seqio.get_mixture_or_task(trace_name)
        spec = TRACE_TASKS[trace_name]
        vocabulary = TokenizerVocabulary(spec.tokenizer(), end_of_turn_id(spec.tokenizer(), spec.template))
        for prefix, layout in LAYOUTS.items():
            name = prefix + trace_name
            features = _features(layout, vocabulary)
            signature = {k: tf.TensorSpec([None], f.dtype) for k, f in features.items()}
            _replace(seqio.TaskRegistry, name)
            seqio.TaskRegistry.add_provider(name, seqio.Task(
                name, source=_source(trace_task), output_features=features,
                preprocessors=[*trace_task.preprocessors, _layout_preprocessor(name, layout, signature)]))
            names.append(name)
    for mixture_name in list(seqio.MixtureRegistry.names()):
        mixture = seqio.get_mixture_or_task(mixture_name)
        if not mixture_name.startswith(tuple(LAYOUTS)) and all(task.name in trace_task_names for task in mixture.tasks):
            for prefix in LAYOUTS:
                _replace(seqio.MixtureRegistry, prefix + mixture_name)
                seqio.MixtureRegistry.add(prefix + mixture_name,
                                          [(prefix + task.name, mixture.get_rate(task)) for task in mixture.tasks])
                names.append(prefix + mixture_name)
    return names


register_t5x_trace_tasks()
