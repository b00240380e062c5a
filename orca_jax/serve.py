"""OpenAI-compatible HTTP server for a local model: `/v1/chat/completions` and `/v1/models`.

Concurrent requests are batched through the KV-cache generator by `LocalTeacher`; the server
only translates between the OpenAI wire format and `GenerationRequest` / `Completion`.
Honoured: `temperature`, `top_p`, `max_tokens` (or `max_completion_tokens`), `stop`,
`logprobs`, `top_logprobs`. Not supported (400): `n` > 1, `stream`.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web

from orca_jax.errors import UserError
from orca_jax.teacher.local_teacher import Completion, GenerationRequest, LocalTeacher

MAX_TOP_LOGPROBS = 20  # OpenAI's limit
_TEACHER = web.AppKey("teacher", LocalTeacher)
_MODEL_NAME = web.AppKey("model_name", str)


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": None}},
                             status=status)


def _number(body: dict, name: str, default, kind, low, high):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (kind is int and not float(value).is_integer()):
        raise BadRequest(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}", name)
    if not low <= value <= high:
        raise BadRequest(f"{name}: expected a value in [{low}, {high}], got {value}", name)
    return kind(value)


def _messages(body: dict) -> list[dict]:
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


def parse_chat_request(body, teacher: LocalTeacher) -> GenerationRequest:
    """The generation request an OpenAI chat-completions body asks for; BadRequest says what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("request body: expected a JSON object")
    if body.get("stream"):
        raise BadRequest("stream: streaming is not supported by this server", "stream")
    if body.get("n", 1) != 1:
        raise BadRequest("n: only n = 1 is supported", "n")
    context = teacher.model.config.max_position_embeddings
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", 256, int, 1, context)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise BadRequest("stop: expected a string or a list of up to 4 strings", "stop")
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise BadRequest("logprobs: expected true or false", "logprobs")
    top_logprobs = _number(body, "top_logprobs", 0, int, 0, MAX_TOP_LOGPROBS)
    if top_logprobs and not logprobs:
        raise BadRequest("top_logprobs: needs logprobs: true", "top_logprobs")
    return GenerationRequest(
        prompt_ids=tuple(teacher.encode_chat(_messages(body))), max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, float, 1e-6, 1.0), stop=tuple(stop), topk=top_logprobs, logprobs=logprobs)


def _logprobs_content(teacher: LocalTeacher, request: GenerationRequest, c: Completion) -> list[dict]:
    """OpenAI `logprobs.content` for the response's content tokens (not the end-of-turn token)."""
    decode = teacher.model.tokenizer.decode

    def entry(token_id, logprob):
        text = decode([token_id], skip_special_tokens=False)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = []
    for i, token_id in enumerate(c.token_ids):
        if token_id in teacher.eos_ids and i == len(c.token_ids) - 1:
            break
        item = entry(token_id, c.token_logprobs[i])
        item["top_logprobs"] = ([entry(t, lp) for t, lp in zip(c.topk_ids[i], c.topk_logprobs[i])]
                                if request.topk else [])
        content.append(item)
    return content


async def chat_completions(http_request: web.Request) -> web.Response:
    teacher = http_request.app[_TEACHER]
    try:
        body = await http_request.json()
    except ValueError:
        return _error(400, "request body: not valid JSON")
    try:
        request = parse_chat_request(body, teacher)
        completion = await teacher.generate(request)
    except BadRequest as e:
        return _error(400, str(e), e.param)
    except UserError as e:  # e.g. prompt + max_tokens over the context
        return _error(400, str(e), "messages")
    choice = {"index": 0, "message": {"role": "assistant", "content": completion.text},
              "logprobs": {"content": _logprobs_content(teacher, request, completion)} if request.logprobs else None,
              "finish_reason": completion.finish_reason}
    completion_tokens = len(completion.token_ids)
    return web.json_response({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": http_request.app[_MODEL_NAME], "choices": [choice],
        "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": completion.prompt_tokens + completion_tokens},
    })


async def list_models(http_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": http_request.app[_MODEL_NAME], "object": "model", "created": 0, "owned_by": "orca-jax"}]})


def make_app(teacher: LocalTeacher, model_name: str) -> web.Application:
    """The aiohttp application; the caller enters `teacher`'s async context around serving."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_TEACHER] = teacher
    app[_MODEL_NAME] = model_name
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    return app


async def serve(teacher: LocalTeacher, model_name: str, host: str = "127.0.0.1", port: int = 8000,
                on_ready=None) -> None:
    """Serves until cancelled; `on_ready(url)` is called once the socket listens (port 0 picks a free one)."""
    async with teacher:
        runner = web.AppRunner(make_app(teacher, model_name), access_log=None)
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
