"""SeqIO Tasks for teacher-trace files and Mixtures over them.

Every trace file (`*.jsonl`, `*.parquet`) or folder of shards directly under the data directory
becomes a Task `traces_<name>`: its source reads Traces (auto-detected format) and its
preprocessor erases the prompt (per the gin `erasing_policy`, keyed on the task: one source) and
applies the chat template.
Mixtures come from gin (`register_trace_mixtures.mixtures`) and from `mixtures.json` in the data
directory (`{"mixture": {"traces_a": rate, ...}}`).

The data directory is `register_trace_tasks.data_dir` in gin, else `$ORCA_JAX_DATA_DIR`; the
tokenizer is `register_trace_tasks.tokenizer_path`, else `$ORCA_JAX_TOKENIZER`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Callable

import gin
import seqio
import tensorflow as tf

from orca_jax.data.chat import TEMPLATES, ensure_template_tokens, required_tokens, tokenize_trace
from orca_jax.data.system_messages import erase_prompt
from orca_jax.data.traces import ReadReport, Trace, read_traces
from orca_jax.errors import UserError

TASK_PREFIX = "traces_"
TRACE_SUFFIXES = (".jsonl", ".parquet")
# (file, trace) -> why to drop the trace before tokenizing, or None to keep it
Screen = Callable[[str, Trace], "str | None"]


@dataclasses.dataclass
class TraceTaskSpec:
    """How a trace task turns its files into examples; reports accumulate while it runs."""

    name: str
    files: list[str]
    tokenizer_path: str | None
    template: str
    on_bad_record: str
    topk: bool
    read_report: ReadReport = dataclasses.field(default_factory=ReadReport)
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)  # records read but dropped, per reason
    erasing: str | None = None
    screen: Screen | None = None
    systems: list[str] = dataclasses.field(default_factory=list)  # each example's system message, in order
    added_tokens: list[str] = dataclasses.field(default_factory=list)
    error: UserError | None = None  # raised inside tf.data (which wraps it); prepare re-raises it
    _tokenizer: object = None

    def tokenizer(self):
        if self._tokenizer is None:
            if not self.tokenizer_path:
                raise UserError(f"task {self.name}: no tokenizer; set register_trace_tasks.tokenizer_path in gin or $ORCA_JAX_TOKENIZER")
            from orca_jax.data.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.tokenizer_path)
            missing = [t for t in required_tokens(self.template) if self._tokenizer.token_to_id(t) is None]
            ensure_template_tokens(self._tokenizer, self.template)
            self.added_tokens = missing  # the model's embeddings must grow to the new vocab_size
        return self._tokenizer

    def reset(self, erasing: str | None, screen: Screen | None = None) -> None:
        self.read_report, self.rejected, self.error, self.systems = ReadReport(), {}, None, []
        self.erasing, self.screen = erasing, screen

    def traces(self):
        try:
            for path in self.files:
                for trace in read_traces(path, on_bad_record=self.on_bad_record, report=self.read_report):
                    reason = self.screen(path, trace) if self.screen else None
                    if reason is None:
                        yield trace
                    else:
                        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        except UserError as e:
            self.error = e
            raise

    def examples(self, traces):
        for trace in traces:
            trace = erase_prompt(trace, self.erasing)
            try:
                example = tokenize_trace(trace, self.tokenizer(), self.template)
            except UserError as e:
                if self.on_bad_record == "raise":
                    self.error = e
                    raise
                reason = str(e).split(": ", 1)[-1]
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
                continue
            self.systems.append(trace.system)
            yield example


TRACE_TASKS: dict[str, TraceTaskSpec] = {}


def _task_name(path: str) -> str:
    stem = os.path.basename(path.rstrip("/"))
    for suffix in TRACE_SUFFIXES:
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    return TASK_PREFIX + re.sub(r"[^0-9a-zA-Z_]", "_", stem)


def _trace_files(data_dir: str) -> dict[str, list[str]]:
    found = {}
    for entry in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, entry)
        if os.path.isdir(path):
            shards = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(TRACE_SUFFIXES))
            if shards:
                found[_task_name(path)] = shards
        elif entry.endswith(TRACE_SUFFIXES):
            found[_task_name(path)] = [path]
    return found


def _has_topk(path: str) -> bool:
    """Whether the file's first record carries teacher top-k (Parquet/OpenOrca never does)."""
    if not path.endswith(".jsonl"):
        return False
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    return json.loads(line).get("teacher_topk_ids") is not None
                except (ValueError, AttributeError):
                    return False
    return False


def _source(spec: TraceTaskSpec) -> seqio.FunctionDataSource:
    def dataset_fn(split, shuffle_files, seed=None):
        del split, shuffle_files, seed  # one split; order is the files' (the loader shuffles)
        return tf.data.Dataset.from_generator(
            lambda: ({"trace": json.dumps(t.to_json(), ensure_ascii=False)} for t in spec.traces()),
            output_signature={"trace": tf.TensorSpec((), tf.string)},
        )

    return seqio.FunctionDataSource(dataset_fn, splits=["train"])


def _tokenize_preprocessor(spec: TraceTaskSpec):
    signature = {"ids": tf.TensorSpec([None], tf.int32), "loss_weights": tf.TensorSpec([None], tf.float32)}
    if spec.topk:
        signature.update(teacher_topk_ids=tf.TensorSpec([None, None], tf.int32), teacher_topk_logprobs=tf.TensorSpec([None, None], tf.float32))

    def erase_and_tokenize(dataset: tf.data.Dataset) -> tf.data.Dataset:
        def generate():
            traces = (Trace(**json.loads(x["trace"])) for x in dataset.as_numpy_iterator())
            yield from spec.examples(traces)

        return tf.data.Dataset.from_generator(generate, output_signature=signature)

    return erase_and_tokenize


def _output_features(spec: TraceTaskSpec) -> dict[str, seqio.Feature]:
    # Token ids are produced by this project's tokenizer in the preprocessor; seqio only carries them.
    ids = seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.int32)
    features = {"ids": ids, "loss_weights": seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.float32)}
    if spec.topk:
        features["teacher_topk_ids"] = seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.int32, rank=2)
        features["teacher_topk_logprobs"] = seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.float32, rank=2)
    return features


def _replace(registry, name):
    if name in registry.names():
        registry.remove(name)


@gin.configurable
def register_trace_tasks(data_dir: str | None = None, tokenizer_path: str | None = None, template: str = "chatml",
                         on_bad_record: str = "raise") -> list[str]:
    """Register one Task per trace file or shard folder under `data_dir`; returns the task names."""
    data_dir = data_dir or os.environ.get("ORCA_JAX_DATA_DIR")
    tokenizer_path = tokenizer_path or os.environ.get("ORCA_JAX_TOKENIZER")
    if template not in TEMPLATES:
        raise UserError(f"register_trace_tasks.template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    if not data_dir:
        return []
    if not os.path.isdir(data_dir):
        raise UserError(f"{data_dir}: trace data directory does not exist")
    names = []
    for name, files in _trace_files(data_dir).items():
        spec = TraceTaskSpec(name, files, tokenizer_path, template, on_bad_record, topk=_has_topk(files[0]))
        TRACE_TASKS[name] = spec
        _replace(seqio.TaskRegistry, name)
        seqio.TaskRegistry.add_provider(name, seqio.Task(
            name, source=_source(spec), output_features=_output_features(spec),
            preprocessors=[_tokenize_preprocessor(spec)], shuffle_buffer_size=None))
        names.append(name)
    register_trace_mixtures(data_dir=data_dir)
    return names


@gin.configurable
def register_trace_mixtures(mixtures: dict[str, dict[str, float]] | None = None, data_dir: str | None = None) -> list[str]:
    """Register Mixtures `{name: {task: rate}}` from gin and from `<data_dir>/mixtures.json`."""
    all_mixtures = dict(mixtures or {})
    path = data_dir and os.path.join(data_dir, "mixtures.json")
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            try:
                all_mixtures.update(json.load(f))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{e.lineno}: broken JSON: {e.msg}") from e
    for name, rates in all_mixtures.items():
        missing = [t for t in rates if t not in seqio.TaskRegistry.names()]
        if missing:
            raise UserError(f"mixture {name}: unknown tasks {missing} (trace tasks are named {TASK_PREFIX}<file name>)")
        _replace(seqio.MixtureRegistry, name)
        seqio.MixtureRegistry.add(name, [(task, float(rate)) for task, rate in rates.items()])
    return list(all_mixtures)
