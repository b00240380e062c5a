"""Teacher traces: the `Trace` record, readers for the common trace formats, a JSONL writer.

Formats (auto-detected from the first record's keys, or named; files are JSONL or Parquet):
  orca_jax  this project's JSONL (what `write_traces` writes; round-trips every field)
  openorca  `id`, `system_prompt`, `question`, `response`
  openai    `{"messages": [{"role", "content"}, ...]}` JSONL
  sharegpt  `{"conversations": [{"from", "value"}, ...]}` JSONL (system/human/gpt)
  flan      FLAN-v2 submix files (`inputs`, `targets`, `_task_source`, `_task_name`,
            `_template_type`), zero-shot and few-shot templates alike (`inputs` is the rendered
            prompt, exemplars included). Read as training data, the target is the assistant
            turn; read as prompts (`require_response=False`, trace generation) a record has a
            user turn only. Either way the target and template type stay in metadata.

Every bad record is reported as `FILE:LINE: field: problem`; `on_bad_record` decides whether
the first one raises (`raise`) or all are counted per reason and skipped (`skip`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Iterable, Iterator

import gin

from orca_jax.data.jsonl import BadRecord, jsonl_records
from orca_jax.errors import UserError

FORMATS = ("orca_jax", "openorca", "openai", "sharegpt", "flan")
ROLES = ("user", "assistant")
ON_BAD_RECORD = ("raise", "skip")

_OPENORCA_COLLECTIONS = ("cot", "niv", "t0", "flan")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclasses.dataclass
class Trace:
    """One teacher trace: what the teacher was asked (system message, user turns) and answered.

    `teacher_topk_ids` / `teacher_topk_logprobs` (optional, `[n_tokens][k]`) are the teacher's
    top-k next-token distribution for each token of the last assistant turn, in the student's
    vocabulary, for offline logit distillation.
    """

    id: str
    turns: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": str}, ...]
    system: str = ""
    source: str = ""  # dataset / trace collection, e.g. "openorca", "flan_cot"
    teacher: str = ""  # model that wrote the responses, e.g. "gpt-4"
    task: str = ""
    category: str = ""
    strategy: str = ""  # Orca 2 strategy name the teacher was given, if any
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher_topk_ids: list[list[int]] | None = None
    teacher_topk_logprobs: list[list[float]] | None = None

    @property
    def response(self) -> str:
        """The last assistant turn (the teacher's answer)."""
        return self.turns[-1]["content"] if self.turns and self.turns[-1]["role"] == "assistant" else ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ReadReport:
    """What reading a trace file saw: good-record counts and every bad record."""

    records: int = 0
    per_source: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    per_system: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    per_strategy: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bad: list[BadRecord] = dataclasses.field(default_factory=list)

    @property
    def skipped_per_reason(self) -> dict[str, int]:
        return dict(collections.Counter(f"{b.field}: {b.problem}" for b in self.bad))

    def count(self, trace: Trace) -> None:
        self.records += 1
        self.per_source[trace.source or "(none)"] += 1
        self.per_system[trace.system] += 1
        self.per_strategy[trace.strategy or "(none)"] += 1

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "skipped": len(self.bad), "skipped_per_reason": self.skipped_per_reason}


# ---------------------------------------------------------------------------- validation helpers


def _require(record: dict, key: str, where: tuple[str, int], kind=str, allow_empty=True, prefix=""):
    name = prefix + key
    if key not in record:
        raise BadRecord(*where, name, "missing")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRecord(*where, name, f"expected {expected}, got {type(value).__name__}")
    if not allow_empty and isinstance(value, str) and not value.strip():
        raise BadRecord(*where, name, "empty")
    return value


def _optional_str(record: dict, key: str, where) -> str:
    if record.get(key) is None:
        return ""
    return _require(record, key, where)


def _check_turns(turns: list[dict[str, str]], where, field: str, need_response: bool) -> None:
    if not turns:
        raise BadRecord(*where, field, "no user/assistant turns")
    for i, turn in enumerate(turns):
        expected = ROLES[i % 2]
        if turn["role"] != expected:
            raise BadRecord(*where, f"{field}[{i}].role", f"expected {expected!r} (turns alternate user/assistant), got {turn['role']!r}")
        if turn["role"] == "assistant" and not turn["content"].strip():
            raise BadRecord(*where, f"{field}[{i}].content", "empty response")
    if need_response and turns[-1]["role"] != "assistant":
        raise BadRecord(*where, field, "last turn must be an assistant response")


def _check_topk(trace: Trace, where) -> None:
    ids, logprobs = trace.teacher_topk_ids, trace.teacher_topk_logprobs
    if (ids is None) != (logprobs is None):
        raise BadRecord(*where, "teacher_topk_ids" if ids is None else "teacher_topk_logprobs", "missing (top-k needs both ids and log-probs)")
    if ids is None:
        return
    if len(ids) != len(logprobs):
        raise BadRecord(*where, "teacher_topk_logprobs", f"expected {len(ids)} rows like teacher_topk_ids, got {len(logprobs)}")
    k = len(ids[0]) if ids else 0
    for i, (row_ids, row_lp) in enumerate(zip(ids, logprobs)):
        if not (isinstance(row_ids, list) and isinstance(row_lp, list) and len(row_ids) == k and len(row_lp) == k):
            raise BadRecord(*where, f"teacher_topk_ids[{i}]", f"expected two lists of length k={k}")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in row_ids):
            raise BadRecord(*where, f"teacher_topk_ids[{i}]", "expected integer token ids")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row_lp):
            raise BadRecord(*where, f"teacher_topk_logprobs[{i}]", "expected numbers")


# ---------------------------------------------------------------------------- per-format parsers
# Each takes (record dict, where, path-derived default source) and returns a Trace or raises BadRecord.


def _parse_orca_jax(rec: dict, where, source: str) -> Trace:
    turns_raw = _require(rec, "turns", where, list)
    turns = []
    for i, t in enumerate(turns_raw):
        if not isinstance(t, dict):
            raise BadRecord(*where, f"turns[{i}]", f"expected an object, got {type(t).__name__}")
        turns.append({"role": _require(t, "role", where, prefix=f"turns[{i}]."), "content": _require(t, "content", where, prefix=f"turns[{i}].")})
    metadata = rec.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRecord(*where, "metadata", f"expected an object, got {type(metadata).__name__}")
    trace = Trace(
        id=_require(rec, "id", where, allow_empty=False),
        turns=turns,
        system=_optional_str(rec, "system", where),
        source=_optional_str(rec, "source", where) or source,
        teacher=_optional_str(rec, "teacher", where),
        task=_optional_str(rec, "task", where),
        category=_optional_str(rec, "category", where),
        strategy=_optional_str(rec, "strategy", where),
        metadata=metadata,
        teacher_topk_ids=rec.get("teacher_topk_ids"),
        teacher_topk_logprobs=rec.get("teacher_topk_logprobs"),
    )
    # A prompt collection written by this writer has no response yet; training needs one.
    _check_turns(turns, where, "turns", need_response=False)
    _check_topk(trace, where)
    return trace


def _parse_openorca(rec: dict, where, source: str) -> Trace:
    response = _require(rec, "response", where, allow_empty=False)
    rid = str(_require(rec, "id", where, (str, int)))
    prefix = rid.split(".", 1)[0]  # OpenOrca ids name the FLAN sub-collection: "cot.123", "niv.5", ...
    return Trace(
        id=rid,
        category=prefix if prefix in _OPENORCA_COLLECTIONS and "." in rid else "",
        system=_optional_str(rec, "system_prompt", where),
        turns=[{"role": "user", "content": _require(rec, "question", where, allow_empty=False)}, {"role": "assistant", "content": response}],
        source=source,
    )


def _conversation(rec: dict, where, field: str, role_key: str, content_key: str, roles: dict[str, str],
                  expected_roles: str) -> tuple[str, list[dict[str, str]]]:
    """(system message, turns) of the chat messages listed under `field`: an optional first
    system message, then turns whose role names `roles` maps to ours."""
    messages = _require(rec, field, where, list)
    system, turns = "", []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRecord(*where, f"{field}[{i}]", f"expected an object, got {type(m).__name__}")
        role = _require(m, role_key, where, prefix=f"{field}[{i}].")
        content = _require(m, content_key, where, prefix=f"{field}[{i}].")
        if role == "system" and i == 0:
            system = content
        elif role in roles:
            turns.append({"role": roles[role], "content": content})
        else:
            raise BadRecord(*where, f"{field}[{i}].{role_key}", f"unknown role {role!r} (expected {expected_roles})")
    _check_turns(turns, where, field, need_response=True)
    return system, turns


def _conversation_id(rec: dict, where, source: str) -> str:
    rid = rec.get("id")
    return str(rid) if rid is not None else f"{source}:{where[1]}"


def _parse_openai(rec: dict, where, source: str) -> Trace:
    system, turns = _conversation(rec, where, "messages", "role", "content", {r: r for r in ROLES}, "system first, then user/assistant")
    return Trace(id=_conversation_id(rec, where, source), system=system, turns=turns, source=source,
                 metadata={k: v for k, v in rec.items() if k not in ("messages", "id")})


def _parse_sharegpt(rec: dict, where, source: str) -> Trace:
    system, turns = _conversation(rec, where, "conversations", "from", "value", _SHAREGPT_ROLES, "system, human or gpt")
    return Trace(id=_conversation_id(rec, where, source), system=system, turns=turns, source=source)


def _parse_flan(rec: dict, where, source: str) -> Trace:
    inputs = _require(rec, "inputs", where, allow_empty=False)
    collection = _require(rec, "_task_source", where, allow_empty=False)
    return Trace(
        id=str(rec["id"]) if "id" in rec else f"{source}:{where[1]}",
        turns=[{"role": "user", "content": inputs}],
        source=source,
        task=_require(rec, "_task_name", where, allow_empty=False),
        category=collection,
        metadata={"target": _require(rec, "targets", where), "template_type": _require(rec, "_template_type", where)},
    )


def _flan_with_target(prompt: Trace, where) -> Trace:
    """A FLAN prompt as training data: its target becomes the assistant turn."""
    target = prompt.metadata["target"]
    if not target.strip():
        raise BadRecord(*where, "targets", "empty (nothing to train on)")
    return dataclasses.replace(prompt, turns=prompt.turns + [{"role": "assistant", "content": target}])


_PARSERS = {"orca_jax": _parse_orca_jax, "openorca": _parse_openorca, "openai": _parse_openai, "sharegpt": _parse_sharegpt, "flan": _parse_flan}


def detect_format(record: dict) -> str | None:
    """The format a record's keys identify, or None."""
    if "turns" in record:
        return "orca_jax"
    if "messages" in record:
        return "openai"
    if "conversations" in record:
        return "sharegpt"
    if "inputs" in record and "_task_source" in record:
        return "flan"
    if "question" in record and "response" in record:
        return "openorca"
    return None


# ---------------------------------------------------------------------------- reading


def _parquet_records(path: str) -> Iterator[tuple[int, dict]]:
    """(row number starting at 1, record) read in batches so large files stream."""
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec


def _default_source(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".jsonl", ".parquet", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


@gin.configurable(denylist=["path", "report"])
def read_traces(path: str, format: str | None = None, on_bad_record: str = "raise", report: ReadReport | None = None,
                require_response: bool = True, source: str | None = None) -> Iterator[Trace]:
    """Yield the Traces in `path`. Bad records raise (`raise`) or are recorded in `report` and skipped.

    `require_response=False` accepts records without an assistant turn (prompt collections);
    with it True, a FLAN record's target is its assistant turn.
    `format=None` detects it from the first parseable record's keys (JSONL or Parquet rows).
    """
    if on_bad_record not in ON_BAD_RECORD:
        raise UserError(f"on_bad_record: expected one of {ON_BAD_RECORD}, got {on_bad_record!r}")
    if format is not None and format not in FORMATS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such trace file")
    report = report if report is not None else ReadReport()
    source = source or _default_source(path)
    records = _parquet_records(path) if path.endswith(".parquet") else jsonl_records(path)
    fmt = format
    for lineno, rec in records:
        where = (path, lineno)
        try:
            if isinstance(rec, BadRecord):
                raise rec
            if fmt is None:
                fmt = detect_format(rec)
                if fmt is None:
                    raise UserError(f"{path}:{lineno}: cannot tell the trace format from keys {sorted(rec)}; pass --format ({', '.join(FORMATS)})")
            trace = _PARSERS[fmt](rec, where, source)
            if fmt == "flan" and require_response:
                trace = _flan_with_target(trace, where)
            if require_response and trace.turns[-1]["role"] != "assistant":
                raise BadRecord(*where, "turns", "last turn must be an assistant response")
        except BadRecord as bad:
            if on_bad_record == "raise":
                raise
            report.bad.append(bad)
            continue
        report.count(trace)
        yield trace


def write_traces(path: str, traces: Iterable[Trace]) -> int:
    """Write traces as this project's JSONL (one object per line, UTF-8); returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for trace in traces:
            f.write(json.dumps(trace.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n
