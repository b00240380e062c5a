"""A small byte-level BPE tokenizer trained on the synthetic world's texts.

Trained with the `tokenizers` library. Only runs of lowercase letters (English words)
are merged: every other character (digits, capitals, operators, `>`, newlines) is a
token of its own, so a row `CEADB`, a bit string or a chain `+5*8` is spelled one symbol
per token and a step can copy or change one symbol at a time, as the literature's
symbol-level models do; longer held-out instances use only tokens the student has seen. ChatML's special tokens are
part of the vocabulary, `<|im_end|>` ends a turn, and the Jinja chat template
renders exactly what the data layer's `chatml` template renders.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from orca_jax.data.chat import CHATML_TOKENS
from orca_jax.data.tokenizer import Tokenizer

PAD = "[PAD]"
# Like the data layer's chatml renderer, an empty system message leaves the system turn out.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' or message['content'] %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Tokenizer:
    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[^a-z ]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, *CHATML_TOKENS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    return Tokenizer(backend, eos_id=backend.token_to_id("<|im_end|>"), pad_id=backend.token_to_id(PAD),
                     chat_template=CHATML_TEMPLATE)
