"""A local JAX model as a teacher: concurrent requests batched through the KV-cache generator.

Callers (`orca-jax serve`, a trace-generation job) `await generate(...)` from many coroutines;
a batching loop collects requests that share sampling settings into batches of up to
`max_batch`, runs `decoding.generate` in a worker thread (the event loop keeps serving), and
optionally scores the responses for per-token log-probs and top-k capture (`topk.py`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import os
import time

import jax

from orca_jax import decoding
from orca_jax.errors import UserError
from orca_jax.model.loading import LoadedModel, load_model
from orca_jax.teacher.client import STATUS_REJECTED, ChatOutcome, SamplingParams, classify_answer
from orca_jax.teacher.topk import score_responses

@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    topk: int = 0  # > 0: top-k ids and log-probs per response token
    logprobs: bool = False


@dataclasses.dataclass
class Completion:
    """A finished response. `token_ids` are the response tokens (the end-of-turn token included
    when generated, since the student is trained to produce it); `text` excludes it."""

    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    token_logprobs: list[float] | None = None
    topk_ids: list[list[int]] | None = None
    topk_logprobs: list[list[float]] | None = None


@dataclasses.dataclass
class _Pending:
    request: GenerationRequest
    future: asyncio.Future


class LocalTeacher:
    """Use as `async with LocalTeacher(model) as teacher: await teacher.generate(...)`."""

    def __init__(self, model: LoadedModel, *, max_batch: int = 32, topk: int = 0, batch_wait_s: float = 0.01,
                 seed: int = 0, name: str | None = None):
        self.model = model
        self.name = name or model.path
        self.max_batch = max_batch
        self.parallelism = 2 * max_batch  # jobs keep the next batch queued while one runs
        self.retries = 0
        self.topk = topk
        self.batch_wait_s = batch_wait_s
        self.eos_ids = tuple(model.tokenizer.stop_ids)  # EOS and the chat template's end-of-turn token
        self._rng = jax.random.key(seed)
        self._batches_run = 0
        self._queue: asyncio.Queue | None = None
        self._loop_task = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # one device user at a time

    @classmethod
    def load(cls, path: str, **kwargs) -> "LocalTeacher":
        return cls(load_model(path), **{"name": os.path.normpath(path), **kwargs})

    async def __aenter__(self) -> "LocalTeacher":
        self._queue = asyncio.Queue()
        self._loop_task = asyncio.create_task(self._batch_loop())
        return self

    async def __aexit__(self, *exc) -> None:
        self._loop_task.cancel()
        self._executor.shutdown(wait=True)

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Prompt ids as `orca-jax generate` builds them: the model's chat template with the generation prompt."""
        return self.model.tokenizer.encode_chat(messages, add_generation_prompt=True)

    async def generate(self, request: GenerationRequest) -> Completion:
        context = self.model.config.max_position_embeddings
        if len(request.prompt_ids) + request.max_tokens > context:
            raise UserError(f"prompt of {len(request.prompt_ids)} tokens + max_tokens {request.max_tokens} exceeds "
                            f"the model's context of {context} tokens")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(request, future))
        return await future

    async def complete(self, model: str, messages: list[dict], sampling: SamplingParams) -> ChatOutcome:
        """The trace-job interface: one chat request, with top-k capture when `topk` > 0."""
        started = time.time()
        try:
            done = await self.generate(GenerationRequest(
                prompt_ids=tuple(self.encode_chat(messages)), max_tokens=sampling.max_tokens,
                temperature=sampling.temperature, top_p=sampling.top_p, topk=self.topk))
        except UserError as e:  # e.g. a prompt over the context: this prompt fails, the job goes on
            return ChatOutcome(status=STATUS_REJECTED, text=None, finish_reason=None, prompt_tokens=0,
                               completion_tokens=0, attempts=1, started_at=started, finished_at=time.time(),
                               response_model=model, error=str(e))
        status, error = classify_answer(done.text, done.finish_reason)
        return ChatOutcome(
            status=status, error=error, text=done.text, finish_reason=done.finish_reason, prompt_tokens=done.prompt_tokens,
            completion_tokens=len(done.token_ids), attempts=1, started_at=started, finished_at=time.time(),
            response_model=model, token_ids=done.token_ids if self.topk else None,
            topk_ids=done.topk_ids, topk_logprobs=done.topk_logprobs)

    async def _batch_loop(self) -> None:
        waiting: collections.deque[_Pending] = collections.deque()
        loop = asyncio.get_running_loop()
        while True:
            if not waiting:
                waiting.append(await self._queue.get())
                await asyncio.sleep(self.batch_wait_s)  # let requests that arrive together share a batch
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            batch = self._next_batch(waiting)
            for p in batch:
                waiting.remove(p)
            rng = jax.random.fold_in(self._rng, self._batches_run)
            self._batches_run += 1
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch,
                                                     [p.request for p in batch], rng)
            except Exception as e:  # a failed batch fails its requests, not the server
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            for p, result in zip(batch, results):
                if not p.future.done():  # the caller may have gone away
                    p.future.set_result(result)

    def _next_batch(self, waiting) -> list[_Pending]:
        """The oldest request and the waiting ones that can share its `generate` call: same temperature
        and top-p, and the batch's longest prompt plus largest max_tokens within the context."""
        head = waiting[0].request
        context = self.model.config.max_position_embeddings
        batch, longest, budget = [], 0, 0
        for p in waiting:
            r = p.request
            fits = max(longest, len(r.prompt_ids)) + max(budget, r.max_tokens) <= context
            if (r.temperature, r.top_p) == (head.temperature, head.top_p) and fits:
                batch.append(p)
                longest, budget = max(longest, len(r.prompt_ids)), max(budget, r.max_tokens)
                if len(batch) == self.max_batch:
                    break
        return batch

    def _run_batch(self, requests: list[GenerationRequest], rng) -> list[Completion]:
        model, head = self.model, requests[0]
        prompts = [list(r.prompt_ids) for r in requests]
        generated = decoding.generate(model.config, model.params, prompts, max(r.max_tokens for r in requests),
                                      temperature=head.temperature, top_p=head.top_p, eos_ids=self.eos_ids, rng=rng)
        completions = [self._finish(r, ids[:r.max_tokens]) for r, ids in zip(requests, generated)]
        add_scores(model, requests, completions)
        return completions

    def _finish(self, request: GenerationRequest, ids: list[int]) -> Completion:
        return finish_completion(self.model.tokenizer, self.eos_ids, request, ids)


def add_scores(model: LoadedModel, requests: list[GenerationRequest], completions: list[Completion]) -> None:
    """Per-token log-probs and top-k for the completions whose requests ask for them (one
    teacher-forced pass over prompt + response)."""
    k = max(r.topk for r in requests)
    if not (k or any(r.logprobs for r in requests)):
        return
    prompts = [list(r.prompt_ids) for r in requests]
    scores = score_responses(model.config, model.params, prompts, [c.token_ids for c in completions], k)
    for r, c, s in zip(requests, completions, scores):
        c.token_logprobs = s.token_logprobs.tolist() if r.logprobs else None
        if r.topk:
            c.topk_ids = s.topk_ids[:, :r.topk].tolist()
            c.topk_logprobs = s.topk_logprobs[:, :r.topk].tolist()


def finish_completion(tokenizer, eos_ids, request: GenerationRequest, ids: list[int]) -> Completion:
    """The completion generated `ids` make: the end-of-turn token ends it ("stop", kept in
    `token_ids`, not in `text`), the earliest stop string cuts it ("stop"), else "length"."""
    decode = tokenizer.decode
    ended = bool(ids) and ids[-1] in eos_ids
    content = ids[:-1] if ended else ids
    text = decode(content)
    hits = [(text.find(s), s) for s in request.stop if s and s in text]
    if hits:
        # Cut at the earliest stop string (excluded, as OpenAI does), and keep only the tokens
        # needed to produce the text before it.
        cut = min(hits)[0]
        n = next(i for i in range(len(content) + 1) if len(decode(content[:i])) >= cut)
        return Completion(content[:n], text[:cut], "stop", len(request.prompt_ids))
    return Completion(ids, text, "stop" if ended else "length", len(request.prompt_ids))
