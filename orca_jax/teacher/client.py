"""Asynchronous client for an OpenAI-compatible `/v1/chat/completions` endpoint.

Built for long, paid, rate-limited runs: bounded concurrency, evenly spaced request
starts, retries with jittered exponential backoff on 429 / 5xx / timeouts / dropped
connections (honouring Retry-After), and every finished answer classified, so that a
malformed or cut-off response is never mistaken for a good trace.

The API key is read from an environment variable, sent only in the Authorization
header, and scrubbed from every error text this module produces.
"""

import asyncio
import dataclasses
import json
import os
import random
import time
import urllib.parse

import aiohttp

from orca_jax.errors import UserError
from orca_jax.teacher.rate_limit import RequestRateLimiter, backoff_delay, parse_retry_after

# Outcome statuses. "ok" is a usable trace (finish_reason "stop", non-empty). The others are
# finished too, recorded and never silently kept as good: "length" (cut off by max_tokens),
# "unexpected_finish" (any other finish_reason, e.g. content_filter), "malformed" (unparseable
# after retries, or empty), "rejected" (the server refused it, e.g. 400 for a prompt over the context).
STATUS_OK = "ok"
STATUS_LENGTH = "length"
STATUS_UNEXPECTED_FINISH = "unexpected_finish"
STATUS_MALFORMED = "malformed"
STATUS_REJECTED = "rejected"

# Statuses worth retrying: rate limiting, request timeout, server-side failures.
_RETRY_STATUSES = {408, 409, 429} | set(range(500, 600))
# Statuses that will fail for every request of the run (bad key, wrong model/URL): stop at once.
_FATAL_STATUSES = {401, 403, 404}


def classify_answer(content: str, finish_reason: str | None) -> tuple[str, str | None]:
    """(status, error) of a received answer: only a non-empty one that stopped by itself is "ok"."""
    if not content.strip():
        return STATUS_MALFORMED, f"empty content (finish_reason {finish_reason!r})"
    if finish_reason == "stop":
        return STATUS_OK, None
    status = STATUS_LENGTH if finish_reason == "length" else STATUS_UNEXPECTED_FINISH
    return status, f"finish_reason {finish_reason!r} after {len(content)} characters"


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters sent with every request (and part of the cache key)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ChatOutcome:
    """How one request finished; stored in the cache and copied into the trace."""

    status: str
    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    started_at: float  # unix seconds of the first attempt
    finished_at: float
    response_model: str | None = None
    error: str | None = None
    # Local teachers with top-k capture only: the response token ids and, per token, the
    # teacher's top-k next-token ids and log-probs.
    token_ids: list[int] | None = None
    topk_ids: list[list[int]] | None = None
    topk_logprobs: list[list[float]] | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ChatOutcome":
        return cls(**d)


class TeacherUnavailable(Exception):
    """Retries exhausted on transient failures; the request did not finish and is not recorded."""


def normalize_base_url(url: str) -> str:
    """`http://host:port` or `.../v1` -> `.../v1` without a trailing slash; rejects non-HTTP URLs."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"--teacher: expected an http(s) URL of an OpenAI-compatible API, got {url!r}")
    path = parsed.path.rstrip("/")
    if not path:
        path = "/v1"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


class ChatClient:
    """Use as `async with ChatClient(...) as client: outcome = await client.complete(...)`.

    `name` (the normalized URL) identifies the teacher in cache keys and traces.
    """

    def __init__(self, base_url: str, *, api_key_env: str | None = "OPENAI_API_KEY", concurrency: int = 8,
                 requests_per_minute: float | None = None, timeout_s: float = 600.0, max_retries: int = 8,
                 backoff_base_s: float = 1.0, backoff_cap_s: float = 60.0, seed: int | None = None):
        self.base_url = self.name = normalize_base_url(base_url)
        self.parallelism = concurrency
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self._semaphore = asyncio.Semaphore(concurrency)
        self._limiter = RequestRateLimiter(requests_per_minute)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._concurrency = concurrency
        self.max_retries = max_retries
        self._backoff = dict(base=backoff_base_s, cap=backoff_cap_s)
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self.retries = 0  # transient failures seen, for the progress display

    async def __aenter__(self) -> "ChatClient":
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self._concurrency))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._session.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "<redacted>") if self._api_key else text

    async def complete(self, model: str, messages: list[dict], sampling: SamplingParams) -> ChatOutcome:
        """Sends one chat request until it finishes; raises TeacherUnavailable when retries run out."""
        body = {"model": model, "messages": messages, **sampling.as_dict()}
        started = time.time()
        last_error, retry_after = "", None
        async with self._semaphore:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    self.retries += 1
                    await asyncio.sleep(backoff_delay(attempt - 1, retry_after=retry_after, rng=self._rng,
                                                      **self._backoff))
                retry_after = None
                await self._limiter.acquire()
                try:
                    async with self._session.post(f"{self.base_url}/chat/completions", json=body) as resp:
                        raw = await resp.read()
                        status = resp.status
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    # Dropped connection, reset, incomplete body, or timeout: nothing usable arrived.
                    last_error = f"{type(e).__name__}: {e}"
                    continue
                text = raw.decode("utf-8", errors="replace")
                if status in _FATAL_STATUSES:
                    raise UserError(f"teacher {self.base_url} answered HTTP {status}: {self._scrub(text[:300])}")
                if status in _RETRY_STATUSES:
                    last_error = f"HTTP {status}: {text[:200]}"
                    continue
                if status != 200:
                    return self._outcome(STATUS_REJECTED, None, started, attempt, error=f"HTTP {status}: {text[:500]}")
                parsed = _parse_completion(text)
                if isinstance(parsed, str):
                    last_error = f"malformed response: {parsed}"
                    if attempt == self.max_retries:
                        return self._outcome(STATUS_MALFORMED, None, started, attempt, error=last_error)
                    continue
                content, finish_reason, usage, response_model = parsed
                status_name, error = classify_answer(content, finish_reason)
                return self._outcome(status_name, content, started, attempt, finish_reason=finish_reason,
                                     usage=usage, response_model=response_model, error=error)
        raise TeacherUnavailable(self._scrub(f"{self.max_retries + 1} attempts failed; last: {last_error}"))

    def _outcome(self, status, text, started, attempt, *, finish_reason=None, usage=None, response_model=None,
                 error=None) -> ChatOutcome:
        usage = usage or {}
        return ChatOutcome(
            status=status, text=text, finish_reason=finish_reason,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            attempts=attempt + 1, started_at=started, finished_at=time.time(),
            response_model=response_model, error=self._scrub(error) if error else None)


def _parse_completion(text: str):
    """(content, finish_reason, usage, model) from a chat completion body, or a string saying what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not JSON ({e.msg} at char {e.pos})"
    if not isinstance(data, dict):
        return "top level is not an object"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "no choices"
    message = choices[0].get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        return "choices[0].message.content is not a string"
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return message["content"], choices[0].get("finish_reason"), usage, data.get("model")
