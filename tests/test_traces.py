"""Trace readers round-trip through the writer; every malformed-input case is named or counted."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orca_jax.cli import main
from orca_jax.data.traces import BadRecord, ReadReport, Trace, read_traces, write_traces


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


OPENORCA = [
    {"id": "flan.1", "system_prompt": "You are an AI assistant.", "question": "What is 2+2?", "response": "2+2 is 4."},
    {"id": "cot.7", "system_prompt": "", "question": "Ünïcode? 日本", "response": "Yes — 日本."},
]


def _roundtrip(tmp_path, path, fmt=None, prompts=False):
    first = list(read_traces(path, format=fmt, require_response=not prompts))
    out = str(tmp_path / "out.jsonl")
    assert write_traces(out, first) == len(first)
    again = list(read_traces(out, require_response=not prompts))
    assert again == first
    return first


def test_openorca_jsonl_and_parquet(tmp_path):
    traces = _roundtrip(tmp_path, _jsonl(tmp_path / "oo.jsonl", OPENORCA))
    assert [t.id for t in traces] == ["flan.1", "cot.7"]
    assert traces[0].system == "You are an AI assistant." and traces[0].response == "2+2 is 4."
    assert traces[1].turns[0]["content"] == "Ünïcode? 日本" and traces[0].source == "oo"
    assert [t.category for t in traces] == ["flan", "cot"]  # sub-collection from the OpenOrca id
    parquet = str(tmp_path / "oo.parquet")
    pq.write_table(pa.Table.from_pylist(OPENORCA), parquet)
    from_parquet = _roundtrip(tmp_path, parquet)
    assert [(t.id, t.system, t.turns) for t in from_parquet] == [(t.id, t.system, t.turns) for t in traces]


def test_openai_messages_multi_turn(tmp_path):
    rec = {"id": "c1", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
                                    {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"},
                                    {"role": "assistant", "content": "a2"}]}
    (trace,) = _roundtrip(tmp_path, _jsonl(tmp_path / "m.jsonl", [rec]))
    assert trace.system == "S" and [t["content"] for t in trace.turns] == ["u1", "a1", "u2", "a2"]


def test_sharegpt(tmp_path):
    rec = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    (trace,) = _roundtrip(tmp_path, _jsonl(tmp_path / "sg.jsonl", [rec]))
    assert trace.system == "S" and trace.turns == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_flan_prompt_collection(tmp_path):
    rec = {"inputs": "Premise: ... Options: - yes - no", "targets": "yes", "_task_source": "Flan2021",
           "_task_name": "anli_r1", "_template_type": "zs_opt"}
    (trace,) = _roundtrip(tmp_path, _jsonl(tmp_path / "flan.jsonl", [rec]), prompts=True)
    parquet = str(tmp_path / "flan.parquet")
    pq.write_table(pa.Table.from_pylist([rec]), parquet)
    assert list(read_traces(parquet, require_response=False)) == [trace]
    assert trace.turns == [{"role": "user", "content": rec["inputs"]}] and trace.response == ""
    assert (trace.task, trace.category, trace.metadata) == ("anli_r1", "Flan2021", {"target": "yes", "template_type": "zs_opt"})
    # Written back as this project's format, a prompt is not a training trace.
    out = _jsonl(tmp_path / "prompts.jsonl", [trace.to_json()])
    with pytest.raises(BadRecord, match="turns: last turn must be an assistant response"):
        list(read_traces(out))


def test_flan_records_as_training_data_answer_with_their_target(tmp_path):
    records = [
        {"inputs": "Premise: A. Hypothesis: B. Options: - yes - no", "targets": "no", "_task_source": "Flan2021",
         "_task_name": "anli_r1", "_template_type": "zs_opt"},
        {"inputs": "Q: 1+1? A: 2\n\nQ: 2+2? A:", "targets": "4", "_task_source": "CoT", "_task_name": "gsm8k",
         "_template_type": "fs_noopt"},
        {"inputs": "Say nothing.", "targets": " ", "_task_source": "NIv2", "_task_name": "t1", "_template_type": "zs_noopt"},
    ]
    report = ReadReport()
    traces = list(read_traces(_jsonl(tmp_path / "flan_v2.jsonl", records), on_bad_record="skip", report=report))
    # zero-shot and few-shot templates alike; the prompt verbatim, the target as the answer
    assert [(t.turns[0]["content"], t.response, t.metadata["template_type"]) for t in traces] == [
        (r["inputs"], r["targets"], r["_template_type"]) for r in records[:2]]
    assert report.skipped_per_reason == {"targets: empty (nothing to train on)": 1}


def test_writer_round_trips_every_field(tmp_path):
    full = Trace(id="x", turns=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], system="sys",
                 source="src", teacher="gpt-4", task="t", category="c", strategy="step_by_step",
                 metadata={"finish_reason": "stop", "n": [1, 2]}, teacher_topk_ids=[[1, 2], [3, 4]],
                 teacher_topk_logprobs=[[-0.1, -2.5], [-0.01, -5.0]])
    path = str(tmp_path / "full.jsonl")
    write_traces(path, [full])
    assert list(read_traces(path)) == [full]


BAD_CASES = [  # (raw line, field named, problem words)
    (b'{"id": "1", "question": "q", "response": "a"', "(line)", "broken JSON"),
    (json.dumps({"id": "2", "question": "q"}).encode(), "response", "missing"),  # detected as openorca by the good line
    (json.dumps({"id": "3", "question": 5, "response": "a"}).encode(), "question", "expected str, got int"),
    (json.dumps({"id": "4", "question": "q", "response": "  "}).encode(), "response", "empty"),
    (b'{"id": "5", "question": "q\xff", "response": "a"}', "(line)", "invalid UTF-8"),
]


def test_bad_records_raise_with_file_line_field(tmp_path):
    good = json.dumps(OPENORCA[0]).encode()
    for lineno, (raw, field, problem) in enumerate(BAD_CASES, start=2):
        path = tmp_path / f"bad{lineno}.jsonl"
        path.write_bytes(good + b"\n" + raw + b"\n")
        with pytest.raises(BadRecord) as err:
            list(read_traces(str(path)))
        assert str(err.value).startswith(f"{path}:2: {field}: ") and problem in str(err.value)


def test_unknown_role_and_empty_response_in_chat_formats(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [
        {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]},
    ])
    report = ReadReport()
    assert list(read_traces(path, format="openai", on_bad_record="skip", report=report)) == []
    assert [str(b) for b in report.bad][:2] == [f"{path}:1: messages[1].role: unknown role 'bot' (expected system first, then user/assistant)",
                                                f"{path}:2: messages[1].content: empty response"]
    report = ReadReport()
    list(read_traces(path, format="sharegpt", on_bad_record="skip", report=report))
    assert str(report.bad[2]) == f"{path}:3: conversations[1].from: unknown role 'robot' (expected system, human or gpt)"


def test_skip_counts_per_reason(tmp_path):
    lines = [json.dumps(OPENORCA[0]).encode()] + [raw for raw, _, _ in BAD_CASES] + [BAD_CASES[0][0], json.dumps(OPENORCA[1]).encode()]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ReadReport()
    traces = list(read_traces(str(path), on_bad_record="skip", report=report))
    assert [t.id for t in traces] == ["flan.1", "cot.7"] and report.records == 2
    reasons = report.skipped_per_reason
    assert sum(reasons.values()) == 6 and reasons["response: missing"] == 1
    assert sum(n for r, n in reasons.items() if "broken JSON" in r) == 2


def test_validate_traces_command(tmp_path, capsys):
    good = _jsonl(tmp_path / "good.jsonl", OPENORCA)
    assert main(["validate-traces", good]) == 0
    out = capsys.readouterr().out
    assert "2 good records, 0 bad" in out and "per system message" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(OPENORCA[0]).encode() + b"\n" + BAD_CASES[3][0] + b"\n")
    assert main(["validate-traces", str(bad)]) == 1
    assert f"{bad}:2: response: empty" in capsys.readouterr().out
    assert main(["validate-traces", str(bad), "--on_bad_record", "raise"]) == 2  # UserError -> one line, exit 2


def test_parquet_bad_row_is_named_by_row(tmp_path):
    path = str(tmp_path / "oo.parquet")
    rows = [OPENORCA[0], {"id": "x", "system_prompt": "", "question": "q", "response": None}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(BadRecord, match=r"oo\.parquet:2: response: expected str, got NoneType"):
        list(read_traces(path))


def test_on_bad_record_from_gin(tmp_path):
    import gin

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(json.dumps(OPENORCA[0]).encode() + b"\n" + BAD_CASES[0][0] + b"\n")
    with gin.unlock_config():
        gin.parse_config(["read_traces.on_bad_record = 'skip'"])
    try:
        assert [t.id for t in read_traces(str(path))] == ["flan.1"]
    finally:
        gin.clear_config()
    with pytest.raises(BadRecord):
        list(read_traces(str(path)))
