"""GPT-4-as-judge against an in-test OpenAI-compatible judge on 127.0.0.1."""

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eval_tiny_model import tiny_model
from orca_jax.cli import main
from orca_jax.errors import UserError
from orca_jax.evaluation.judge import parse_scores, read_answers, run_judge
from orca_jax.evaluation.prompt_sets import read_prompt_set
from orca_jax.model.hf_convert import save_hf_folder

KEY = "sk-judge-secret-42"


class FakeJudge:
    """Scores an answer 8 if it says "detailed", else 4, and adds 1 to Assistant 1: a judge with position bias.
    Answers whose prompt contains "garble" get a review without scores."""

    def __init__(self):
        self.requests = []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"error": "bad key"})
                text = body["messages"][-1]["content"]
                judge.requests.append(text)
                answers = re.findall(r"Answer\]\n(.*?)\n\n\[The End", text, re.S)
                scores = [(8 if "detailed" in a else 4) + (1 if i == 0 else 0) for i, a in enumerate(answers)]
                review = "I cannot decide." if "garble" in text else f"{scores[0]} {scores[1]}\nBecause."
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": review},
                                              "finish_reason": "stop"}], "model": body["model"]})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("review, scores", [
    ("8 7\nAssistant 1 is better.", (8.0, 7.0)),
    ("9, 6.5\n...", (9.0, 6.5)),
    ("Assistant 1: 8\nAssistant 2: 7", None),  # the protocol wants both scores on the first line
    ("I prefer the first.", None),
])
def test_parse_scores(review, scores):
    assert parse_scores(review) == scores


def test_both_orders_relative_score_cache_and_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUDGE_KEY", KEY)
    cands = _write(tmp_path / "cand.jsonl", [
        {"id": 1, "prompt": "Explain tides.", "response": "A detailed answer.", "set": "vicuna"},
        {"id": 2, "prompt": "Name a color.", "response": "Blue.", "set": "vicuna"},
        {"id": 3, "prompt": "Write a haiku.", "response": "A detailed haiku.", "set": "user"},
        {"id": 4, "prompt": "garble this", "response": "x", "set": "user"},
    ])
    refs = _write(tmp_path / "ref.jsonl", [
        {"id": 1, "prompt": "Explain tides.", "response": "Short."},
        {"id": 2, "prompt": "Name a color.", "response": "Red, in detailed words."},
        {"id": 3, "prompt": "Write a haiku.", "response": "A detailed poem."},
        {"id": 4, "prompt": "garble this", "response": "y"},
    ])
    out = tmp_path / "out"
    with FakeJudge() as judge:
        summary = run_judge(cands, refs, judge.url, str(out), api_key_env="JUDGE_KEY")
        assert len(judge.requests) == 8  # every pair in both orders
        shown_first = {re.search(r"Answer\]\n(.*?)\n", r).group(1) for r in judge.requests}
        assert {"A detailed answer.", "Short."} <= shown_first
        # Position bias (+1 for Assistant 1) hits candidate and reference once each per pair.
        # id 1: cand 9+8, ref 4+5; id 2: cand 5+4, ref 8+9
        assert summary["vicuna"]["relative_score"] == pytest.approx(100 * (17 + 9) / (9 + 17))
        assert summary["vicuna"]["reviews"] == 4
        # id 3: both detailed: cand 9+8, ref 8+9; id 4 unparsed
        assert summary["user"] == {"relative_score": 100.0, "candidate_score": 17.0, "reference_score": 17.0,
                                   "reviews": 2, "unparsed": 2}
        assert summary["overall"]["candidate_score"] == 17 + 9 + 17 and summary["overall"]["unparsed"] == 2
        # Restarted with the same arguments: everything comes from judgments.jsonl.
        again = run_judge(cands, refs, judge.url, str(out), api_key_env="JUDGE_KEY")
        assert again == summary and len(judge.requests) == 8
    for name in ("judgments.jsonl", "judge_summary.json"):
        assert KEY not in (out / name).read_text()
    assert KEY not in "".join(capsys.readouterr())


def test_missing_reference_and_bad_key(tmp_path, monkeypatch):
    cands = _write(tmp_path / "c.jsonl", [{"id": "a", "prompt": "p", "response": "r"}])
    with pytest.raises(UserError, match="no reference for id"):
        run_judge(cands, _write(tmp_path / "r.jsonl", [{"id": "b", "prompt": "p", "response": "r"}]), "http://127.0.0.1:9/v1", str(tmp_path / "o"))
    with pytest.raises(UserError, match=r"^--references \S*nope.jsonl: No such file or directory$"):
        run_judge(cands, str(tmp_path / "nope.jsonl"), "http://127.0.0.1:9/v1", str(tmp_path / "o"))
    with pytest.raises(UserError, match=r"r2.jsonl:1: field 'response'"):
        run_judge(cands, _write(tmp_path / "r2.jsonl", [{"id": "a", "prompt": "p"}]), "http://127.0.0.1:9/v1", str(tmp_path / "o"))
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong")
    with FakeJudge() as judge:
        with pytest.raises(UserError, match="HTTP 401") as err:
            run_judge(cands, cands, judge.url, str(tmp_path / "o"), api_key_env="JUDGE_KEY")
    assert "sk-wrong" not in str(err.value)


def test_judge_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUDGE_KEY", KEY)
    cands = _write(tmp_path / "c.jsonl", [{"id": 1, "prompt": "p", "response": "detailed"}])
    refs = _write(tmp_path / "r.jsonl", [{"id": 1, "prompt": "p", "response": "brief"}])
    with FakeJudge() as judge:
        assert main(["judge", "--candidates", cands, "--references", refs, "--judge", judge.url,
                     "--api_key_env", "JUDGE_KEY"]) == 0
    out = capsys.readouterr().out
    assert "| c | 188.9 | 2 | 0 |" in out  # (9 + 8) / (4 + 5): bias +1 once on each side
    assert (tmp_path / "c_judge" / "judge_summary.json").exists()
    bad = _write(tmp_path / "bad.jsonl", [{"id": 1, "prompt": "p"}])
    assert main(["judge", "--candidates", bad, "--references", refs, "--judge", "http://127.0.0.1:9"]) == 2
    assert "bad.jsonl:1: field 'response'" in capsys.readouterr().err


DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data is absent")
def test_official_prompt_sets():
    vicuna = read_prompt_set(os.path.join(DATA, "judge", "vicuna_question_80.jsonl"))
    assert len(vicuna) == 80 and vicuna[0] == ("1", "How can I improve my time management skills?", "vicuna_question_80")
    selfinstruct = read_prompt_set(os.path.join(DATA, "judge", "user_oriented_instructions_252.jsonl"))
    assert len(selfinstruct) == 252
    key, prompt, _ = selfinstruct[2]
    assert key == "user_oriented_task_2"
    assert prompt.startswith("Rewrite the given text and correct grammar") and prompt.endswith("huge affect on me!")


def test_answer_prompts_command_writes_judge_candidates(tmp_path, capsys):
    config, params, tokenizer = tiny_model()
    save_hf_folder(str(tmp_path / "m"), config, params)
    tokenizer.save(str(tmp_path / "m"))
    prompts = _write(tmp_path / "vicuna.jsonl", [{"question_id": 1, "text": "Take 1 step.", "category": "generic"},
                                                 {"question_id": 2, "text": "Sort apple banana.", "category": "writing"}])
    plain = _write(tmp_path / "mine.jsonl", [{"id": "a", "prompt": "So the answer is"}])
    out = str(tmp_path / "answers.jsonl")
    assert main(["answer-prompts", "--model", str(tmp_path / "m"), "--prompts", f"{prompts},{plain}", "--out", out,
                 "--max_new_tokens", "5", "--batch_size", "3"]) == 0
    answers = read_answers(out)
    assert [(a.id, a.prompt, a.set) for a in answers.values()] == [
        ("1", "Take 1 step.", "vicuna"), ("2", "Sort apple banana.", "vicuna"), ("a", "So the answer is", "mine")]
    assert all(a.response for a in answers.values())
    bad = _write(tmp_path / "bad.jsonl", [{"question": "no id"}])
    assert main(["answer-prompts", "--model", "nope", "--prompts", bad, "--out", out]) == 2
    assert "bad.jsonl:1: expected 'question_id'" in capsys.readouterr().err
