"""ChatClient against a fake OpenAI server that injects 429 / 500 / dropped connections / bad bodies."""

import asyncio
import email.utils
import random

import pytest

from fake_openai_server import FakeOpenAIServer, answer_for
from orca_jax.errors import UserError
from orca_jax.teacher.client import ChatClient, SamplingParams, TeacherUnavailable
from orca_jax.teacher.rate_limit import backoff_delay, parse_retry_after

SAMPLING = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=64)


def _ask(url, prompts, **client_kwargs):
    async def go():
        kwargs = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_retries": 5, **client_kwargs}
        async with ChatClient(url, **kwargs) as client:
            return await asyncio.gather(*[
                client.complete("teacher-model", [{"role": "system", "content": "sys"},
                                                  {"role": "user", "content": p}], SAMPLING)
                for p in prompts])
    return asyncio.run(go())


def test_retries_through_429_500_dropped_connections_and_cut_bodies():
    schedule = ["429", "500", "drop", "truncated", "ok"]
    with FakeOpenAIServer(lambda p, n: schedule[min(n, 4)], retry_after="0.3") as server:
        outcomes = _ask(server.url, ["alpha", "beta"])
        log = list(server.log)
    for prompt, outcome in zip(["alpha", "beta"], outcomes):
        assert outcome.status == "ok" and outcome.finish_reason == "stop"
        assert outcome.text == answer_for("teacher-model", "sys", prompt)
        assert outcome.attempts == 5 and outcome.completion_tokens > 0
        times = [t for t, p, _ in log if p == prompt]
        assert [a for _, p, a in log if p == prompt] == schedule
        # Retry-After 0.3 s is a floor on the wait after the 429 (backoff alone is <= 0.05 s).
        assert times[1] - times[0] >= 0.29


def test_cut_off_filtered_empty_and_malformed_answers_are_recorded_as_such():
    actions = {"cut": "length", "bad": "malformed", "filtered": "filtered", "empty": "empty"}
    with FakeOpenAIServer(lambda p, n: actions[p]) as server:
        cut, bad, filtered, empty = _ask(server.url, list(actions), max_retries=2)
        assert server.served("malformed") == ["bad"] * 3  # retried, then recorded
        assert len(server.log) == 6  # the others are answers: recorded at once
    assert cut.status == "length" and cut.finish_reason == "length" and cut.text
    assert bad.status == "malformed" and bad.text is None and "not JSON" in bad.error
    assert filtered.status == "unexpected_finish" and "content_filter" in filtered.error
    assert empty.status == "malformed" and empty.text == ""


def test_exhausted_retries_raise_instead_of_recording():
    with FakeOpenAIServer(lambda p, n: "500") as server:
        with pytest.raises(TeacherUnavailable, match="HTTP 500"):
            _ask(server.url, ["x"], max_retries=2)
        assert len(server.log) == 3


def test_bad_api_key_stops_the_run_without_echoing_the_key(monkeypatch):
    monkeypatch.setenv("FAKE_TEACHER_KEY", "sk-wrong-key-123")
    with FakeOpenAIServer(expected_api_key="sk-right") as server:
        with pytest.raises(UserError, match="HTTP 401") as err:
            _ask(server.url, ["x"], api_key_env="FAKE_TEACHER_KEY")
    assert "sk-wrong-key-123" not in str(err.value)
    monkeypatch.setenv("FAKE_TEACHER_KEY", "sk-right")
    with FakeOpenAIServer(expected_api_key="sk-right") as server:
        assert _ask(server.url, ["x"], api_key_env="FAKE_TEACHER_KEY")[0].status == "ok"


def test_concurrency_bound_and_request_rate():
    with FakeOpenAIServer(delay_s=0.2) as server:
        _ask(server.url, [f"p{i}" for i in range(12)], concurrency=3)
        assert server.max_in_flight == 3
    with FakeOpenAIServer() as server:
        _ask(server.url, [f"p{i}" for i in range(8)], concurrency=8, requests_per_minute=600)
        starts = sorted(t for t, _, _ in server.log)
    # 600/min = one start per 0.1 s: 8 starts span at least 0.7 s (less a little arrival jitter);
    # unlimited, all 8 would start at once.
    assert starts[-1] - starts[0] >= 0.6


def test_backoff_delay_bounds():
    rng = random.Random(0)
    delays = [backoff_delay(3, base=1.0, cap=5.0, rng=rng) for _ in range(2000)]
    assert 0 <= min(delays) < 0.1 and 4.9 < max(delays) <= 5.0  # full jitter up to min(cap, 8)
    assert all(backoff_delay(0, base=1.0, cap=5.0, retry_after=7.0, rng=rng) == 7.0 for _ in range(50))


def test_parse_retry_after_both_http_forms():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
