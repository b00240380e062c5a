"""Tokenizers: load from a Hugging Face folder, a `tokenizer.json` file or a GGUF file's metadata.

Tokenization itself is always done by the HF `tokenizers` library; this module only builds the
right `tokenizers.Tokenizer` and carries what the model expects around it (BOS, EOS, padding,
chat template). GGUF vocabularies are rebuilt the way `transformers` rebuilds them
(`transformers/integrations/gguf/gguf_tokenizer_mapping.py`), so both give the same token ids.

    tok = load_tokenizer("model.gguf")          # or an HF folder, or tokenizer.json
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Hi"}],
                                             add_generation_prompt=True), add_bos=False)
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import lru_cache

import jinja2
import jinja2.ext
import jinja2.sandbox
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer

from orca_jax.errors import UserError

# llama.cpp token types (gguf.TokenType): CONTROL tokens are special, USER_DEFINED are plain added tokens.
_CONTROL, _USER_DEFINED = 3, 4

# `tokenizer.ggml.pre` names whose vocabularies were learned with a split other than GPT-2's.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GGUF_PRE_SPLITS = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}


# End-of-turn markers of common chat templates (ChatML, LLaMA-3, Phi-3, Gemma); when the template
# uses one that differs from EOS (e.g. Orca 2: EOS `</s>`, turns end in `<|im_end|>`), replies stop there.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


class Tokenizer:
    """A `tokenizers.Tokenizer` plus the model's conventions (BOS, EOS, pad, chat template)."""

    def __init__(
        self,
        backend: BackendTokenizer,
        *,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        add_bos: bool = False,
        chat_template: str | None = None,
    ):
        self.backend = backend
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.add_bos = add_bos
        self.chat_template = chat_template

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _token(self, token_id: int | None) -> str | None:
        return None if token_id is None else self.backend.id_to_token(token_id)

    @property
    def bos_token(self) -> str | None:
        return self._token(self.bos_id)

    @property
    def eos_token(self) -> str | None:
        return self._token(self.eos_id)

    @property
    def pad_token(self) -> str | None:
        return self._token(self.pad_id)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; BOS is prepended when the model expects it (or as `add_bos` says)."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        add_bos = self.add_bos if add_bos is None else add_bos
        if add_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def add_special_tokens(self, tokens: list[str]) -> int:
        """Add `tokens` as special tokens (kept whole, never split); returns how many were new.

        The caller resizes the model's embeddings to `vocab_size` afterwards.
        """
        return self.backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """Render `messages` with the model's Jinja chat template, as `transformers` does."""
        if not self.chat_template:
            raise UserError("this tokenizer has no chat template (none in tokenizer_config.json or GGUF metadata)")
        try:
            return _compile_template(self.chat_template).render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                pad_token=self.pad_token or "",
            )
        except jinja2.TemplateError as e:
            raise UserError(f"chat template failed: {e}") from e

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
        """Token ids of the rendered chat, as transformers' `apply_chat_template(tokenize=True)`:
        the template writes any BOS itself, so none is added here."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt), add_bos=False)

    @property
    def stop_ids(self) -> list[int]:
        """Ids that end a generated reply: EOS, plus the end-of-turn token the chat template uses."""
        ids = [] if self.eos_id is None else [self.eos_id]
        for token in _END_OF_TURN_TOKENS:
            token_id = self.token_to_id(token)
            if self.chat_template and token in self.chat_template and token_id is not None and token_id not in ids:
                ids.append(token_id)
        return ids

    def save(self, directory) -> None:
        """Write `tokenizer.json` and `tokenizer_config.json` (loadable by `transformers.AutoTokenizer`)."""
        os.makedirs(directory, exist_ok=True)
        backend = BackendTokenizer.from_str(self.backend.to_str())
        if self.add_bos and self.bos_id is not None:
            # transformers adds special tokens through the post-processor, so BOS goes there.
            bos = self.bos_token
            backend.post_processor = processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, self.bos_id)]
            )
        backend.save(os.path.join(directory, "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos,
            "add_eos_token": False,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "model_max_length": int(1e30),
            "clean_up_tokenization_spaces": False,
        }
        if self.chat_template:
            config["chat_template"] = self.chat_template
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)


@lru_cache(maxsize=16)
def _compile_template(source: str) -> jinja2.Template:
    # Same environment as transformers' chat templates: sandboxed, trim/lstrip blocks, loop controls.
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"chat template has a syntax error at line {e.lineno}: {e.message}") from e


def load_tokenizer(path) -> Tokenizer:
    """Tokenizer from an HF folder (tokenizer.json + tokenizer_config.json), a tokenizer.json file, or a .gguf file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory")
    if os.path.isfile(path) and path.endswith(".gguf"):
        from gguf import GGUFReader

        return tokenizer_from_gguf_fields(path, _gguf_fields(GGUFReader(path)))
    if os.path.isdir(path):
        return _tokenizer_from_hf_folder(path, os.path.join(path, "tokenizer.json"))
    if path.endswith(".json"):
        return _tokenizer_from_hf_folder(os.path.dirname(path) or ".", path)
    raise UserError(f"{path}: expected a folder with tokenizer.json, a tokenizer.json file or a .gguf file")


def _tokenizer_from_hf_folder(folder: str, tokenizer_json: str) -> Tokenizer:
    if not os.path.isfile(tokenizer_json):
        raise UserError(f"{folder}: no tokenizer.json (only fast-tokenizer folders are supported)")
    try:
        backend = BackendTokenizer.from_file(tokenizer_json)
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise UserError(f"{tokenizer_json}: not a valid tokenizers file: {e}") from e
    config = _read_json(os.path.join(folder, "tokenizer_config.json"))
    special_map = _read_json(os.path.join(folder, "special_tokens_map.json"))

    def special_id(name: str) -> int | None:
        token = config.get(name, special_map.get(name))
        if isinstance(token, dict):  # serialized AddedToken
            token = token.get("content")
        return None if token is None else backend.token_to_id(token)

    bos_id = special_id("bos_token")
    add_bos = config.get("add_bos_token")
    if add_bos is None:
        # Older folders say it only through tokenizer.json's post-processor: ask the library.
        add_bos = bos_id is not None and backend.encode("a", add_special_tokens=True).ids[:1] == [bos_id]
    # The BOS decision lives on this object; keep the backend from adding special tokens itself.
    backend.post_processor = None
    chat_template = config.get("chat_template")
    template_file = os.path.join(folder, "chat_template.jinja")  # where transformers v5 saves it
    if chat_template is None and os.path.isfile(template_file):
        with open(template_file, encoding="utf-8") as f:
            chat_template = f.read()
    if isinstance(chat_template, list):  # named templates: [{"name": ..., "template": ...}]
        chat_template = {t["name"]: t["template"] for t in chat_template}.get("default")
    return Tokenizer(
        backend,
        bos_id=bos_id,
        eos_id=special_id("eos_token"),
        pad_id=special_id("pad_token"),
        add_bos=bool(add_bos),
        chat_template=chat_template,
    )


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e


def _gguf_fields(reader) -> dict:
    """GGUF metadata as plain Python values."""
    return {name: field.contents() for name, field in reader.fields.items()}


def tokenizer_from_gguf_fields(path: str, fields: dict) -> Tokenizer:
    """Build the tokenizer a GGUF file describes (`tokenizer.ggml.*` metadata); `path` names it in errors."""
    kind = fields.get("tokenizer.ggml.model")
    tokens = fields.get("tokenizer.ggml.tokens")
    if kind is None or tokens is None:
        raise UserError(f"{path}: GGUF has no tokenizer metadata (tokenizer.ggml.model / tokenizer.ggml.tokens)")
    token_types = fields.get("tokenizer.ggml.token_type") or [0] * len(tokens)
    if kind == "gpt2":
        backend = _byte_level_bpe(fields, tokens, fields.get("tokenizer.ggml.pre"))
        add_bos_default = False
    elif kind == "llama":
        backend = _sentencepiece_bpe(path, fields, tokens)
        add_bos_default = True  # llama.cpp adds BOS to sentencepiece vocabularies that do not say otherwise
    else:
        raise UserError(f"{path}: unsupported GGUF tokenizer model {kind!r} (supported: 'gpt2', 'llama')")

    vocab = backend.get_vocab()
    control = [t for t, k in zip(tokens, token_types) if k == _CONTROL and t in vocab]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    user_defined = [t for t, k in zip(tokens, token_types) if k == _USER_DEFINED and t in vocab]
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in user_defined])

    return Tokenizer(
        backend,
        bos_id=fields.get("tokenizer.ggml.bos_token_id"),
        eos_id=fields.get("tokenizer.ggml.eos_token_id"),
        pad_id=fields.get("tokenizer.ggml.padding_token_id"),
        add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", add_bos_default)),
        chat_template=fields.get("tokenizer.chat_template"),
    )


def _byte_level_bpe(fields: dict, tokens: list[str], pre: str | None) -> BackendTokenizer:
    # GGUF stores byte-level tokens in GPT-2's byte alphabet, except special tokens written as
    # plain text; those are respelled in the alphabet (what transformers does) so the vocab is consistent.
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    respell = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    vocab = {}
    for index, token in enumerate(tokens):
        spelled = token if set(token) <= alphabet else "".join(p for p, _ in respell.pre_tokenize_str(token))
        vocab[spelled] = index
    merges = [tuple(m.split(" ", 1)) for m in fields.get("tokenizer.ggml.merges") or []]
    backend = BackendTokenizer(
        models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    split = _GGUF_PRE_SPLITS.get(pre)
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece_bpe(path: str, fields: dict, tokens: list[str]) -> BackendTokenizer:
    """A sentencepiece BPE vocabulary (LLaMA 1/2, Mistral) as `tokenizers` BPE with byte fallback."""
    vocab = {token: index for index, token in enumerate(tokens)}
    if fields.get("tokenizer.ggml.merges"):
        merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    else:
        scores = fields.get("tokenizer.ggml.scores")
        if scores is None:
            raise UserError(f"{path}: sentencepiece GGUF vocabulary has neither merges nor scores")
        merges = _merges_from_scores(vocab, dict(zip(tokens, scores)))
    backend = BackendTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(content=" ", left=1)]
    )
    return backend


def _merges_from_scores(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    # A sentencepiece BPE model has no merge list: every split of a piece into two pieces of the
    # vocabulary is a merge, ranked by the merged piece's score (as transformers' generate_merges).
    merges = []
    for piece, score in scores.items():
        pairs = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        pairs.sort(key=lambda p: (vocab[p[0]], vocab[p[1]]))
        merges.extend((left, right, score) for left, right in pairs)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]
