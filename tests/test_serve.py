"""`orca-jax serve`: the official `openai` client against SmolLM2-135M-Instruct (plain and
streamed), continuous batching, the queue limit (429) and disconnects on a tiny model, and the
command end to end with `generate-traces` asking it."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import socket
import threading
import time
import urllib.parse
import urllib.request

import pytest

from fake_openai_server import FakeOpenAIServer
from orca_jax import cli, decoding, serve
from orca_jax.continuous_batching import ContinuousBatcher
from orca_jax.model.loading import LoadedModel, load_model

openai = pytest.importorskip("openai")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTION = [{"role": "system", "content": "You are a helpful assistant. Think step by step."},
            {"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]


@contextlib.contextmanager
def running_server(batcher, name):
    """`serve.serve` on a free loopback port in a background thread; yields the base URL."""
    loop = asyncio.new_event_loop()
    ready, box = threading.Event(), {}

    def on_ready(url):
        box["url"] = url
        ready.set()

    def run():
        box["task"] = loop.create_task(serve.serve(batcher, name, "127.0.0.1", 0, on_ready=on_ready))
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
    with running_server(ContinuousBatcher(smollm2_model, max_batch=4, cache_length=512), "smollm2-135m") as url:
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


def test_streamed_reply_equals_the_plain_one(smol):
    """stream=True through the official client: the same text in pieces, usage in the last chunk."""
    _, client = smol
    plain = client.chat.completions.create(model="m", messages=QUESTION, temperature=0, max_tokens=16)
    chunks = list(client.chat.completions.create(model="m", messages=QUESTION, temperature=0, max_tokens=16,
                                                 stream=True))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert "".join(pieces) == plain.choices[0].message.content and sum(bool(p) for p in pieces) > 1
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


LONG = 120  # tokens of a reply that keeps decoding while the test acts


@pytest.fixture(scope="module")
def tiny():
    """A random tiny decoder with a ChatML tokenizer served with 2 slots and a queue of 1 (fast steps
    for the scheduling tests), and prompts whose greedy replies run LONG tokens without ending,
    with those replies as decoded without the server."""
    from eval_tiny_model import tiny_model

    config, params, tokenizer = tiny_model(seed=1)
    model = LoadedModel(config, params, tokenizer, "orbax", "tiny")
    batcher = ContinuousBatcher(model, max_batch=2, max_queue=1, cache_length=1024)
    asks = [[{"role": "user", "content": f"Sort the following words alphabetically: List: apple {i}"}]
            for i in range(12)]
    replies = decoding.generate(config, params, [batcher.encode_chat(m) for m in asks], LONG, eos_ids=batcher.eos_ids)
    endless = [(m, tokenizer.decode(r)) for m, r in zip(asks, replies) if len(r) == LONG and not set(r) & set(batcher.eos_ids)]
    assert len(endless) >= 4
    with running_server(batcher, "tiny") as url:
        yield batcher, openai.OpenAI(base_url=url, api_key="unused", max_retries=0), url, endless


def _wait_until(condition, what):
    deadline = time.time() + 60
    while not condition():
        assert time.time() < deadline, what()
        time.sleep(0.01)


def test_request_arriving_mid_batch_joins_at_the_next_step(tiny):
    """B arrives while A decodes: B is answered while A still streams (it does not wait for A's
    batch to end), and both replies equal what each prompt gets decoded alone."""
    batcher, client, _, endless = tiny
    (ask_a, alone_a), (ask_b, alone_b) = endless[:2]
    events = []
    for chunk in client.chat.completions.create(model="tiny", messages=ask_a, temperature=0, max_tokens=LONG,
                                                stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            events.append(chunk.choices[0].delta.content)
            if len(events) == 3:  # A is decoding: now B arrives, and waits for nothing but its own tokens
                b = client.chat.completions.create(model="tiny", messages=ask_b, temperature=0, max_tokens=LONG // 4)
                events.append(None)
    assert chunk.usage.completion_tokens == LONG
    assert events.index(None) < LONG // 2  # with static batching B would have come after all of A's pieces
    assert "".join(e for e in events if e) == alone_a
    assert alone_b.startswith(b.choices[0].message.content) and b.usage.completion_tokens == LONG // 4


def test_beyond_the_queue_depth_429_with_retry_after(tiny):
    batcher, client, _, endless = tiny
    _wait_until(lambda: batcher.in_use() == (0, 0), batcher.in_use)  # the previous test's requests have ended
    running = [client.chat.completions.create(model="tiny", messages=m, temperature=0, max_tokens=LONG, stream=True)
               for m, _ in endless[:2]]
    for stream in running:
        next(iter(stream))
    # The first chunk can come before the second request holds its slot: wait until both decode.
    _wait_until(lambda: batcher.in_use() == (2, 0), batcher.in_use)
    waiting = threading.Thread(target=client.chat.completions.create, daemon=True,
                               kwargs=dict(model="tiny", messages=endless[2][0], max_tokens=2))
    waiting.start()
    _wait_until(lambda: batcher.in_use() == (2, 1), batcher.in_use)  # the queue is full
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="tiny", messages=endless[3][0], max_tokens=2)
    assert int(refused.value.response.headers["retry-after"]) >= 1
    for stream in running:
        stream.close()
    waiting.join(60)
    assert not waiting.is_alive()  # the queued request was served once a slot freed


def _post_unread(url: str, body: dict) -> socket.socket:
    """POSTs `body` as JSON on a raw connection and leaves the reply unread; closing the socket hangs up."""
    parts, data = urllib.parse.urlsplit(url), json.dumps(body).encode()
    connection = socket.create_connection((parts.hostname, parts.port))
    connection.sendall(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return connection


def test_disconnected_client_frees_its_slot(tiny):
    """A streaming client and a plain one hang up mid-reply: both slots free at once, long before
    their replies would have ended, and the server goes on answering."""
    batcher, client, url, endless = tiny
    _wait_until(lambda: batcher.in_use() == (0, 0), batcher.in_use)
    body = {"model": "tiny", "messages": endless[0][0], "max_tokens": 900, "temperature": 0, "stream": True}
    streaming = urllib.request.urlopen(urllib.request.Request(
        f"{url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}))
    streaming.readline()  # the first event: decoding has started
    before = batcher.tokens_decoded
    # The plain client hangs up by closing its connection once its request decodes (a client
    # timeout would race the server's admission of the request on a loaded machine).
    plain = _post_unread(f"{url}/chat/completions", {"model": "tiny", "messages": endless[1][0], "max_tokens": 900,
                                                     "temperature": 0})
    _wait_until(lambda: batcher.in_use()[0] == 2, batcher.in_use)
    streaming.close()
    plain.close()
    _wait_until(lambda: batcher.in_use() == (0, 0), batcher.in_use)
    assert batcher.tokens_decoded - before < 900  # both together decoded less than one whole reply
    assert client.chat.completions.create(model="tiny", messages=endless[2][0], max_tokens=3).usage.completion_tokens == 3


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
