"""Local JAX teacher: batched generation and top-k capture, checked against transformers (torch)."""

import asyncio
import json
import os

import numpy as np
import pytest

from eval_tiny_model import tiny_tokenizer
from orca_jax.data.traces import Trace
from orca_jax import cli
from orca_jax.model.loading import load_model
from orca_jax.teacher.cache import AnswerCache
from orca_jax.teacher.client import SamplingParams
from orca_jax.teacher.jobs import TraceRequest, run_job
from orca_jax.teacher.local_teacher import GenerationRequest, LocalTeacher

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

K = 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random LLaMA saved by transformers, loaded by us; the torch model is the reference."""
    folder = tmp_path_factory.mktemp("tiny_llama")
    config = transformers.LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      tie_word_embeddings=False)
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(config).eval()
    reference.save_pretrained(folder)
    tiny_tokenizer().save(folder)  # with it, the folder is a model any command can load
    return load_model(str(folder)), reference


def _reference_topk(reference, prompt, response):
    with torch.no_grad():
        logits = reference(torch.tensor([prompt + response])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)[len(prompt) - 1: len(prompt) + len(response) - 1]
    top = torch.topk(logprobs, K, dim=-1)
    chosen = logprobs.gather(-1, torch.tensor(response)[:, None])[:, 0]
    return top.indices.numpy(), top.values.numpy(), chosen.numpy()


def test_top_k_capture_equals_the_models_log_softmax_top_k(tiny):
    loaded, reference = tiny
    prompts = [[5, 17, 42], list(range(30, 70)), [7] * 11]  # uneven lengths share one batch

    async def go():
        async with LocalTeacher(loaded, max_batch=8, batch_wait_s=0.05) as teacher:
            return await asyncio.gather(*[teacher.generate(GenerationRequest(
                prompt_ids=tuple(p), max_tokens=12, temperature=1.0, topk=K, logprobs=True)) for p in prompts])

    completions = asyncio.run(go())
    for prompt, c in zip(prompts, completions):
        assert 0 < len(c.token_ids) <= 12 and len(c.topk_ids) == len(c.token_ids) == len(c.token_logprobs)
        ids, values, chosen = _reference_topk(reference, prompt, c.token_ids)
        np.testing.assert_array_equal(np.array(c.topk_ids), ids)
        np.testing.assert_allclose(np.array(c.topk_logprobs), values, atol=1e-4)
        np.testing.assert_allclose(np.array(c.token_logprobs), chosen, atol=1e-4)


def test_greedy_batched_equals_one_at_a_time_and_finish_reasons(tiny):
    loaded, _ = tiny
    prompts = [[5, 17, 42], list(range(30, 70))]

    async def go(batch_wait_s):
        async with LocalTeacher(loaded, max_batch=8, batch_wait_s=batch_wait_s) as teacher:
            together = await asyncio.gather(*[teacher.generate(GenerationRequest(tuple(p), max_tokens=6))
                                              for p in prompts])
            alone = [await teacher.generate(GenerationRequest(tuple(p), max_tokens=6)) for p in prompts]
            return together, alone, teacher._batches_run

    together, alone, batches = asyncio.run(go(0.05))
    assert batches == 3  # the two concurrent requests shared one batch
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    end_of_turn = loaded.tokenizer.token_to_id("<|im_end|>")
    for c in together:
        ended = end_of_turn in c.token_ids
        assert c.finish_reason == ("stop" if ended else "length")
        assert (c.token_ids.index(end_of_turn) == len(c.token_ids) - 1) if ended else len(c.token_ids) == 6


def test_requests_that_would_overflow_the_context_together_run_in_separate_batches(tiny):
    loaded, _ = tiny
    context = loaded.config.max_position_embeddings
    long_prompt = GenerationRequest(tuple([9] * (context - 4)), max_tokens=4)
    long_answer = GenerationRequest((5, 17), max_tokens=context - 64)

    async def go():
        async with LocalTeacher(loaded, max_batch=8, batch_wait_s=0.05) as teacher:
            done = await asyncio.gather(teacher.generate(long_prompt), teacher.generate(long_answer))
            return done, teacher._batches_run

    (a, b), batches = asyncio.run(go())
    assert batches == 2 and 0 < len(a.token_ids) <= 4 and len(b.token_ids) > 0


def test_trace_job_with_a_local_teacher_stores_top_k_per_response_token(tiny, tmp_path):
    loaded, reference = tiny
    requests = [TraceRequest(prompt=Trace(id=f"q{i}", turns=[{"role": "user", "content": f"Sort the words: apple {i}"}]),
                             system_message="Think step by step.") for i in range(3)]

    async def go():
        async with LocalTeacher(loaded, max_batch=4, topk=K) as teacher:
            return await run_job(requests, teacher, model="tiny", sampling=SamplingParams(0.7, 0.95, 8),
                                 out_path=str(tmp_path / "t.jsonl"), cache=AnswerCache(str(tmp_path / "c.sqlite")),
                                 progress=False)

    summary = asyncio.run(go())
    assert summary.written + summary.rejected == 3
    traces = [json.loads(line) for path in ("t.jsonl", "t.rejected.jsonl") for line in open(tmp_path / path)]
    assert sorted(t["id"] for t in traces) == ["q0", "q1", "q2"]
    tokenizer = loaded.tokenizer
    for t, r in zip(sorted(traces, key=lambda t: t["id"]), requests):
        token_ids = t["metadata"]["generation"]["response_token_ids"]
        assert len(t["teacher_topk_ids"]) == len(t["teacher_topk_logprobs"]) == len(token_ids) > 0
        prompt = tokenizer.encode(tokenizer.apply_chat_template(r.messages(), add_generation_prompt=True))
        ids, values, _ = _reference_topk(reference, prompt, token_ids)
        np.testing.assert_array_equal(np.array(t["teacher_topk_ids"]), ids)
        np.testing.assert_allclose(np.array(t["teacher_topk_logprobs"]), values, atol=1e-4)


def test_generate_traces_command_with_a_local_teacher(tiny, tmp_path):
    loaded, _ = tiny
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "turns": [{"role": "user", "content": f"Take {i} steps."}]})
                               + "\n" for i in range(3)))
    (tmp_path / "messages.json").write_text(json.dumps(["Think step by step."]))
    argv = ["generate-traces", "--prompts", str(prompts), "--teacher", loaded.path, "--system-messages",
            str(tmp_path / "messages.json"), "--out", str(tmp_path / "out.jsonl"), "--topk", "3", "--max_tokens", "6",
            "--temperature", "0", "--no_progress"]
    assert cli.main(argv) == 0
    traces = [json.loads(line) for path in ("out.jsonl", "out.rejected.jsonl") for line in open(tmp_path / path)]
    assert sorted(t["id"] for t in traces) == ["q0", "q1", "q2"]
    for t in traces:
        assert t["teacher"] == os.path.basename(loaded.path) and len(t["teacher_topk_ids"][0]) == 3
        assert len(t["teacher_topk_ids"]) == len(t["metadata"]["generation"]["response_token_ids"])
    before = [(tmp_path / p).read_text() for p in ("out.jsonl", "out.rejected.jsonl")]
    assert cli.main(argv) == 0  # everything is written: nothing asked or written again
    assert [(tmp_path / p).read_text() for p in ("out.jsonl", "out.rejected.jsonl")] == before
