"""A trace-generation job: ask a teacher every prompt once, write every answer exactly once.

Durability comes from two files: the answer cache (committed as each answer arrives) and
the output JSONL (appended in prompt order, fsynced per line). A run killed at any point
and restarted with the same arguments skips prompts already in the output, writes cached
answers without asking again, and asks only what never finished, so the final file has
the same traces in the same order as an uninterrupted run.

Good answers go to `--out`; cut-off (finish_reason "length"), malformed and rejected ones
go to `<out>.rejected.jsonl` with the reason, so they are kept but never mistaken for
training data.
"""

import asyncio
import dataclasses
import json
import os
import sys
from typing import Protocol, Sequence

import tqdm

from orca_jax.data.traces import Trace
from orca_jax.errors import UserError
from orca_jax.teacher.cache import AnswerCache, request_key
from orca_jax.teacher.client import STATUS_OK, ChatOutcome, SamplingParams, TeacherUnavailable


@dataclasses.dataclass(frozen=True)
class TraceRequest:
    """One prompt (user turns plus task metadata, as read from a prompt file) and how to ask it."""

    prompt: Trace
    system_message: str
    system_message_id: int | None = None  # Orca 1 message number (1..16)
    strategy: str = ""  # Orca 2 strategy name; training may erase its instruction

    @property
    def turns(self) -> list[dict]:
        """The conversation to send: a trailing assistant turn (an old answer) is dropped."""
        turns = self.prompt.turns
        return turns[:-1] if turns and turns[-1]["role"] == "assistant" else turns

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system_message}] if self.system_message else []
        return system + [dict(t) for t in self.turns]


class Teacher(Protocol):
    """What a job needs from a teacher: an identity for the cache key and `complete`."""

    name: str
    parallelism: int
    retries: int

    async def complete(self, model: str, messages: list[dict], sampling: SamplingParams) -> ChatOutcome: ...


@dataclasses.dataclass
class JobSummary:
    total: int = 0
    already_written: int = 0
    from_cache: int = 0
    queried: int = 0
    written: int = 0
    rejected: int = 0
    unfinished: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def rejected_path(out_path: str) -> str:
    root, ext = os.path.splitext(out_path)
    return f"{root}.rejected{ext or '.jsonl'}"


class _AppendOnlyJsonl:
    """JSONL appended one fsynced line at a time; a partial last line left by a kill is cut on open.
    `keys` maps each trace id already in the file to the request key it was generated for."""

    def __init__(self, path: str):
        self.path = path
        self.keys: dict[str, str | None] = {}
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                with open(path, "r+b") as f:
                    f.truncate(len(complete))
            for line in complete.decode("utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.keys[record["id"]] = record.get("metadata", {}).get("generation", {}).get("request_key")
        self._file = open(path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.keys[record["id"]] = record["metadata"]["generation"]["request_key"]

    def close(self) -> None:
        self._file.close()


def make_trace(request: TraceRequest, outcome: ChatOutcome, *, teacher: str, model: str,
               sampling: SamplingParams, key: str) -> Trace:
    """The trace with everything needed to know how it was produced (in `metadata["generation"]`)."""
    prompt = request.prompt
    turns = [dict(t) for t in request.turns]
    if outcome.text is not None:
        turns.append({"role": "assistant", "content": outcome.text})
    generation = {
        "teacher": teacher, "model": model, "response_model": outcome.response_model,
        "sampling": sampling.as_dict(), "system_message_id": request.system_message_id,
        "strategy": request.strategy, "status": outcome.status, "finish_reason": outcome.finish_reason,
        "error": outcome.error, "attempts": outcome.attempts, "started_at": outcome.started_at,
        "finished_at": outcome.finished_at, "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens, "request_key": key,
    }
    if outcome.token_ids is not None:  # aligns the top-k rows with the tokens they were captured at
        generation["response_token_ids"] = outcome.token_ids
    return Trace(id=prompt.id, turns=turns, system=request.system_message, source=prompt.source, teacher=model,
                 task=prompt.task, category=prompt.category, strategy=request.strategy,
                 metadata={**prompt.metadata, "generation": generation},
                 teacher_topk_ids=outcome.topk_ids, teacher_topk_logprobs=outcome.topk_logprobs)


def _unique_requests(requests: Sequence[TraceRequest], keys: list[str]) -> tuple[list[TraceRequest], list[str]]:
    """Drops exact repeats (same key); two different requests under one id would collide in the output."""
    seen: dict[str, str] = {}
    out, out_keys = [], []
    for request, key in zip(requests, keys):
        previous = seen.setdefault(request.prompt.id, key)
        if previous != key:
            raise UserError(f"prompt id {request.prompt.id!r} appears twice with different content or system message; "
                            "trace ids must be unique within a job")
        if len(seen) > len(out):
            out.append(request)
            out_keys.append(key)
    return out, out_keys


class _OrderedTraceWriter:
    """Writes finished requests to the good / rejected files in request order.

    A request is `settled` once written (now or by an earlier run) or given up in this run;
    answers that finish early wait in `ready` until every request before them is settled, so
    a resumed run's files equal an uninterrupted run's.
    """

    def __init__(self, requests, keys, out_path: str, trace_fn):
        self.requests, self.keys, self.trace_fn = requests, keys, trace_fn
        self.good, self.bad = _AppendOnlyJsonl(out_path), _AppendOnlyJsonl(rejected_path(out_path))
        written = {**self.good.keys, **self.bad.keys}
        for request, key in zip(requests, keys):
            if written.get(request.prompt.id, key) != key:
                self.close()
                raise UserError(f"{out_path}: trace {request.prompt.id!r} there was generated with other settings "
                                "(teacher, model, sampling, system message or prompt); write to a new --out")
        self.settled = [r.prompt.id in written for r in requests]
        self.ready: dict[int, ChatOutcome] = {}
        self.next_index = 0
        self.written = self.rejected = 0

    def finish(self, index: int, outcome: ChatOutcome) -> None:
        self.ready[index] = outcome
        self._flush()

    def give_up(self, index: int) -> None:
        """Not cached, not written: the next run asks again; later requests need not wait for it."""
        self.settled[index] = True
        self._flush()

    def _flush(self) -> None:
        while self.next_index < len(self.requests) and (self.settled[self.next_index] or self.next_index in self.ready):
            if self.next_index in self.ready:
                outcome = self.ready.pop(self.next_index)
                trace = self.trace_fn(self.requests[self.next_index], outcome, self.keys[self.next_index])
                if outcome.status == STATUS_OK:
                    self.good.append(trace.to_json())
                    self.written += 1
                else:
                    self.bad.append(trace.to_json())
                    self.rejected += 1
                self.settled[self.next_index] = True
            self.next_index += 1

    def close(self) -> None:
        self.good.close()
        self.bad.close()


async def run_job(requests: Sequence[TraceRequest], teacher: Teacher, *, model: str, sampling: SamplingParams,
                  out_path: str, cache: AnswerCache, progress: bool = True) -> JobSummary:
    """Asks `teacher` every request not yet in `out_path` (or its rejected file) nor in `cache`."""
    keys = [request_key(teacher=teacher.name, model=model, sampling=sampling.as_dict(),
                        system_message=r.system_message, prompt=json.dumps(r.turns, ensure_ascii=False))
            for r in requests]
    requests, keys = _unique_requests(requests, keys)
    writer = _OrderedTraceWriter(requests, keys, out_path, lambda request, outcome, key: make_trace(
        request, outcome, teacher=teacher.name, model=model, sampling=sampling, key=key))
    summary = JobSummary(total=len(requests), already_written=sum(writer.settled))
    bar = tqdm.tqdm(total=len(requests), initial=summary.already_written, unit="trace", disable=not progress,
                    file=sys.stderr, dynamic_ncols=True)

    def finish(index: int, outcome: ChatOutcome) -> None:
        summary.prompt_tokens += outcome.prompt_tokens
        summary.completion_tokens += outcome.completion_tokens
        bar.update(1)
        bar.set_postfix(tokens=summary.completion_tokens, retries=teacher.retries, refresh=False)
        writer.finish(index, outcome)

    async def worker(pending):
        for index in pending:
            try:
                outcome = await teacher.complete(model, requests[index].messages(), sampling)
            except TeacherUnavailable as e:
                summary.unfinished += 1
                bar.write(f"teacher unavailable for {requests[index].prompt.id}: {e}", file=sys.stderr)
                writer.give_up(index)
                continue
            summary.queried += 1
            cache.put(keys[index], outcome)  # durable before it is written, so it is never asked again
            finish(index, outcome)

    try:
        to_query = []
        for index, key in enumerate(keys):
            if not writer.settled[index]:
                cached = cache.get(key)
                if cached is None:
                    to_query.append(index)
                else:
                    summary.from_cache += 1
                    finish(index, cached)
        pending = iter(to_query)  # shared by the workers: each index is taken once
        workers = [asyncio.create_task(worker(pending)) for _ in range(max(1, teacher.parallelism))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
    finally:
        bar.close()
        writer.close()
    summary.written, summary.rejected = writer.written, writer.rejected
    return summary


def default_cache_path(out_path: str) -> str:
    """Beside the output, so that rerunning the same command finds it."""
    return os.path.splitext(out_path)[0] + ".cache.sqlite"


def _is_url(teacher: str) -> bool:
    return teacher.startswith(("http://", "https://"))


def open_teacher(teacher: str, *, concurrency: int = 8, requests_per_minute: float | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", max_retries: int = 8, backoff_base_s: float = 1.0,
                 timeout_s: float = 600.0,
                 topk: int = 0, max_batch: int = 32):
    """An async-context teacher: a `ChatClient` for an http(s) URL, else a local model loaded in-process."""
    if _is_url(teacher):
        if topk:
            raise UserError("--topk: top-k capture needs a local teacher (a model path), not an API URL")
        from orca_jax.teacher.client import ChatClient

        return ChatClient(teacher, concurrency=concurrency, requests_per_minute=requests_per_minute,
                          api_key_env=api_key_env, max_retries=max_retries, backoff_base_s=backoff_base_s,
                          timeout_s=timeout_s)
    from orca_jax.teacher.local_teacher import LocalTeacher

    return LocalTeacher.load(teacher, max_batch=max_batch, topk=topk)


def generate_traces(requests: Sequence[TraceRequest], *, teacher: str, model: str | None, sampling: SamplingParams,
                    out_path: str, cache_path: str | None = None, progress: bool = True,
                    **teacher_options) -> JobSummary:
    """Runs a whole job; `teacher_options` go to `open_teacher`."""
    if model is None:
        if _is_url(teacher):
            raise UserError("--model: name the model to ask the API for (e.g. gpt-4)")
        model = os.path.basename(os.path.normpath(teacher))

    async def go():
        async with open_teacher(teacher, **teacher_options) as backend:
            return await run_job(requests, backend, model=model, sampling=sampling, out_path=out_path,
                                 cache=cache, progress=progress)

    cache = AnswerCache(cache_path or default_cache_path(out_path))
    try:
        return asyncio.run(go())
    finally:
        cache.close()
