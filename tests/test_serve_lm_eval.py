"""`orca-jax serve` as lm-eval's API clients use it: `/v1/completions` with echo and log-probs
checked against the decoder's own log-softmax, lm-eval's `local-completions` (remote tokenizer)
and `local-chat-completions` clients on a tiny model against the in-process harness backend and
plain decoding, the tokenizer endpoints, 400s naming the field, and (slow) the `lm_eval` command
against the `orca-jax serve` command on SmolLM2 with local tasks."""

import glob
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest

pytest.importorskip("lm_eval")

from eval_tiny_model import tiny_model  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.api_models import JsonChatStr  # noqa: E402
from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI  # noqa: E402
from lm_eval.utils import RemoteTokenizer, check_remote_tokenizer_support  # noqa: E402
from test_eval_harness import OFFLINE, ROOT, mc_items, write_tasks  # noqa: E402
from test_serve import running_server  # noqa: E402

from orca_jax import decoding  # noqa: E402
from orca_jax.continuous_batching import ContinuousBatcher  # noqa: E402
from orca_jax.evaluation.harness import OrcaJaxLM, run_tasks, task_manager  # noqa: E402
from orca_jax.model.decoder import apply  # noqa: E402
from orca_jax.model.loading import LoadedModel  # noqa: E402

PROMPT = "Sort the following words alphabetically: List: cherry apple"


@pytest.fixture(scope="module")
def tiny():
    """A random tiny decoder with a ChatML tokenizer, served; yields (model, server URL without /v1)."""
    config, params, tokenizer = tiny_model(seed=1)
    model = LoadedModel(config, params, tokenizer, "orbax", "tiny")
    with running_server(ContinuousBatcher(model, max_batch=4, cache_length=512), "tiny") as url:
        yield model, url.removesuffix("/v1")


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def log_softmax(model, ids: list[int]) -> np.ndarray:
    """[len(ids), vocab]: the decoder's next-token log-probs after each token, one unpadded pass."""
    tokens = np.array([ids], np.int32)
    logits = apply(model.config, model.params, tokens, np.arange(len(ids), dtype=np.int32)[None], np.ones_like(tokens))
    return np.asarray(jax.nn.log_softmax(logits[0].astype(np.float32), axis=-1))


def greedy_reply(model, prompt_ids: list[int], max_tokens: int) -> str:
    ids = decoding.generate(model.config, model.params, [prompt_ids], max_tokens, eos_ids=model.tokenizer.stop_ids)[0]
    return model.tokenizer.decode([t for t in ids if t not in model.tokenizer.stop_ids])


def test_echoed_prompt_logprobs_are_the_decoders_log_softmax(tiny):
    model, url = tiny
    ids = model.tokenizer.encode(PROMPT)
    reference = log_softmax(model, ids)
    for prompt in (PROMPT, ids, [ids, ids[:5]]):  # a string, token ids, a batch of two
        status, out = post(f"{url}/v1/completions", {"prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 4})
        assert status == 200, out
        choice = out["choices"][0]
        assert choice["text"] == PROMPT and choice["finish_reason"] == "length"
        lp = choice["logprobs"]
        assert "".join(lp["tokens"]) == PROMPT
        assert lp["text_offset"] == [len(model.tokenizer.decode(ids[:i])) for i in range(len(ids))]
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None  # nothing predicts the first token
        expected = reference[np.arange(len(ids) - 1), ids[1:]]
        np.testing.assert_allclose(lp["token_logprobs"][1:], expected, atol=2e-5)
        for i, top in enumerate(lp["top_logprobs"][1:]):
            values = list(top.values())
            assert values == sorted(values, reverse=True) and 1 <= len(values) <= 4
            assert values[0] == pytest.approx(reference[i].max(), abs=2e-5)
            if ids[i + 1] == reference[i].argmax():
                assert top[lp["tokens"][i + 1]] == lp["token_logprobs"][i + 1]
        assert out["usage"]["prompt_tokens"] == sum(len(c["logprobs"]["tokens"]) for c in out["choices"])
    second = out["choices"][1]
    assert second["index"] == 1 and second["text"] == model.tokenizer.decode(ids[:5])
    np.testing.assert_allclose(second["logprobs"]["token_logprobs"][1:], expected[:4], atol=2e-5)


def test_greedy_generation_with_logprobs_and_stop(tiny):
    model, url = tiny
    ids = model.tokenizer.encode(PROMPT)
    alone = greedy_reply(model, ids, 8)
    status, out = post(f"{url}/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "logprobs": 2})
    assert status == 200, out
    choice = out["choices"][0]
    assert choice["text"] == alone and out["usage"]["completion_tokens"] == len(choice["logprobs"]["tokens"])
    lp = choice["logprobs"]
    assert lp["text_offset"][0] == len(PROMPT)  # offsets count from the prompt's start, as OpenAI's
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert top[token] == logprob == max(top.values())  # greedy: each token is the most likely one
    stop = alone[3:5]
    status, cut = post(f"{url}/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "stop": [stop],
                                                 "echo": True})
    assert cut["choices"][0]["text"] == PROMPT + alone[:alone.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_lm_eval_completions_client_scores_and_generates_as_the_harness_backend(tiny):
    """lm-eval's own `local-completions` client (remote tokenizer, batches of 2) gives the same
    loglikelihoods, greedy flags and generations as the in-process harness backend."""
    model, url = tiny
    client = LocalCompletionsAPI(base_url=f"{url}/v1/completions", tokenizer_backend="remote", model="tiny",
                                 batch_size=2, max_retries=1)
    harness = OrcaJaxLM(model=model, batch_size=2)
    pairs = [(f"Question: {item['question']}\nAnswer:", f" {choice}") for item in mc_items(2)
             for choice in item["choices"]] + [("", PROMPT)]  # an empty context: the prefix token
    scoring = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    served, local = client.loglikelihood(scoring, disable_tqdm=True), harness.loglikelihood(scoring, disable_tqdm=True)
    np.testing.assert_allclose([s for s, _ in served], [s for s, _ in local], atol=1e-4)
    assert [g for _, g in served] == [g for _, g in local]
    until = {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}
    generating = [Instance("generate_until", {}, (PROMPT[:n], until), i) for i, n in enumerate((20, 45))]
    assert client.generate_until(generating, disable_tqdm=True) == harness.generate_until(generating, disable_tqdm=True)


def test_lm_eval_chat_client_stops_at_its_stop_strings(tiny):
    """lm-eval's `local-chat-completions` client sends `stop` as a list with `max_tokens`,
    `temperature` and `seed`; the reply is cut at the stop string (lm-eval does not cut it)."""
    model, url = tiny
    messages = [{"role": "user", "content": PROMPT}]
    alone = greedy_reply(model, model.tokenizer.encode_chat(messages, add_generation_prompt=True), 10)
    stop = alone[4:6]
    client = LocalChatCompletion(base_url=f"{url}/v1/chat/completions", model="tiny", max_retries=1)
    request = Instance("generate_until", {}, (JsonChatStr(json.dumps(messages)),
                                              {"until": [stop, "\n\n"], "max_gen_toks": 10, "do_sample": False}), 0)
    assert client.generate_until([request], disable_tqdm=True) == [alone[:alone.index(stop)]]


def test_tokenizer_endpoints_as_lm_evals_remote_tokenizer_reads_them(tiny):
    model, url = tiny
    tokenizer = model.tokenizer
    assert check_remote_tokenizer_support(f"{url}/v1/completions")
    remote = RemoteTokenizer(f"{url}/v1/completions")
    assert remote.encode(PROMPT) == tokenizer.encode(PROMPT, add_bos=False)
    assert remote.decode(remote.encode(PROMPT)) == PROMPT
    assert (remote.eos_token, remote.eos_token_id, remote.bos_token) == (tokenizer.eos_token, tokenizer.eos_id, None)
    assert remote.apply_chat_template([{"role": "user", "content": "Hi"}]) == tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    messages = [{"role": "user", "content": PROMPT}]
    status, out = post(f"{url}/tokenize", {"messages": messages})
    assert status == 200 and out["tokens"] == tokenizer.encode_chat(messages, add_generation_prompt=True)
    assert out["count"] == len(out["tokens"]) and out["max_model_len"] == model.config.max_position_embeddings


@pytest.mark.parametrize("path, body, param, says", [
    ("/v1/completions", {"prompt": [[1, 2, 99999]]}, "prompt", "token id 99999 outside the vocabulary"),
    ("/v1/completions", {"prompt": [1.5]}, "prompt", "prompt[0]: expected a string or a non-empty list"),
    ("/v1/completions", {"prompt": ""}, "prompt", "prompt[0]: the prompt has no tokens"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 0}, "max_tokens", "0 needs echo"),
    ("/v1/completions", {"prompt": "a", "logprobs": 21}, "logprobs", "expected a value in [0, 20]"),
    ("/v1/completions", {"prompt": "a", "echo": "yes"}, "echo", "expected true or false"),
    ("/v1/completions", {"prompt": "a", "stream": True}, "stream", "not supported"),
    ("/v1/completions", {"prompt": "a", "seed": 0.5}, "seed", "expected an integer"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 2048}, "prompt", "exceeds the model's context"),
    ("/tokenize", {"text": "a"}, "prompt", "prompt: expected a string"),
    ("/detokenize", {"tokens": "a"}, "tokens", "expected a list of token ids"),
])
def test_bad_input_is_a_400_naming_the_field(tiny, path, body, param, says):
    _, url = tiny
    status, out = post(url + path, body)
    assert status == 400 and out["error"]["param"] == param and says in out["error"]["message"], out


def _lm_eval(model: str, model_args: str, tasks: str, include: str, out: str, *extra: str) -> dict:
    """`lm_eval run` as users run it; the results JSON it writes."""
    result = subprocess.run(
        [sys.executable, "-m", "lm_eval", "run", "--model", model, "--model_args", model_args, "--tasks", tasks,
         "--include_path", include, "--output_path", out, *extra],
        cwd=ROOT, env=dict(os.environ, **OFFLINE), capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = glob.glob(os.path.join(out, "**", "results_*.json"), recursive=True)
    with open(path) as f:
        return json.load(f)


@pytest.mark.slow  # SmolLM2 served, 20 x 4 choices and 3 generations through lm_eval twice: minutes on 2 cores
def test_lm_eval_commands_against_the_serve_command(smollm2_gguf, smollm2_model, tmp_path):
    tasks = write_tasks(tmp_path / "tasks", 20)
    server = subprocess.Popen([sys.executable, "-m", "orca_jax.cli", "serve", "--model", smollm2_gguf, "--port", "0",
                               "--cache_length", "512", "--model_name", "smollm2"],
                              cwd=ROOT, env=dict(os.environ, **OFFLINE, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving smollm2 at "), line
        base = line.split(" at ")[1].strip()  # http://127.0.0.1:PORT/v1
        completions = _lm_eval("local-completions", f"model=smollm2,base_url={base}/completions,"
                               "tokenizer_backend=remote,max_retries=1", "local_mc,local_gen", tasks,
                               str(tmp_path / "completions"), "--batch_size", "4")
        chat = _lm_eval("local-chat-completions", f"model=smollm2,base_url={base}/chat/completions,max_retries=1",
                        "local_gen", tasks, str(tmp_path / "chat"), "--apply_chat_template")
    finally:
        server.terminate()
        server.wait(60)
    assert completions["n-samples"]["local_mc"]["effective"] == 20
    assert "exact_match,none" in completions["results"]["local_gen"]
    assert chat["n-samples"]["local_gen"]["effective"] == 3 and "exact_match,none" in chat["results"]["local_gen"]
    local = run_tasks(smollm2_model, smollm2_gguf, ["local_mc"], task_manager(["local_mc"], tasks))
    assert completions["results"]["local_mc"]["acc,none"] == local["tasks"]["local_mc"]["metrics"]["acc"]
