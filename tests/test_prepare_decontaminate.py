"""`orca-jax prepare --decontaminate`: a benchmark test item planted in a trace is reported per
benchmark, as `orca-jax decontaminate` reports it, and with --drop_contaminated that trace is
absent from the cache while every clean trace is cached as it would be without the check."""

import json

import numpy as np
import pytest

pytest.importorskip("seqio")

from orca_jax.cli import main  # noqa: E402
from orca_jax.data.cache import ExampleCache  # noqa: E402
from orca_jax.data.chat import tokenize_trace  # noqa: E402
from orca_jax.data.tokenizer import load_tokenizer  # noqa: E402
from orca_jax.data.traces import read_traces  # noqa: E402

PLANTED = ("A baker fills 12 trays with 24 rolls each and sells all but 30 of them by noon; "
           "how many rolls did the baker sell?")
UNUSED_GSM8K = "Tom reads 15 pages every evening for two weeks and then 40 pages on Sunday. How many pages in all?"
BBH_NAVIGATE = ("If you follow these instructions, do you return to the starting point? Take 3 steps "
                "forward. Turn around. Take 3 steps forward.\nOptions:\n- Yes\n- No")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, smollm2_tokenizer):
    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    smollm2_tokenizer.save(str(folder))
    return str(folder)


@pytest.fixture()
def benchmarks(tmp_path):
    root = tmp_path / "benchmarks"
    (root / "gsm8k").mkdir(parents=True)
    (root / "bbh").mkdir()
    (root / "gsm8k" / "test.jsonl").write_text("".join(
        json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in (UNUSED_GSM8K, PLANTED)))
    (root / "bbh" / "navigate.json").write_text(json.dumps({"examples": [{"input": BBH_NAVIGATE, "target": "Yes"}]}))
    return str(root)


@pytest.fixture()
def traces(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    records = [{"id": f"clean-{i}", "system_prompt": "", "question": f"What is {i} times {i}?",
                "response": f"{i} times {i} is {i * i}."} for i in range(4)]
    # the benchmark question pasted into a user turn with other case and punctuation
    records.insert(2, {"id": "planted", "system_prompt": "", "question": "Solve: " + PLANTED.upper().replace(";", ","),
                       "response": "They sold 258 rolls."})
    (data / "chatgpt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return data


def _prepare(traces, cache, tokenizer_dir, benchmarks, *extra):
    return main(["prepare", "--task", "traces_chatgpt", "--data_dir", str(traces), "--cache_dir", str(cache),
                 "--tokenizer", tokenizer_dir, "--decontaminate", "gsm8k,bbh", "--benchmark_data_dir", benchmarks, *extra])


def test_planted_item_is_reported_and_kept_without_drop(tmp_path, traces, tokenizer_dir, benchmarks, capsys):
    assert _prepare(traces, tmp_path / "cache", tokenizer_dir, benchmarks) == 0
    out = capsys.readouterr().out
    assert "| gsm8k | 2 | 2 | 0 | 1 |" in out and "| bbh | 1 | 1 | 0 | 0 |" in out, out
    assert f"gsm8k test/1 in {traces / 'chatgpt.jsonl'} trace planted:" in out, out
    assert len(ExampleCache(str(tmp_path / "cache" / "traces_chatgpt"))) == 5  # reported, not dropped


def test_drop_contaminated_leaves_the_planted_trace_out_of_the_cache(tmp_path, traces, tokenizer_dir, benchmarks,
                                                                      capsys):
    assert _prepare(traces, tmp_path / "cache", tokenizer_dir, benchmarks, "--drop_contaminated") == 0
    out = capsys.readouterr().out
    assert "| gsm8k | 2 | 2 | 0 | 1 |" in out, out
    stored = ExampleCache(str(tmp_path / "cache" / "traces_chatgpt"))
    reason = "shares a 13-gram with a benchmark test item (--drop_contaminated)"
    assert stored.metadata["skipped_per_reason"] == {reason: 1}
    assert f"skipped 1: {reason}" in out
    # exactly the clean traces, in file order, tokenized as prepare tokenizes any trace
    tok = load_tokenizer(tokenizer_dir)
    clean = [t for t in read_traces(str(traces / "chatgpt.jsonl")) if t.id != "planted"]
    assert len(stored) == len(clean) == 4
    for i, trace in enumerate(clean):
        np.testing.assert_array_equal(stored.example(i)["ids"], tokenize_trace(trace, tok, "chatml")["ids"])
    assert not any("ROLLS" in tok.decode(stored.example(i)["ids"]) for i in range(len(stored)))


def test_drop_without_benchmarks_is_one_line(tmp_path, traces, capsys):
    rc = main(["prepare", "--task", "traces_chatgpt", "--data_dir", str(traces), "--cache_dir", str(tmp_path / "c"),
               "--drop_contaminated"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("orca-jax prepare: error: --drop_contaminated and --benchmark_data_dir go with "
                               "--decontaminate BENCHMARKS")
    assert not (tmp_path / "c").exists()
