"""Continuous batching for `orca-jax serve`: requests join and leave a running batch step by step.

A fixed pool of `max_batch` slots shares one KV cache [slots, cache_length]. Each slot keeps
its own write index, so a request can start while others are half-way: it is prefilled on its
own (left-padded, so its next slot is the padded prompt length), its cache rows are copied into
a free slot, and from the next decode step on it advances with the others. A finished,
cancelled or disconnected request frees its slot at once. The decode step runs on the slots up
to the highest one in use (rounded up to a power of two), so one client alone pays for one row.

The device work runs on one worker thread; each request's `Stream` receives its tokens on the
event loop as they are decoded. Requests beyond `max_queue` waiting for a slot are refused
with `QueueFull` (the server answers 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import math
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from orca_jax.decoding import sample_next
from orca_jax.errors import UserError
from orca_jax.model.decoder import apply, init_cache
from orca_jax.model.loading import LoadedModel
from orca_jax.teacher.local_teacher import Completion, GenerationRequest, finish_completion

PROMPT_MULTIPLE = 32  # prompts are left-padded to a multiple of this (one compiled prefill per length)


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"server busy: more than the queue's limit of requests are waiting; retry after {retry_after} s")
        self.retry_after = retry_after


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _sample_rows(logits, temperature, top_p, rng, sampling: bool):
    """Each row's next token: greedy where its temperature is 0, else nucleus sampling."""
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if not sampling:
        return greedy
    sampled = sample_next(logits, rng, jnp.maximum(temperature, 1e-6)[:, None], top_p[:, None], greedy=False)
    return jnp.where(temperature == 0, greedy, sampled)


@functools.partial(jax.jit, static_argnames=("config", "cache_length", "sampling"))
def _prefill(config, params, tokens, positions, segment_ids, temperature, top_p, rng, *, cache_length: int,
             sampling: bool):
    """Left-padded prompts [k, P] through a fresh cache: their cache rows and first sampled tokens."""
    logits, cache = apply(config, params, tokens, positions, segment_ids,
                          init_cache(config, tokens.shape[0], cache_length), last_logits_only=True)
    return cache, _sample_rows(logits[:, -1], temperature, top_p, rng, sampling)


@functools.partial(jax.jit, donate_argnums=(0,))
def _insert(pool, rows, slots):
    """Copy prefilled cache rows into the pool's `slots` (entries equal to the pool size are dropped)."""
    def put(big, small):
        return big.at[slots].set(small, mode="drop")

    index = jnp.broadcast_to(rows["index"], slots.shape)
    return {"index": put(pool["index"], index), "segment_ids": put(pool["segment_ids"], rows["segment_ids"]),
            "positions": put(pool["positions"], rows["positions"]),
            "layers": jax.tree.map(put, pool["layers"], rows["layers"])}


@functools.partial(jax.jit, static_argnames=("config", "rows", "sampling"), donate_argnums=(2,))
def _decode_step(config, params, pool, tokens, positions, active, temperature, top_p, rng, *, rows: int,
                 sampling: bool):
    """One token for each of the first `rows` slots, each at its own cache index."""
    def one(token, position, segment, cache):
        cache = {"index": cache["index"], **{k: jax.tree.map(lambda a: a[None], cache[k])
                                             for k in ("segment_ids", "positions", "layers")}}
        logits, new = apply(config, params, token[None, None], position[None, None], segment[None, None], cache)
        return logits[0, -1], {"index": new["index"], **{k: jax.tree.map(lambda a: a[0], new[k])
                                                         for k in ("segment_ids", "positions", "layers")}}

    head = jax.tree.map(lambda a: a[:rows], pool)
    logits, head = jax.vmap(one)(tokens[:rows], positions[:rows], active[:rows], head)
    pool = jax.tree.map(lambda a, h: jax.lax.dynamic_update_slice_in_dim(a, h, 0, axis=0), pool, head)
    return pool, _sample_rows(logits, temperature[:rows], top_p[:rows], rng, sampling)


class Stream:
    """One request in flight: `deltas` yields text as it is decoded, `completion` awaits the end."""

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop, hold_back: int):
        self.request = request
        self.cancelled = False
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._done = loop.create_future()
        self._hold_back = hold_back  # characters kept back while they could start a stop string
        self._sent = 0

    async def deltas(self):
        """Text pieces in order; the stream's text joined is exactly the completion's text."""
        while True:
            piece = await self._queue.get()
            if piece is None:
                return
            yield piece

    async def completion(self) -> Completion:
        return await self._done

    # called on the event loop by the worker (call_soon_threadsafe)
    def _push(self, text: str, final: Completion | Exception | None) -> None:
        if isinstance(final, Exception):
            if not self._done.done():
                self._done.set_exception(final)
            self._queue.put_nowait(None)
            return
        if final is not None:
            text = final.text
        elif text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            text = text.rstrip("\ufffd")
        visible = len(text) if final is not None else max(self._sent, len(text) - self._hold_back)
        if visible > self._sent:
            self._queue.put_nowait(text[self._sent:visible])
            self._sent = visible
        if final is not None:
            if not self._done.done():
                self._done.set_result(final)
            self._queue.put_nowait(None)


@dataclasses.dataclass
class _Slot:
    stream: Stream
    ids: list[int]
    started: float


class ContinuousBatcher:
    """`async with ContinuousBatcher(model) as batcher: stream = batcher.submit(request)`."""

    def __init__(self, model: LoadedModel, *, max_batch: int = 8, cache_length: int | None = None,
                 max_queue: int = 64, seed: int = 0):
        self.model = model
        self.max_batch = max_batch
        self.cache_length = min(cache_length or 2048, model.config.max_position_embeddings)
        self.max_queue = max_queue
        self.eos_ids = tuple(model.tokenizer.stop_ids)  # EOS and the chat template's end-of-turn token
        self._rng = jax.random.key(seed)
        self._steps = 0
        self._slots: list[_Slot | None] = [None] * max_batch
        self._pending: collections.deque[Stream] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seconds_per_request = 1.0  # running mean, for Retry-After
        self.tokens_decoded = 0  # over all requests, for throughput and tests
        # host copies of the per-slot decode inputs
        self._last = np.zeros(max_batch, np.int32)
        self._position = np.zeros(max_batch, np.int32)
        self._active = np.zeros(max_batch, np.int32)
        self._temperature = np.zeros(max_batch, np.float32)
        self._top_p = np.ones(max_batch, np.float32)
        self._pool = None

    async def __aenter__(self) -> "ContinuousBatcher":
        self._loop = asyncio.get_running_loop()
        self._pool = init_cache(self.model.config, self.max_batch, self.cache_length)
        self._pool["index"] = jnp.zeros((self.max_batch,), jnp.int32)
        self._thread = threading.Thread(target=self._run, name="continuous-batching", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Prompt ids as `orca-jax generate` builds them: the model's chat template with the generation prompt."""
        return self.model.tokenizer.encode_chat(messages, add_generation_prompt=True)

    def in_use(self) -> tuple[int, int]:
        """(slots decoding, requests waiting for a slot)."""
        with self._lock:
            return sum(s is not None for s in self._slots), len(self._pending)

    def submit(self, request: GenerationRequest) -> Stream:
        """Queue a request; raises UserError if it cannot fit a slot, QueueFull if too many wait."""
        n, context = len(request.prompt_ids), self.model.config.max_position_embeddings
        if not n:
            raise UserError("the prompt has no tokens")
        if n + request.max_tokens > context:
            raise UserError(f"prompt of {n} tokens + max_tokens {request.max_tokens} exceeds the model's context "
                            f"of {context} tokens")
        if _round_up(n, PROMPT_MULTIPLE) + request.max_tokens > self.cache_length:
            raise UserError(f"prompt of {n} tokens (padded to a multiple of {PROMPT_MULTIPLE}) + max_tokens "
                            f"{request.max_tokens} exceeds the server's cache of {self.cache_length} tokens per "
                            f"request (serve --cache_length)")
        stream = Stream(request, self._loop, max((len(s) for s in request.stop), default=1) - 1)
        with self._lock:
            if len(self._pending) >= self.max_queue:
                waves = (len(self._pending) + self.max_batch) / self.max_batch
                raise QueueFull(max(1, math.ceil(waves * self._seconds_per_request)))
            self._pending.append(stream)
        self._wake.set()
        return stream

    def cancel(self, stream: Stream) -> None:
        """The client went away: its slot (or queue place) is freed before the next step."""
        stream.cancelled = True
        with self._lock:
            if stream in self._pending:
                self._pending.remove(stream)
        self._wake.set()

    # worker thread

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._drop_cancelled()
                self._admit()
                if not any(self._slots):
                    self._wake.wait(0.1)
                    self._wake.clear()
                    continue
                self._step()
            except Exception as e:  # a failed step fails the requests in it, not the server
                for i, slot in enumerate(self._slots):
                    if slot is not None:
                        self._release(i, e)

    def _key(self):
        self._steps += 1
        return jax.random.fold_in(self._rng, self._steps)

    def _drop_cancelled(self) -> None:
        for i, slot in enumerate(self._slots):
            if slot is not None and slot.stream.cancelled:
                self._release(i, None)

    def _admit(self) -> None:
        free = [i for i, s in enumerate(self._slots) if s is None]
        with self._lock:
            streams = [self._pending.popleft() for _ in range(min(len(free), len(self._pending)))]
        if not streams:
            return
        try:
            self._prefill_into(streams, free)
        except Exception as e:  # these requests fail; the running ones go on
            for stream, slot in zip(streams, free):
                if self._slots[slot] is not None and self._slots[slot].stream is stream:
                    self._slots[slot] = None
                    self._active[slot] = 0
                self._notify(stream, e)

    def _prefill_into(self, streams: list[Stream], free: list[int]) -> None:
        requests = [s.request for s in streams]
        k = _power_of_two_at_least(len(streams))
        length = _round_up(max(len(r.prompt_ids) for r in requests), PROMPT_MULTIPLE)
        tokens = np.zeros((k, length), np.int32)
        positions = np.zeros((k, length), np.int32)
        segment_ids = np.zeros((k, length), np.int32)
        for row, r in enumerate(requests):  # left padding: the next token's slot is `length` for every row
            n = len(r.prompt_ids)
            tokens[row, length - n:] = r.prompt_ids
            positions[row, length - n:] = np.arange(n)
            segment_ids[row, length - n:] = 1
        temperature = np.zeros(k, np.float32)
        top_p = np.ones(k, np.float32)
        temperature[:len(requests)] = [r.temperature for r in requests]
        top_p[:len(requests)] = [r.top_p for r in requests]
        rows, first = _prefill(self.model.config, self.model.params, tokens, positions, segment_ids, temperature,
                               top_p, self._key(), cache_length=self.cache_length, sampling=bool(temperature.any()))
        slots = np.full(k, self.max_batch, np.int32)  # padding rows go nowhere
        slots[:len(streams)] = free[:len(streams)]
        self._pool = _insert(self._pool, rows, slots)
        first = np.asarray(first)
        now = time.perf_counter()
        for row, (stream, slot) in enumerate(zip(streams, free)):
            r = stream.request
            self._slots[slot] = _Slot(stream, [], now)
            self._position[slot] = len(r.prompt_ids)
            self._active[slot] = 1
            self._temperature[slot], self._top_p[slot] = r.temperature, r.top_p
            self._append(slot, int(first[row]))

    def _step(self) -> None:
        rows = _power_of_two_at_least(max(i for i, s in enumerate(self._slots) if s is not None) + 1)
        self._pool, tokens = _decode_step(
            self.model.config, self.model.params, self._pool, self._last, self._position, self._active,
            self._temperature, self._top_p, self._key(), rows=rows, sampling=bool(self._temperature[:rows].any()))
        tokens = np.asarray(tokens)
        for i in range(rows):
            if self._slots[i] is not None:
                self._position[i] += 1
                self._append(i, int(tokens[i]))

    def _append(self, slot: int, token: int) -> None:
        """Record a slot's new token; stream its text, or finish it (end of turn, stop string, max_tokens)."""
        state = self._slots[slot]
        request = state.stream.request
        state.ids.append(token)
        self.tokens_decoded += 1
        self._last[slot] = token
        done = token in self.eos_ids or len(state.ids) >= request.max_tokens
        text = self.model.tokenizer.decode(state.ids)
        if not done and any(s and s in text for s in request.stop):
            done = True
        if done:
            self._release(slot, finish_completion(self.model.tokenizer, self.eos_ids, request, state.ids))
        else:
            self._notify(state.stream, None, text)

    def _release(self, slot: int, final: Completion | Exception | None) -> None:
        state = self._slots[slot]
        self._slots[slot] = None
        self._active[slot] = 0
        self._temperature[slot] = 0.0
        if final is None:  # cancelled: nobody is listening
            return
        if isinstance(final, Completion):
            seconds = time.perf_counter() - state.started
            self._seconds_per_request = 0.9 * self._seconds_per_request + 0.1 * seconds
        self._notify(state.stream, final)

    def _notify(self, stream: Stream, final: Completion | Exception | None, text: str = "") -> None:
        try:
            self._loop.call_soon_threadsafe(stream._push, text, final)
        except RuntimeError:  # the event loop has closed: the server is shutting down
            pass
