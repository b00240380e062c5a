"""Tokenizer loading checked against transformers' own tokenizers for the same files."""

import copy
import json

import numpy as np
import pytest
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, pre_tokenizers, processors

from orca_jax.data.tokenizer import Tokenizer, load_tokenizer
from orca_jax.errors import UserError

transformers = pytest.importorskip("transformers")

TEXTS = [
    "hello world",
    "  Leading spaces, trailing spaces  ",
    "What's 12*7?  Explain   step-by-step.\n\n1. café 日本語 😀\tTabs",
    "Special tokens stay whole: <|im_start|>user\nhi<|im_end|>",
    "",
]
MESSAGES = [
    {"role": "system", "content": "You are Orca, a cautious assistant."},
    {"role": "user", "content": "A train leaves at 3pm.\nWhen does it arrive?  Think step by step."},
    {"role": "assistant", "content": "It arrives at 5pm."},
    {"role": "user", "content": "Why? 😀"},
]


def _ref_chat_ids(ref, messages, add_generation_prompt):
    out = ref.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def test_gguf_byte_level_tokenizer_matches_transformers(smollm2_tokenizer, smollm2_hf_tokenizer):
    ours, ref = smollm2_tokenizer, smollm2_hf_tokenizer
    for text in TEXTS:
        assert ours.encode(text) == ref(text)["input_ids"], text
        ids = ours.encode(text)
        assert ours.decode(ids, skip_special_tokens=False) == ref.decode(ids)
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True)
    assert ours.vocab_size == len(ref)
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id)
    assert ours.add_bos is False  # tokenizer.ggml.add_bos_token = false in this file


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_gguf_chat_template_matches_transformers(smollm2_tokenizer, smollm2_hf_tokenizer, add_generation_prompt):
    ours, ref = smollm2_tokenizer, smollm2_hf_tokenizer
    for messages in (MESSAGES, MESSAGES[1:2]):  # with and without a system message (template adds a default)
        rendered = ours.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        assert rendered == ref.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        assert ours.encode(rendered, add_bos=False) == _ref_chat_ids(ref, messages, add_generation_prompt)


def _write_tokenizer_gguf(path, tokens, *, model="llama", scores=None, token_types=None, add_bos=None):
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_token_list(tokens)
    if scores is not None:
        writer.add_token_scores(scores)
    if token_types is not None:
        writer.add_token_types(token_types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.add_chat_template("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _sentencepiece_vocab():
    # A small LLaMA-style vocabulary: specials, the 256 byte-fallback tokens, then scored pieces.
    pieces = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "\u2581h", "he", "ll", "llo", "hello", "\u2581hello",
              "or", "ld", "\u2581w", "\u2581wor", "\u2581world", "\u2581the", "t", "th", "\u2581t"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    token_types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    return tokens, scores, token_types


def test_gguf_sentencepiece_tokenizer_matches_transformers(tmp_path):
    tokens, scores, token_types = _sentencepiece_vocab()
    path = tmp_path / "spm.gguf"
    _write_tokenizer_gguf(path, tokens, scores=scores, token_types=token_types)
    ours = load_tokenizer(path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    assert ours.add_bos  # llama.cpp's default for sentencepiece vocabularies
    for text in ["hello world", "the hello", " hello  world", "héllo wörld!", "held<s>"]:
        assert ours.encode(text) == ref(text)["input_ids"], text
        assert ours.decode(ours.encode(text)) == ref.decode(ref(text)["input_ids"], skip_special_tokens=True)


def test_unsupported_gguf_tokenizer_model_is_user_error(tmp_path):
    path = tmp_path / "odd.gguf"
    _write_tokenizer_gguf(path, ["<unk>", "<s>", "</s>", "a"], model="rwkv")
    with pytest.raises(UserError, match=r"odd\.gguf.*unsupported GGUF tokenizer model 'rwkv'"):
        load_tokenizer(path)


def test_missing_path_is_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.*no such file"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(UserError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_save_round_trips_through_transformers(smollm2_tokenizer, tmp_path):
    ours = copy.deepcopy(smollm2_tokenizer)  # a private copy: this test mutates it
    ours.add_bos = True
    assert ours.add_special_tokens(["[PAD]", "<|im_end|>"]) == 1  # <|im_end|> already exists
    assert ours.vocab_size == 49153
    ours.save(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    reloaded = load_tokenizer(tmp_path)
    text = "pad [PAD] stays whole<|im_end|>"
    assert ours.encode(text)[0] == ours.bos_id and ours.token_to_id("[PAD]") in ours.encode(text)
    assert ref(text)["input_ids"] == ours.encode(text) == reloaded.encode(text)
    assert smollm2_tokenizer.vocab_size == 49152  # the shared tokenizer is untouched
    assert ref.apply_chat_template(MESSAGES, tokenize=False) == reloaded.apply_chat_template(MESSAGES)
    assert (reloaded.bos_id, reloaded.eos_id, reloaded.pad_id, reloaded.add_bos) == (1, 2, 2, True)


def test_hf_folder_bos_from_post_processor(tmp_path):
    # An older HF folder that says "add BOS" only through tokenizer.json's post-processor.
    backend = BackendTokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "a": 2, "b": 3, "<unk>": 4}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}}))
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }} {% endfor %}")
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    assert (tok.bos_id, tok.eos_id, tok.add_bos) == (0, 1, True)
    assert tok.encode("a b a") == [0, 2, 3, 2]
    assert tok.encode("a b a", add_bos=False) == [2, 3, 2]
    assert tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "a b "


def test_chat_template_raise_exception_is_user_error(tmp_path):
    backend = BackendTokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    backend.save(str(tmp_path / "tokenizer.json"))
    template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    tok = load_tokenizer(tmp_path)
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(UserError, match="first must be user"):
        tok.apply_chat_template([{"role": "assistant", "content": "x"}])


def test_save_and_load_without_bos(tmp_path):
    # A tokenizer trained in-house (the synthetic world's): no BOS, EOS = end of turn, pad token.
    backend = BackendTokenizer(models.WordLevel({"[PAD]": 0, "<|im_end|>": 1, "a": 2, "b": 3}, unk_token="[PAD]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(["[PAD]", "<|im_end|>"])
    template = "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}"
    tok = Tokenizer(backend, eos_id=1, pad_id=0, chat_template=template)
    tok.save(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert (reloaded.bos_id, reloaded.eos_id, reloaded.pad_id, reloaded.add_bos) == (None, 1, 0, False)
    assert reloaded.encode("a b a") == [2, 3, 2]
    assert reloaded.encode_chat([{"role": "user", "content": "b a"}]) == [3, 2, 1]
    assert reloaded.stop_ids == [1]
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path))("a b")["input_ids"] == [2, 3]


def test_stop_ids_include_template_end_of_turn(tmp_path):
    # Orca 2 style: EOS is </s>, but ChatML turns end in <|im_end|>; replies must stop at either.
    backend = BackendTokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "<|im_end|>": 3}, unk_token="<unk>"))
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ messages[0]['content'] }}<|im_end|>"}))
    assert load_tokenizer(tmp_path).stop_ids == [2, 3]


@pytest.mark.parametrize("pre", ["default", "llama-bpe", "qwen2"])
def test_gguf_byte_level_pre_tokenizer_splits_match_transformers(tmp_path, pre):
    # A byte-level BPE trained here, written as GGUF the way llama.cpp does; the `pre` name picks
    # the split regex (digits in threes for llama-bpe, singly for qwen2), which must match transformers.
    from tokenizers import decoders, trainers

    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    corpus = ["In 2024, 12345 apples cost $67.89 each; don't they'll we've", "Hello   world\n\n  tabs\there"] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus, trainer)
    model = json.loads(backend.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    gguf = pytest.importorskip("gguf")
    path = tmp_path / "bpe.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3] + [1] * (len(tokens) - 1))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ours = load_tokenizer(path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    for text in ["In 2024, 12345 apples cost $67.89!", "don't   they'll\n\n\tWe've 1234567<|endoftext|>x"]:
        assert ours.encode(text) == ref(text)["input_ids"], text
    pieces = [p for p, _ in ours.backend.pre_tokenizer.pre_tokenize_str("1234567")]
    assert len(pieces) == {"default": 1, "llama-bpe": 3, "qwen2": 7}[pre]
