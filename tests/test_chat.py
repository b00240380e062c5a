"""Chat templates: ids equal transformers for SmolLM2's ChatML; loss weight exactly on the
teacher's content and end-of-turn token for every template; erasing touches only system tokens."""

import numpy as np
import pytest
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from orca_jax.data.chat import ensure_template_tokens, tokenize_trace
from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE, ORCA1_SYSTEM_MESSAGES, erase_prompt
from orca_jax.data.tokenizer import Tokenizer
from orca_jax.data.traces import Trace
from orca_jax.errors import UserError

TRACE = Trace(
    id="t1",
    system=ORCA1_SYSTEM_MESSAGES[7],
    turns=[
        {"role": "user", "content": "A train leaves at 3pm and takes 2 hours.\nWhen does it arrive?"},
        {"role": "assistant", "content": "Step 1: start at 3pm.\nStep 2: add 2 hours.\n\nIt arrives at 5pm."},
        {"role": "user", "content": "And if it takes 3 hours? 😀"},
        {"role": "assistant", "content": "Then it arrives at 6pm."},
    ],
)


@pytest.fixture(scope="module")
def sentencepiece_style():
    """A small Metaspace BPE with <s>/</s> and BOS added, like LLaMA's tokenizer."""
    backend = BackendTokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    corpus = [t["content"] for t in TRACE.turns] + [TRACE.system, "[INST] <<SYS>> <</SYS>> [/INST] ### System User Assistant"] * 3
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    return Tokenizer(backend, bos_id=1, eos_id=2, add_bos=True)


def test_smollm2_chatml_ids_equal_transformers(smollm2_tokenizer, smollm2_hf_tokenizer):
    messages = [{"role": "system", "content": TRACE.system}] + TRACE.turns
    out = smollm2_hf_tokenizer.apply_chat_template(messages, tokenize=True)
    expected = list(out["input_ids"] if hasattr(out, "keys") else out)
    for template in ("chatml", "tokenizer"):
        assert tokenize_trace(TRACE, smollm2_tokenizer, template)["ids"].tolist() == expected, template


def _weighted_runs(example, bridge=()):
    """Token ids of each run of weighted tokens; unweighted tokens in `bridge` (whitespace
    between an answer and its end-of-turn token) do not end a run and are left out of it."""
    runs, current = [], []
    for token, weight in zip(example["ids"].tolist(), example["loss_weights"]):
        if weight:
            current.append(token)
        elif current and token not in bridge:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("template", ["chatml", "plain", "tokenizer"])
def test_loss_weight_is_exactly_the_assistant_content_and_end_of_turn(smollm2_tokenizer, template):
    ex = tokenize_trace(TRACE, smollm2_tokenizer, template)
    assert set(np.unique(ex["loss_weights"])) == {0.0, 1.0}
    eot = "<|im_end|>"  # SmolLM2's EOS is also its ChatML end-of-turn
    decoded = [smollm2_tokenizer.decode(run, skip_special_tokens=False) for run in _weighted_runs(ex)]
    assert decoded == [t["content"] + eot for t in TRACE.turns if t["role"] == "assistant"]
    # Everything else (system, user, headers) carries no weight: the unweighted text has no answer in it.
    unweighted = smollm2_tokenizer.decode(ex["ids"][ex["loss_weights"] == 0], skip_special_tokens=False)
    assert "arrives at 5pm" not in unweighted and TRACE.turns[0]["content"] in unweighted


@pytest.mark.parametrize("template", ["llama2", "plain"])
def test_loss_weights_with_a_sentencepiece_style_tokenizer(sentencepiece_style, template):
    tok = sentencepiece_style
    ex = tokenize_trace(TRACE, tok, template)
    answers = [t["content"] for t in TRACE.turns if t["role"] == "assistant"]
    whitespace = {i for i in set(ex["ids"].tolist()) if not tok.decode([i], skip_special_tokens=False).strip()}
    runs = _weighted_runs(ex, bridge=whitespace)
    assert len(runs) == len(answers)
    for run, answer in zip(runs, answers):
        assert run[-1] == tok.eos_id
        assert tok.decode(run[:-1], skip_special_tokens=False).strip() == answer.strip()
    if template == "llama2":
        text = tok.decode(ex["ids"], skip_special_tokens=False)
        assert text.count("[INST]") == 2 and "<<SYS>>" in text and ex["ids"][0] == tok.bos_id


def test_prompt_erasing_changes_only_the_system_tokens(smollm2_tokenizer):
    original = tokenize_trace(TRACE, smollm2_tokenizer, "chatml")
    erased = tokenize_trace(erase_prompt(TRACE, "cautious"), smollm2_tokenizer, "chatml")
    header = 3  # <|im_start|> system \n
    end = smollm2_tokenizer.token_to_id("<|im_end|>")
    a_end, b_end = (ex["ids"].tolist().index(end) for ex in (original, erased))
    assert original["ids"][:header].tolist() == erased["ids"][:header].tolist()
    assert smollm2_tokenizer.decode(original["ids"][header:a_end]) == TRACE.system
    assert smollm2_tokenizer.decode(erased["ids"][header:b_end]) == CAUTIOUS_SYSTEM_MESSAGE
    for key in ("ids", "loss_weights"):
        np.testing.assert_array_equal(original[key][a_end:], erased[key][b_end:])
    assert not original["loss_weights"][:a_end].any() and not erased["loss_weights"][:b_end].any()


def test_teacher_topk_lands_on_the_response_tokens(smollm2_tokenizer):
    plain = tokenize_trace(TRACE, smollm2_tokenizer, "chatml")
    last_run = np.flatnonzero(plain["loss_weights"])[-len(_weighted_runs(plain)[-1]):]
    n = len(last_run) - 1  # the teacher's top-k covers the content, not the end-of-turn token
    rng = np.random.default_rng(0)
    topk_ids = rng.integers(0, 100, (n, 4)).tolist()
    topk_lp = (-rng.random((n, 4))).round(3).tolist()
    trace = Trace(**{**TRACE.to_json(), "teacher_topk_ids": topk_ids, "teacher_topk_logprobs": topk_lp})
    ex = tokenize_trace(trace, smollm2_tokenizer, "chatml")
    np.testing.assert_array_equal(ex["teacher_topk_ids"][last_run[:-1]], topk_ids)
    np.testing.assert_allclose(ex["teacher_topk_logprobs"][last_run[:-1]], topk_lp)
    eot = last_run[-1]
    assert ex["teacher_topk_ids"][eot, 0] == ex["ids"][eot] and ex["teacher_topk_logprobs"][eot, 0] == 0.0
    bad = Trace(**{**TRACE.to_json(), "teacher_topk_ids": topk_ids[:-2], "teacher_topk_logprobs": topk_lp[:-2]})
    with pytest.raises(UserError, match="top-k"):
        tokenize_trace(bad, smollm2_tokenizer, "chatml")


def test_chatml_tokens_must_be_added_and_are_reported(sentencepiece_style):
    tok = Tokenizer(BackendTokenizer.from_str(sentencepiece_style.backend.to_str()), bos_id=1, eos_id=2)
    with pytest.raises(UserError, match="ensure_template_tokens"):
        tokenize_trace(TRACE, tok, "chatml")
    before = tok.vocab_size
    assert ensure_template_tokens(tok, "chatml") == 2 and tok.vocab_size == before + 2
    assert ensure_template_tokens(tok, "chatml") == 0
    ex = tokenize_trace(TRACE, tok, "chatml")
    assert int(ex["ids"][0]) == tok.token_to_id("<|im_start|>")


def _llama_style_with_chatml(sentencepiece_style, predefined=()):
    """A copy of the LLaMA-style tokenizer (BOS added) that already defines `predefined`, then
    gets the ChatML tokens it lacks."""
    tok = Tokenizer(BackendTokenizer.from_str(sentencepiece_style.backend.to_str()), bos_id=1, eos_id=2, add_bos=True)
    tok.add_special_tokens(list(predefined))
    ensure_template_tokens(tok, "chatml")
    return tok


def test_tokens_the_tokenizer_defines_keep_their_ids_and_missing_ones_are_added_in_order(sentencepiece_style):
    base = sentencepiece_style.vocab_size
    # a tokenizer like the released Orca 2 one: [PAD] and <|im_end|> defined before the run
    tok = _llama_style_with_chatml(sentencepiece_style, predefined=("[PAD]", "<|im_end|>"))
    assert [tok.token_to_id(t) for t in ("[PAD]", "<|im_end|>", "<|im_start|>")] == [base, base + 1, base + 2]
    tok = _llama_style_with_chatml(sentencepiece_style)
    assert [tok.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>")] == [base, base + 1]


SHORT = Trace(id="t2", turns=[{"role": "user", "content": "  Hi there "}, {"role": "assistant", "content": "Hello. "}])


@pytest.mark.parametrize("template", ["chatml", "plain", "llama2"])
@pytest.mark.parametrize("tokenizer_kind", ["byte_level", "llama_style"])
def test_saved_chat_template_renders_what_training_rendered(smollm2_tokenizer, sentencepiece_style, template, tokenizer_kind):
    """The template a run saves with the model reproduces the training text for every trace,
    and its generation prompt is the training text up to the answer's first character."""
    import copy

    from orca_jax.data.chat import render, run_chat_template

    tok = copy.copy(smollm2_tokenizer) if tokenizer_kind == "byte_level" else _llama_style_with_chatml(sentencepiece_style)
    tok.chat_template = run_chat_template(template, tok)
    for trace in (TRACE, SHORT, erase_prompt(TRACE, "empty")):
        messages = ([{"role": "system", "content": trace.system}] if trace.system else []) + trace.turns
        training = render(trace, tok, template)
        assert tok.apply_chat_template(messages) == training.text
        prompt = tok.apply_chat_template(messages[:-1], add_generation_prompt=True)
        assert prompt == training.text[:training.content_spans[-1][0]]
    # evaluation sends Orca 1's empty system message explicitly; training left it out
    assert tok.apply_chat_template([{"role": "system", "content": ""}] + SHORT.turns) == render(SHORT, tok, template).text
