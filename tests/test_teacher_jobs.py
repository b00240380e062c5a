"""Trace generation end to end against a fake OpenAI server: faults, exactly-once output,
resume after SIGKILL without re-asking, and the API key never written anywhere."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from fake_openai_server import FakeOpenAIServer, answer_for
from orca_jax.data.traces import Trace, read_traces
from orca_jax.errors import UserError
from orca_jax.teacher.client import SamplingParams
from orca_jax.teacher.jobs import TraceRequest, generate_traces, rejected_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLING = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=64)
VOLATILE = ("started_at", "finished_at", "attempts")  # differ between runs by nature


def _write_prompts(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"inputs": f"question number {i}: what is {i} + {i}?", "targets": str(2 * i),
                                "_task_source": "NIv2", "_task_name": f"task{i % 3}", "_template_type": "zs_opt"}) + "\n")


def _read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _stable(traces):
    for t in traces:
        for key in VOLATILE:
            t["metadata"]["generation"].pop(key)
    return traces


def _requests(n):
    return [TraceRequest(prompt=Trace(id=f"p{i}", turns=[{"role": "user", "content": f"prompt {i}"}], task="t",
                                      category="niv2"),
                         system_message="Think step by step.", system_message_id=7) for i in range(n)]


def _generate(server, tmp_path, requests, **kw):
    return generate_traces(requests, teacher=server.url, model="gpt-x", sampling=SAMPLING,
                           out_path=str(tmp_path / "out.jsonl"), progress=False, concurrency=4,
                           api_key_env=None, **{"max_retries": 6, **kw})


def test_faults_give_exactly_one_trace_per_prompt_and_rejects_are_kept_apart(tmp_path, monkeypatch):
    # Backoff is tiny for the test; Retry-After (0.2 s here) still applies.
    monkeypatch.setattr("orca_jax.teacher.client.backoff_delay", lambda attempt, retry_after=None, **kw: retry_after or 0.01)
    schedules = {0: ["429", "ok"], 1: ["500", "500", "ok"], 2: ["drop", "ok"], 3: ["drop", "429", "500", "ok"]}

    def faults(prompt, attempt):
        i = int(prompt.split()[-1])
        if i == 17:
            return "length"
        if i == 18:
            return "malformed"
        schedule = schedules[i % 5] if i % 5 in schedules else ["ok"]
        return schedule[min(attempt, len(schedule) - 1)]

    with FakeOpenAIServer(faults) as server:
        summary = _generate(server, tmp_path, _requests(25), max_retries=4)
        assert sorted(set(server.served("ok"))) == sorted(f"prompt {i}" for i in range(25) if i not in (17, 18))
        assert len(server.served("ok")) == 23  # every good answer asked for exactly once
    good = _read(tmp_path / "out.jsonl")
    bad = _read(rejected_path(str(tmp_path / "out.jsonl")))
    assert [t["id"] for t in good] == [f"p{i}" for i in range(25) if i not in (17, 18)]  # prompt order
    assert [(t["id"], t["metadata"]["generation"]["status"]) for t in bad] == [("p17", "length"), ("p18", "malformed")]
    assert bad[0]["turns"][-1]["role"] == "assistant" and bad[0]["metadata"]["generation"]["finish_reason"] == "length"
    assert summary.written == 23 and summary.rejected == 2 and summary.unfinished == 0
    for t in good:
        gen = t["metadata"]["generation"]
        assert t["turns"][-1]["content"] == answer_for("gpt-x", "Think step by step.", t["turns"][0]["content"])
        assert t["teacher"] == "gpt-x" and t["system"] == "Think step by step."
        assert gen["sampling"] == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64}
        assert gen["system_message_id"] == 7 and gen["finish_reason"] == "stop" and gen["teacher"] == server.url
        assert gen["started_at"] <= gen["finished_at"]
    assert {t["id"]: t["metadata"]["generation"]["attempts"] for t in good}["p3"] == 4
    # The output is what training reads.
    assert [t.id for t in read_traces(str(tmp_path / "out.jsonl"))] == [t["id"] for t in good]


def test_rerun_asks_nothing_finished_and_repairs_a_cut_last_line(tmp_path):
    with FakeOpenAIServer() as server:
        _generate(server, tmp_path, _requests(6))
        first = _read(tmp_path / "out.jsonl")
        # Simulate a kill in the middle of writing line 4: lines 4.. lost, line 4 half written.
        with open(tmp_path / "out.jsonl", "w") as f:
            f.writelines(json.dumps(t) + "\n" for t in first[:3])
            f.write(json.dumps(first[3])[:25])
        summary = _generate(server, tmp_path, _requests(6))
        assert len(server.log) == 6  # all six came from the cache
    assert summary.already_written == 3 and summary.from_cache == 3 and summary.queried == 0
    assert _read(tmp_path / "out.jsonl") == first


def test_repeated_prompts_give_one_trace_and_a_foreign_output_file_is_refused(tmp_path):
    requests = _requests(3)
    with FakeOpenAIServer() as server:
        summary = _generate(server, tmp_path, requests + requests[:2])
        assert summary.total == 3 and len(server.log) == 3
        assert [t["id"] for t in _read(tmp_path / "out.jsonl")] == ["p0", "p1", "p2"]
        clash = TraceRequest(prompt=requests[0].prompt, system_message="Answer briefly.")
        with pytest.raises(UserError, match="appears twice"):
            _generate(server, tmp_path, requests + [clash])
        # The same out file asked for with another system message: not silently mixed.
        with pytest.raises(UserError, match="generated with other settings"):
            _generate(server, tmp_path, [clash])


def test_unavailable_teacher_leaves_prompts_for_the_next_run(tmp_path):
    down = {"on": True}
    with FakeOpenAIServer(lambda p, n: "500" if down["on"] and p == "prompt 1" else "ok") as server:
        summary = _generate(server, tmp_path, _requests(4), max_retries=1)
        assert summary.unfinished == 1 and [t["id"] for t in _read(tmp_path / "out.jsonl")] == ["p0", "p2", "p3"]
        down["on"] = False
        summary = _generate(server, tmp_path, _requests(4), max_retries=1)
    assert summary.queried == 1 and summary.unfinished == 0
    assert sorted(t["id"] for t in _read(tmp_path / "out.jsonl")) == ["p0", "p1", "p2", "p3"]


def _cli(tmp_path, url, out, env):
    return [sys.executable, "-m", "orca_jax.cli", "generate-traces", "--prompts", str(tmp_path / "prompts.jsonl"),
            "--teacher", url, "--model", "gpt-x", "--system-messages", str(tmp_path / "messages.json"),
            "--out", str(out), "--concurrency", "2", "--max_tokens", "64"]


def test_sigkill_and_restart_no_duplicates_no_requery_same_file_as_uninterrupted(tmp_path):
    n = 40
    _write_prompts(tmp_path / "prompts.jsonl", n)
    (tmp_path / "messages.json").write_text(json.dumps(["", "Explain like I'm five.", "Think step by step."]))
    key = "sk-test-secret-4242"
    env = {**os.environ, "OPENAI_API_KEY": key, "PYTHONPATH": REPO}
    out = tmp_path / "killed" / "traces.jsonl"
    out.parent.mkdir()
    with FakeOpenAIServer(delay_s=0.15, expected_api_key=key) as server:
        with open(tmp_path / "killed.log", "w") as log:
            proc = subprocess.Popen(_cli(tmp_path, server.url, out, env), stdout=log, stderr=log, env=env)
            deadline = time.time() + 60
            while len(server.log) < 12 and time.time() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        time.sleep(0.5)  # let requests already on the wire reach the log
        asked_before = len(server.log)
        cached = sqlite3.connect(out.parent / "traces.cache.sqlite").execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        assert 0 < cached < n, "the kill should land mid-run"
        with open(tmp_path / "resumed.log", "w") as log:
            subprocess.run(_cli(tmp_path, server.url, out, env), stdout=log, stderr=log, env=env, check=True)
        asked_on_resume = len(server.log) - asked_before
        assert asked_on_resume == n - cached  # nothing cached was asked again

        whole = tmp_path / "whole" / "traces.jsonl"
        whole.parent.mkdir()
        subprocess.run(_cli(tmp_path, server.url, whole, env), env=env, check=True, capture_output=True)
    resumed = _read(out)
    assert len({t["id"] for t in resumed}) == len(resumed) == n
    assert _stable(resumed) == _stable(_read(whole))
    assert {t["metadata"]["generation"]["system_message_id"] for t in resumed} == {1, 2, 3}
    # The API key went over the wire (the server checked it) but is nowhere on disk.
    for path in list((tmp_path).rglob("*")):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_top_k_needs_a_local_teacher(tmp_path):
    with pytest.raises(UserError, match="--topk"):
        generate_traces(_requests(1), teacher="http://127.0.0.1:9/v1", model="m", sampling=SAMPLING,
                        out_path=str(tmp_path / "o.jsonl"), topk=5)
