"""Chat templates: a Trace -> token ids + loss weights (1 exactly on the teacher's tokens).

Templates:
  chatml     `<|im_start|>{role}\\n{content}<|im_end|>\\n` (Orca 2, SmolLM2)
  llama2     `<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>` (LLaMA-2 chat)
  plain      `### System:\\n...\\n\\n### User:\\n...\\n\\n### Assistant:\\n{answer}{eos}\\n\\n`
  tokenizer  the tokenizer's own Jinja chat template (as `transformers.apply_chat_template`)

A run trains with one of these and saves it with the model as a Jinja chat template
(`run_chat_template`), so evaluation and serving prompt the model exactly as training did.

Tokens: a template's special tokens that the tokenizer already defines keep their ids (the
released Orca 2 tokenizer defines `<|im_start|>` and `<|im_end|>`); those it lacks are added
after its last id, in the order of `required_tokens` (`<|im_start|>`, then `<|im_end|>`).

The whole conversation is rendered as one string and tokenized once (tokenizing pieces apart
can change tokens at the seams); weights come from character spans: a token is weighted when
it overlaps an assistant turn's content or is that turn's end-of-turn token. Everything else
(system, user, role headers, whitespace between content and end-of-turn) has weight 0.
"""

from __future__ import annotations

import numpy as np

from orca_jax.data.packing import TOPK_FILL_LOGPROB
from orca_jax.data.traces import Trace
from orca_jax.errors import UserError

TEMPLATES = ("chatml", "llama2", "plain", "tokenizer")
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")

Span = tuple[int, int]


class _Builder:
    """Accumulates rendered text and the character spans that carry loss."""

    def __init__(self):
        self.parts: list[str] = []
        self.size = 0
        self.content_spans: list[Span] = []  # assistant content, one per assistant turn
        self.eot_spans: list[Span] = []  # each assistant turn's end-of-turn token

    def add(self, text: str) -> Span:
        span = (self.size, self.size + len(text))
        self.parts.append(text)
        self.size += len(text)
        return span

    def assistant(self, content: str, eot: str, between: str = "") -> None:
        self.content_spans.append(self.add(content))
        self.add(between)
        self.eot_spans.append(self.add(eot))

    @property
    def text(self) -> str:
        return "".join(self.parts)


def required_tokens(template: str) -> tuple[str, ...]:
    """Special tokens the template needs in the vocabulary."""
    return CHATML_TOKENS if template == "chatml" else ()


def ensure_template_tokens(tokenizer, template: str) -> int:
    """Add the template's special tokens if missing; returns how many were added (the model's
    embeddings must then be resized to `tokenizer.vocab_size`)."""
    missing = [t for t in required_tokens(template) if tokenizer.token_to_id(t) is None]
    return tokenizer.add_special_tokens(missing) if missing else 0


# Jinja versions of the renderers below (transformers' chat-template conventions: `messages`,
# `add_generation_prompt`, `bos_token`, `eos_token`). An empty system message is left out, as
# the renderers leave out a trace's empty system message.
_CHATML_JINJA = (
    "{% for message in messages %}{% if message['role'] != 'system' or message['content'] %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_PLAIN_JINJA = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% if message['content'] %}{{ '### System:\\n' + message['content'] + '\\n\\n' }}{% endif %}"
    "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Assistant:\\n' + message['content'] + eos_token + '\\n\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)
_LLAMA2_JINJA = (
    "{% if messages and messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}{% if message['role'] == 'user' %}"
    "{% if loop.first and system %}"
    "{{ bos_token + '[INST] <<SYS>>\\n' + system | trim + '\\n<</SYS>>\\n\\n' + message['content'] | trim + ' [/INST] ' }}"
    "{% else %}{{ bos_token + '[INST] ' + message['content'] | trim + ' [/INST] ' }}{% endif %}"
    "{% else %}{{ message['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"
)


def run_chat_template(template: str, tokenizer) -> str:
    """The Jinja chat template that renders prompts exactly as `template` rendered training text
    for this tokenizer (BOS included where training started with it); saved with the model."""
    if template == "tokenizer":
        if not tokenizer.chat_template:
            raise UserError("template 'tokenizer': this tokenizer has no chat template of its own")
        return tokenizer.chat_template
    if template == "llama2":
        return _LLAMA2_JINJA
    body = {"chatml": _CHATML_JINJA, "plain": _PLAIN_JINJA}.get(template)
    if body is None:
        raise UserError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    starts_with_bos = tokenizer.add_bos and tokenizer.bos_id is not None
    return ("{{ bos_token }}" if starts_with_bos else "") + body


def _eos(tokenizer) -> str:
    if tokenizer.eos_id is None:
        raise UserError("this template ends assistant turns with EOS, but the tokenizer has no EOS token")
    return tokenizer.backend.id_to_token(tokenizer.eos_id)


def _builder_with_bos(tokenizer) -> _Builder:
    """A builder that starts with BOS when the tokenizer adds one."""
    b = _Builder()
    if tokenizer.add_bos and tokenizer.bos_id is not None:
        b.add(tokenizer.backend.id_to_token(tokenizer.bos_id))
    return b


def _render_chatml(trace: Trace, tokenizer) -> _Builder:
    missing = [t for t in CHATML_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        raise UserError(f"chatml template: tokens {missing} are not in the vocabulary; add them with ensure_template_tokens (and resize the model)")
    b = _builder_with_bos(tokenizer)
    if trace.system:
        b.add(f"<|im_start|>system\n{trace.system}<|im_end|>\n")
    for turn in trace.turns:
        b.add(f"<|im_start|>{turn['role']}\n")
        if turn["role"] == "assistant":
            b.assistant(turn["content"], "<|im_end|>")
        else:
            b.add(turn["content"] + "<|im_end|>")
        b.add("\n")
    return b


def _render_llama2(trace: Trace, tokenizer) -> _Builder:
    # Meta's reference format: each user turn opens with BOS, each answer closes with EOS, the
    # system message is folded into the first user turn.
    bos = tokenizer.backend.id_to_token(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
    eos = _eos(tokenizer)
    b = _Builder()
    for i, turn in enumerate(trace.turns):
        if turn["role"] == "user":
            content = turn["content"].strip()
            if i == 0 and trace.system:
                content = f"<<SYS>>\n{trace.system.strip()}\n<</SYS>>\n\n{content}"
            b.add(f"{bos}[INST] {content} [/INST] ")
        else:
            b.assistant(turn["content"].strip(), eos, between=" ")
    return b


def _render_plain(trace: Trace, tokenizer) -> _Builder:
    eos = _eos(tokenizer)
    b = _builder_with_bos(tokenizer)
    if trace.system:
        b.add(f"### System:\n{trace.system}\n\n")
    for turn in trace.turns:
        if turn["role"] == "user":
            b.add(f"### User:\n{turn['content']}\n\n")
        else:
            b.add("### Assistant:\n")
            b.assistant(turn["content"], eos)
            b.add("\n\n")
    return b


def _render_jinja(trace: Trace, tokenizer) -> _Builder:
    """The tokenizer's template renders the text; assistant contents are located in it in order.
    The end-of-turn token is the special token right after the content (found after tokenizing)."""
    messages = ([{"role": "system", "content": trace.system}] if trace.system else []) + list(trace.turns)
    text = tokenizer.apply_chat_template(messages)
    b = _Builder()
    b.add(text)
    cursor = 0
    for turn in trace.turns:
        content = turn["content"]
        start = text.find(content, cursor)
        if start < 0:  # templates such as LLaMA-2's strip the content
            content = content.strip()
            start = text.find(content, cursor)
        if start < 0:
            raise UserError(f"trace {trace.id}: the tokenizer's chat template does not reproduce a {turn['role']} turn verbatim")
        cursor = start + len(content)
        if turn["role"] == "assistant":
            b.content_spans.append((start, cursor))
    return b


_RENDERERS = {"chatml": _render_chatml, "llama2": _render_llama2, "plain": _render_plain, "tokenizer": _render_jinja}


def render(trace: Trace, tokenizer, template: str) -> _Builder:
    if template not in _RENDERERS:
        raise UserError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    if not trace.turns or trace.turns[-1]["role"] != "assistant":
        raise UserError(f"trace {trace.id}: nothing to train on (no assistant response)")
    return _RENDERERS[template](trace, tokenizer)


def _overlaps(token: Span, span: Span) -> bool:
    return token[0] < span[1] and span[0] < token[1]


def tokenize_trace(trace: Trace, tokenizer, template: str = "chatml") -> dict[str, np.ndarray]:
    """`{"ids": int32[n], "loss_weights": float32[n]}` (+ `teacher_topk_ids` / `_logprobs`
    `[n, k]` when the trace carries top-k; row i is the teacher's distribution for token i)."""
    b = render(trace, tokenizer, template)
    encoding = tokenizer.backend.encode(b.text, add_special_tokens=False)
    ids = np.asarray(encoding.ids, np.int32)
    offsets = encoding.offsets
    weights = np.zeros(len(ids), np.float32)
    special_ids = set(tokenizer.backend.get_added_tokens_decoder())
    turn_tokens: list[list[int]] = []  # weighted token indices per assistant turn
    t = 0
    for turn_index, content in enumerate(b.content_spans):
        while t < len(ids) and offsets[t][1] <= content[0]:
            t += 1
        mine = []
        while t < len(ids) and _overlaps(offsets[t], content):
            mine.append(t)
            t += 1
        if b.eot_spans:
            eot = b.eot_spans[turn_index]
            while t < len(ids) and offsets[t][1] <= eot[0]:
                t += 1
            if t < len(ids) and tuple(offsets[t]) == eot:
                mine.append(t)
        elif t < len(ids) and int(ids[t]) in special_ids:  # Jinja template: the token right after
            mine.append(t)
        weights[mine] = 1.0
        turn_tokens.append(mine)
    example = {"ids": ids, "loss_weights": weights}
    if trace.teacher_topk_ids is not None:
        example.update(_align_topk(trace, ids, turn_tokens[-1]))
    return example


def _align_topk(trace: Trace, ids: np.ndarray, response_tokens: list[int]) -> dict[str, np.ndarray]:
    """Place the teacher's top-k rows on the last response's tokens. A response's top-k may
    stop before the end-of-turn token; that row becomes one-hot on the token itself."""
    topk_ids = np.asarray(trace.teacher_topk_ids, np.int32)
    topk_lp = np.asarray(trace.teacher_topk_logprobs, np.float32)
    n_rows, k = topk_ids.shape
    if n_rows not in (len(response_tokens), len(response_tokens) - 1):
        raise UserError(
            f"trace {trace.id}: teacher top-k has {n_rows} rows but the response is {len(response_tokens) - 1} tokens "
            "(+1 end-of-turn) in this tokenizer; top-k must be captured with the student's tokenizer"
        )
    out_ids = np.zeros((len(ids), k), np.int32)
    out_lp = np.full((len(ids), k), TOPK_FILL_LOGPROB, np.float32)
    out_ids[response_tokens[:n_rows]] = topk_ids
    out_lp[response_tokens[:n_rows]] = topk_lp
    if n_rows < len(response_tokens):
        last = response_tokens[-1]
        out_ids[last, 0], out_lp[last, 0] = ids[last], 0.0
    return {"teacher_topk_ids": out_ids, "teacher_topk_logprobs": out_lp}
