"""What lm-eval's API clients ask of `orca-jax serve` beyond chat: OpenAI's legacy `/v1/completions`
and vLLM's tokenizer endpoints (`/tokenize`, `/detokenize`, `/tokenizer_info`).

`/v1/completions` takes `prompt` as a string, a list of strings, a list of token ids or a list of
token-id lists (one choice each), and `max_tokens` (0 allowed with `echo`), `temperature`, `top_p`,
`stop`, `seed`, `echo` and `logprobs` (how many top log-probs per token). Generation goes through
the server's continuous batcher; log-probs come from one teacher-forced pass over prompt and reply
(`teacher.topk.score_responses`), so `echo` + `logprobs` scores the prompt as lm-eval's
`local-completions` needs for loglikelihood tasks: `token_logprobs[0]` is null (nothing predicts
the first token), as OpenAI answers. String prompts are tokenized with the model's BOS rule (as
vLLM does); token-id prompts are taken as they are.

The tokenizer endpoints follow vLLM's server, which lm-eval's `tokenizer_backend=remote` reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

from aiohttp import web

from orca_jax.continuous_batching import QueueFull
from orca_jax.errors import UserError
from orca_jax.serve import (BATCHER, MAX_TOP_LOGPROBS, MODEL_NAME, BadRequest, messages_of, number, read_json,
                            refusal, sampling, usage)
from orca_jax.teacher.local_teacher import Completion, GenerationRequest
from orca_jax.teacher.topk import score_responses

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for legacy completions


@dataclasses.dataclass(frozen=True)
class CompletionsRequest:
    prompts: list[tuple[list[int], str]]  # (token ids, text) per choice
    generation: dict  # GenerationRequest fields other than the prompt
    echo: bool
    logprobs: int | None  # top log-probs per token; None: no log-probs


def _is_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def _prompts(prompt, tokenizer, vocab_size: int) -> list[tuple[list[int], str]]:
    if isinstance(prompt, str) or _is_ids(prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise BadRequest("prompt: expected a string, a list of strings, a list of token ids or a list of "
                         "token-id lists", "prompt")
    out = []
    for i, p in enumerate(prompt):
        if isinstance(p, str):
            ids, text = tokenizer.encode(p), p
        elif _is_ids(p):
            bad = next((t for t in p if not 0 <= t < vocab_size), None)
            if bad is not None:
                raise BadRequest(f"prompt[{i}]: token id {bad} outside the vocabulary [0, {vocab_size})", "prompt")
            ids, text = p, tokenizer.decode(p, skip_special_tokens=False)
        else:
            raise BadRequest(f"prompt[{i}]: expected a string or a non-empty list of token ids", "prompt")
        if not ids:
            raise BadRequest(f"prompt[{i}]: the prompt has no tokens", "prompt")
        out.append((ids, text))
    return out


def parse_completions_request(body, model) -> CompletionsRequest:
    """The choices a legacy completions body asks for; BadRequest says what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("request body: expected a JSON object")
    if body.get("stream"):
        raise BadRequest("stream: not supported on /v1/completions", "stream")
    echo = body.get("echo", False)
    if not isinstance(echo, bool):
        raise BadRequest("echo: expected true or false", "echo")
    context = model.config.max_position_embeddings
    generation = sampling(body, context, DEFAULT_MAX_TOKENS, min_max_tokens=0)
    if generation["max_tokens"] == 0 and not echo:
        raise BadRequest("max_tokens: 0 needs echo: true (there is nothing else to return)", "max_tokens")
    prompts = _prompts(body.get("prompt"), model.tokenizer, model.config.vocab_size)
    for i, (ids, _) in enumerate(prompts):
        if len(ids) + generation["max_tokens"] > context:  # the batcher says so too, but not for max_tokens 0
            raise BadRequest(f"prompt[{i}]: {len(ids)} tokens + max_tokens {generation['max_tokens']} exceeds the "
                             f"model's context of {context} tokens", "prompt")
    return CompletionsRequest(prompts, generation, echo, number(body, "logprobs", None, int, 0, MAX_TOP_LOGPROBS))


def _logprobs(tokenizer, ids: list[int], scores, start: int, text_offset: int) -> dict:
    """OpenAI's legacy `logprobs` for `ids` (scores from position `start` on; earlier entries null).
    Every scored token is listed, an end-of-turn token too: lm-eval drops the last entry as the
    generated one, so leaving one out would shift its loglikelihoods."""
    tokens = [tokenizer.decode([t], skip_special_tokens=False) for t in ids]
    top = [None] * start
    for top_ids, top_logprobs in zip(scores.topk_ids.tolist(), scores.topk_logprobs.tolist()):
        entry = {}
        for t, logprob in zip(top_ids, top_logprobs):  # best first; tokens that read alike keep the best
            entry.setdefault(tokenizer.decode([t], skip_special_tokens=False), logprob)
        top.append(entry)
    offsets = []
    for token in tokens:  # as vLLM counts them: the lengths of the token strings
        offsets.append(text_offset)
        text_offset += len(token)
    return {"tokens": tokens, "token_logprobs": [None] * start + scores.token_logprobs.tolist(),
            "top_logprobs": top, "text_offset": offsets}


async def completions(http_request: web.Request) -> web.Response:
    batcher = http_request.app[BATCHER]
    model = batcher.model
    streams = []
    try:  # the server cancels this handler when the client disconnects: the finally frees the slots
        request = parse_completions_request(await read_json(http_request), model)
        if request.generation["max_tokens"]:
            for ids, _ in request.prompts:  # appended one by one: a 429 part-way frees those already queued
                streams.append(batcher.submit(GenerationRequest(prompt_ids=tuple(ids), **request.generation)))
            replies = [await s.completion() for s in streams]
        else:
            replies = [Completion([], "", "length", len(ids)) for ids, _ in request.prompts]
    except (BadRequest, UserError, QueueFull) as e:
        return refusal(e, "prompt")
    finally:
        for stream in streams:
            batcher.cancel(stream)  # a no-op once it has finished
    choices = [{"index": i, "text": (text if request.echo else "") + reply.text, "logprobs": None,
                "finish_reason": reply.finish_reason}
               for i, ((_, text), reply) in enumerate(zip(request.prompts, replies))]
    if request.logprobs is not None:
        # echo: scored from the prompt's second token on; else only the reply's tokens
        starts = [1 if request.echo else len(ids) for ids, _ in request.prompts]
        scores = await asyncio.to_thread(
            score_responses, model.config, model.params, [ids[:s] for (ids, _), s in zip(request.prompts, starts)],
            [ids[s:] + reply.token_ids for (ids, _), s, reply in zip(request.prompts, starts, replies)],
            request.logprobs)
        for choice, (ids, text), reply, score in zip(choices, request.prompts, replies, scores):
            scored = ids + reply.token_ids if request.echo else reply.token_ids
            choice["logprobs"] = _logprobs(model.tokenizer, scored, score, int(request.echo),
                                           0 if request.echo else len(text))
    return web.json_response({"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                              "created": int(time.time()), "model": http_request.app[MODEL_NAME],
                              "choices": choices, "usage": usage(replies)})


async def tokenize(http_request: web.Request) -> web.Response:
    """vLLM's `/tokenize`: `{"prompt": str, "add_special_tokens": bool = true}` (BOS by the model's
    rule) or `{"messages": [...], "add_generation_prompt": bool = true}` (the chat template)."""
    model = http_request.app[BATCHER].model
    try:
        body = await read_json(http_request)
        if not isinstance(body, dict):
            raise BadRequest("request body: expected a JSON object")
        if "messages" in body:
            generation_prompt = body.get("add_generation_prompt", True)
            if not isinstance(generation_prompt, bool):
                raise BadRequest("add_generation_prompt: expected true or false", "add_generation_prompt")
            tokens = model.tokenizer.encode_chat(messages_of(body), add_generation_prompt=generation_prompt)
        else:
            prompt, special = body.get("prompt"), body.get("add_special_tokens", True)
            if not isinstance(prompt, str):
                raise BadRequest("prompt: expected a string", "prompt")
            if not isinstance(special, bool):
                raise BadRequest("add_special_tokens: expected true or false", "add_special_tokens")
            tokens = model.tokenizer.encode(prompt, add_bos=None if special else False)
    except (BadRequest, UserError) as e:  # UserError: the chat template failed
        return refusal(e, "messages")
    return web.json_response({"count": len(tokens), "max_model_len": model.config.max_position_embeddings,
                              "tokens": tokens, "token_strs": None})


async def detokenize(http_request: web.Request) -> web.Response:
    """vLLM's `/detokenize`: `{"tokens": [ids]}` -> `{"prompt": text}`, special tokens kept (lossless)."""
    model = http_request.app[BATCHER].model
    try:
        body = await read_json(http_request)
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not (tokens == [] or _is_ids(tokens)):
            raise BadRequest("tokens: expected a list of token ids", "tokens")
        bad = next((t for t in tokens if not 0 <= t < model.config.vocab_size), None)
        if bad is not None:
            raise BadRequest(f"tokens: token id {bad} outside the vocabulary [0, {model.config.vocab_size})",
                             "tokens")
    except BadRequest as e:
        return refusal(e, "tokens")
    return web.json_response({"prompt": model.tokenizer.decode(tokens, skip_special_tokens=False)})


async def tokenizer_info(http_request: web.Request) -> web.Response:
    """vLLM's `/tokenizer_info`: the special tokens and chat template (lm-eval reads eos/bos/pad and the template)."""
    model = http_request.app[BATCHER].model
    tokenizer = model.tokenizer
    return web.json_response({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokenizer.bos_token,
                              "eos_token": tokenizer.eos_token, "pad_token": tokenizer.pad_token,
                              "add_bos_token": tokenizer.add_bos, "chat_template": tokenizer.chat_template,
                              "model_max_length": model.config.max_position_embeddings})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_get("/tokenizer_info", tokenizer_info)
