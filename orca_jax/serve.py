"""OpenAI-compatible HTTP server for a local model: `/v1/chat/completions` and `/v1/models` here;
`/v1/completions` and the tokenizer endpoints lm-eval's API clients use in `serve_completions.py`.

Requests are decoded by continuous batching (`ContinuousBatcher`): a request arriving while
others decode joins them at the next step. The server only translates between the OpenAI wire
format and `GenerationRequest` / `Completion`. Honoured: `temperature`, `top_p`, `max_tokens`
(or `max_completion_tokens`), `stop`, `logprobs`, `top_logprobs`, and `stream` (server-sent
events in OpenAI's chunk format, usage in the last chunk). More requests waiting than the
queue allows get 429 with Retry-After; a client that disconnects frees its slot. Not supported
(400): `n` > 1, `logprobs` with `stream`. `seed` is accepted but sampling draws from the server's
`--seed` stream, so it does not make a sampled reply repeatable.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiohttp import web

from orca_jax.continuous_batching import ContinuousBatcher, QueueFull
from orca_jax.errors import UserError
from orca_jax.teacher.local_teacher import Completion, GenerationRequest, add_scores

MAX_TOP_LOGPROBS = 20  # OpenAI's limit
BATCHER = web.AppKey("batcher", ContinuousBatcher)
MODEL_NAME = web.AppKey("model_name", str)


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
          headers: dict | None = None):
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": None}},
                             status=status, headers=headers)


def number(body: dict, name: str, default, kind, low, high):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (kind is int and not float(value).is_integer()):
        raise BadRequest(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}", name)
    if not low <= value <= high:
        raise BadRequest(f"{name}: expected a value in [{low}, {high}], got {value}", name)
    return kind(value)


async def read_json(http_request: web.Request):
    try:
        return await http_request.json()
    except ValueError:
        raise BadRequest("request body: not valid JSON") from None


def refusal(e: Exception, param: str) -> web.Response:
    """The answer to a request the server cannot take: 400 for bad input (`param` names the field of
    a UserError, e.g. a prompt over the context), 429 with Retry-After when the queue is full."""
    if isinstance(e, QueueFull):
        return error(429, str(e), kind="rate_limit_error", headers={"Retry-After": str(e.retry_after)})
    return error(400, str(e), e.param if isinstance(e, BadRequest) else param)


def sampling(body: dict, context: int, default_max_tokens: int, min_max_tokens: int = 1) -> dict:
    """`GenerationRequest` fields both completions endpoints read the same way (`max_tokens`,
    `temperature`, `top_p`, `stop`), after checking `n` and `seed`."""
    if body.get("n", 1) != 1:
        raise BadRequest("n: only n = 1 is supported", "n")
    number(body, "seed", None, int, -2**63, 2**63 - 1)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = number({"max_tokens": max_tokens}, "max_tokens", default_max_tokens, int, min_max_tokens, context)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise BadRequest("stop: expected a string or a list of up to 4 strings", "stop")
    return {"max_tokens": max_tokens, "temperature": number(body, "temperature", 1.0, float, 0.0, 2.0),
            "top_p": number(body, "top_p", 1.0, float, 1e-6, 1.0), "stop": tuple(stop)}


def messages_of(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: expected a non-empty list", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise BadRequest(f"messages[{i}].role: expected system, user or assistant", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: only text can reach a text model
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise BadRequest(f"messages[{i}].content: only text parts are supported", "messages")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content: expected a string", "messages")
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    return out


def parse_chat_request(body, batcher: ContinuousBatcher) -> GenerationRequest:
    """The generation request an OpenAI chat-completions body asks for; BadRequest says what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("request body: expected a JSON object")
    if not isinstance(body.get("stream", False), bool):
        raise BadRequest("stream: expected true or false", "stream")
    settings = sampling(body, batcher.model.config.max_position_embeddings, 256)
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise BadRequest("logprobs: expected true or false", "logprobs")
    top_logprobs = number(body, "top_logprobs", 0, int, 0, MAX_TOP_LOGPROBS)
    if top_logprobs and not logprobs:
        raise BadRequest("top_logprobs: needs logprobs: true", "top_logprobs")
    if logprobs and body.get("stream"):
        raise BadRequest("logprobs: not supported with stream: true", "logprobs")
    return GenerationRequest(prompt_ids=tuple(batcher.encode_chat(messages_of(body))), **settings, topk=top_logprobs,
                             logprobs=logprobs)


def _logprobs_content(batcher: ContinuousBatcher, request: GenerationRequest, c: Completion) -> list[dict]:
    """OpenAI `logprobs.content` for the response's content tokens (not the end-of-turn token)."""
    decode = batcher.model.tokenizer.decode

    def entry(token_id, logprob):
        text = decode([token_id], skip_special_tokens=False)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = []
    for i, token_id in enumerate(c.token_ids):
        if token_id in batcher.eos_ids and i == len(c.token_ids) - 1:
            break
        item = entry(token_id, c.token_logprobs[i])
        item["top_logprobs"] = ([entry(t, lp) for t, lp in zip(c.topk_ids[i], c.topk_logprobs[i])]
                                if request.topk else [])
        content.append(item)
    return content


async def chat_completions(http_request: web.Request) -> web.StreamResponse:
    batcher = http_request.app[BATCHER]
    try:
        body = await read_json(http_request)
        request = parse_chat_request(body, batcher)
        stream = batcher.submit(request)
    except (BadRequest, UserError, QueueFull) as e:
        return refusal(e, "messages")
    header = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": http_request.app[MODEL_NAME]}
    try:  # the server cancels this handler when the client disconnects: the finally frees the slot
        if body.get("stream"):
            return await _stream(http_request, stream, header)
        completion = await stream.completion()
    except UserError as e:
        return error(400, str(e), "messages")
    finally:
        batcher.cancel(stream)  # a no-op once it has finished
    if request.logprobs:
        await asyncio.to_thread(add_scores, batcher.model, [request], [completion])
    choice = {"index": 0, "message": {"role": "assistant", "content": completion.text},
              "logprobs": {"content": _logprobs_content(batcher, request, completion)} if request.logprobs else None,
              "finish_reason": completion.finish_reason}
    return web.json_response({**header, "object": "chat.completion", "choices": [choice],
                              "usage": usage([completion])})


def usage(completions: list[Completion]) -> dict:
    prompt_tokens = sum(c.prompt_tokens for c in completions)
    completion_tokens = sum(len(c.token_ids) for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _stream(http_request: web.Request, stream, header: dict) -> web.StreamResponse:
    """Server-sent events as OpenAI streams them: a chunk with the role, one per text piece, one
    with the finish reason and the usage, then `data: [DONE]`."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(http_request)

    async def send(delta: dict, finish_reason: str | None = None, **extra) -> None:
        chunk = {**header, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], **extra}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await send({"role": "assistant", "content": ""})
    async for piece in stream.deltas():
        await send({"content": piece})
    completion = await stream.completion()
    await send({}, completion.finish_reason, usage=usage([completion]))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def list_models(http_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": http_request.app[MODEL_NAME], "object": "model", "created": 0, "owned_by": "orca-jax"}]})


def make_app(batcher: ContinuousBatcher, model_name: str) -> web.Application:
    """The aiohttp application; the caller enters `batcher`'s async context around serving."""
    from orca_jax import serve_completions  # it builds on this module's request helpers

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[BATCHER] = batcher
    app[MODEL_NAME] = model_name
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    serve_completions.add_routes(app)
    return app


async def serve(batcher: ContinuousBatcher, model_name: str, host: str = "127.0.0.1", port: int = 8000,
                on_ready=None) -> None:
    """Serves until cancelled; `on_ready(url)` is called once the socket listens (port 0 picks a free one)."""
    async with batcher:
        # handler_cancellation: a client that disconnects cancels its handler, which frees its slot
        runner = web.AppRunner(make_app(batcher, model_name), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise UserError(f"--host/--port: cannot listen on {host}:{port}: {e.strerror}") from None
        bound_port = runner.addresses[0][1]
        if on_ready:
            on_ready(f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}/v1")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
