"""`orca-jax serve`: the official `openai` client against SmolLM2-135M-Instruct, and the command
end to end on a tiny model, with `generate-traces` asking it."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request

import pytest

from fake_openai_server import FakeOpenAIServer
from orca_jax import cli, serve
from orca_jax.model.loading import load_model
from orca_jax.teacher.local_teacher import LocalTeacher

openai = pytest.importorskip("openai")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTION = [{"role": "system", "content": "You are a helpful assistant. Think step by step."},
            {"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]


@contextlib.contextmanager
def running_server(teacher, name):
    """`serve.serve` on a free loopback port in a background thread; yields the base URL."""
    loop = asyncio.new_event_loop()
    ready, box = threading.Event(), {}

    def on_ready(url):
        box["url"] = url
        ready.set()

    def run():
        box["task"] = loop.create_task(serve.serve(teacher, name, "127.0.0.1", 0, on_ready=on_ready))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(box["task"])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60), "server did not start"
    try:
        yield box["url"]
    finally:
        loop.call_soon_threadsafe(box["task"].cancel)
        thread.join(30)


def _orca_jax_generate(monkeypatch, capsys, loaded, messages, max_tokens):
    """`orca-jax generate --json` for the same request (with the already loaded model)."""
    monkeypatch.setattr("orca_jax.model.loading.load_model", lambda path, dtype=None: loaded)
    system = [m["content"] for m in messages if m["role"] == "system"]
    capsys.readouterr()
    assert cli.main(["generate", "--model", loaded.path, "--prompt", messages[-1]["content"], "--json",
                     "--max_new_tokens", str(max_tokens)] + (["--system", system[0]] if system else [])) == 0
    return json.loads(capsys.readouterr().out)["text"]


@pytest.fixture(scope="module")
def smol(smollm2_model):
    with running_server(LocalTeacher(smollm2_model, max_batch=4), "smollm2-135m") as url:
        yield smollm2_model, openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def test_openai_client_greedy_equals_generate(smol, monkeypatch, capsys):
    loaded, client = smol
    assert [m.id for m in client.models.list().data] == ["smollm2-135m"]
    reply = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, temperature=0, max_tokens=24)
    assert reply.choices[0].message.content == _orca_jax_generate(monkeypatch, capsys, loaded, QUESTION, 24)
    assert reply.usage.completion_tokens <= 24 and reply.usage.prompt_tokens > 20


def test_max_tokens_stop_and_logprobs(smol):
    loaded, client = smol
    full = client.chat.completions.create(model="m", messages=QUESTION, temperature=0, max_tokens=6,
                                          logprobs=True, top_logprobs=3)
    choice = full.choices[0]
    assert choice.finish_reason == "length" and full.usage.completion_tokens == 6
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:  # greedy: the chosen token is the most likely one
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        assert e.top_logprobs[0].token == e.token and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5
        assert e.logprob <= 0
    text = choice.message.content
    stop = text.split()[2]
    cut = client.chat.completions.create(model="m", messages=QUESTION, temperature=0, max_tokens=6, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == text[:text.index(stop)]
    with pytest.raises(openai.BadRequestError, match="n: only n = 1"):
        client.chat.completions.create(model="m", messages=QUESTION, n=2)
    with pytest.raises(openai.BadRequestError, match="exceeds the model's context"):
        client.chat.completions.create(model="m", messages=QUESTION, max_tokens=8190)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random LLaMA saved by transformers with a small ChatML tokenizer: a model folder users could serve."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from eval_tiny_model import tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny_serve")
    torch.manual_seed(1)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256)).save_pretrained(folder)
    tiny_tokenizer().save(folder)
    return str(folder)


def test_serve_command_and_generate_traces_through_a_fault_proxy(tiny_folder, tmp_path, monkeypatch, capsys):
    env = {**os.environ, "PYTHONPATH": REPO}
    server = subprocess.Popen([sys.executable, "-m", "orca_jax.cli", "serve", "--model", tiny_folder, "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving tiny_serve"), line
        url = line.split(" at ")[1].strip()
        assert url.startswith("http://127.0.0.1:")  # loopback by default
        with urllib.request.urlopen(f"{url}/models") as r:
            assert json.load(r)["data"][0]["id"] == os.path.basename(tiny_folder)
        prompts = tmp_path / "prompts.jsonl"
        questions = ["Sort the following words alphabetically: List: apple banana", "Take 1 step. Yes or No?"]
        prompts.write_text("".join(json.dumps({"id": f"q{i}", "turns": [{"role": "user", "content": q}]}) + "\n"
                                   for i, q in enumerate(questions)))
        (tmp_path / "messages.json").write_text(json.dumps(["Think step by step."]))
        # Every prompt meets a 429 with Retry-After, a 500 and a dropped connection before the real server.
        schedule = ["429", "500", "drop", "ok"]
        with FakeOpenAIServer(lambda p, n: schedule[min(n, 3)], retry_after="0.1", upstream=url) as proxy:
            subprocess.run([sys.executable, "-m", "orca_jax.cli", "generate-traces", "--prompts", str(prompts),
                            "--teacher", proxy.url, "--model", "tiny", "--system-messages",
                            str(tmp_path / "messages.json"), "--out", str(tmp_path / "out.jsonl"),
                            "--temperature", "0", "--max_tokens", "10", "--backoff_base", "0.05", "--no_progress"],
                           env=env, check=True, capture_output=True)
            assert sorted(a for _, _, a in proxy.log) == sorted(schedule * len(questions))
    finally:
        server.terminate()
        server.wait(30)
    traces = [json.loads(line) for path in ("out.jsonl", "out.rejected.jsonl") for line in open(tmp_path / path)]
    loaded = load_model(tiny_folder)
    assert sorted(t["id"] for t in traces) == ["q0", "q1"]  # exactly one trace per prompt
    for trace, q in zip(sorted(traces, key=lambda t: t["id"]), questions):
        messages = [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": q}]
        assert trace["turns"][-1]["content"] == _orca_jax_generate(monkeypatch, capsys, loaded, messages, 10)
        assert trace["metadata"]["generation"]["finish_reason"] in ("stop", "length")
