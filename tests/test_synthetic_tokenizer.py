"""The synthetic world's tokenizer: trained with `tokenizers`, lossless, digit by digit,
and its chat template renders exactly what the data layer's chatml template renders."""

from orca_jax.data.chat import render, tokenize_trace
from orca_jax.synthetic.teachers import strong_teacher
from orca_jax.synthetic.tokenizer import train_tokenizer
from orca_jax.synthetic.trace_generation import synthetic_traces


def test_tokenizer_round_trips_and_template_matches_the_data_layer():
    traces = synthetic_traces(strong_teacher(), "orca2", "test", 40, seed=0)
    tokenizer = train_tokenizer([t.system for t in traces] + [x["content"] for t in traces for x in t.turns], 512)
    for t in traces:
        ids = tokenizer.encode(t.response)
        assert tokenizer.decode(ids) == t.response
        # Every digit is its own token, so longer held-out numbers use known tokens.
        assert all(not (any(c.isdigit() for c in tok) and len(tok.lstrip("Ġ")) > 1)
                   for tok in map(tokenizer.backend.id_to_token, ids))
        messages = [{"role": "system", "content": t.system}, *t.turns]
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True)
        full = render(t, tokenizer, "chatml").text
        assert full.startswith(prompt) and full[len(prompt):] == t.response + "<|im_end|>\n"
        example = tokenize_trace(t, tokenizer, "chatml")
        weighted = [i for i, w in zip(example["ids"], example["loss_weights"]) if w]
        assert weighted[-1] == tokenizer.eos_id
        assert tokenizer.decode(weighted, skip_special_tokens=True) == t.response
