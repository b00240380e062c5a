"""A tiny random decoder with a small byte-level BPE tokenizer and a ChatML template, and a
small BBH-layout data dir, for evaluation tests."""

import json
import os

import jax
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from orca_jax.data.tokenizer import Tokenizer
from orca_jax.model.config import get_preset
from orca_jax.model.decoder import init_params

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["So the answer is (A). Let's think step by step about the options Yes and No.",
          "Sort the following words alphabetically: List: apple banana cherry",
          "If you follow these instructions, do you return to the starting point? Take 1 step."] * 20


def tiny_tokenizer() -> Tokenizer:
    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    return Tokenizer(backend, bos_id=None, eos_id=backend.token_to_id("<|im_end|>"), chat_template=CHATML)


def tiny_model(seed: int = 0):
    config = get_preset("tiny")
    return config, init_params(config, jax.random.key(seed)), tiny_tokenizer()


def bbh_dir(root) -> str:
    """`root` with bbh/navigate.json (3 examples) and bbh/word_sorting.json (2), in BBH's layout."""
    tasks = {
        "navigate": [("Take 1 step. Take 2 steps back. Options:\n- Yes\n- No", "No"),
                     ("Always face forward. Take 3 steps left, then 3 steps right. Options:\n- Yes\n- No", "Yes"),
                     ("Take 1 step.", "No")],
        "word_sorting": [("Sort the following words alphabetically: List: cherry apple", "apple cherry"),
                         ("Sort the following words alphabetically: List: pear fig banana kiwi plum lime", "banana fig kiwi lime pear plum")],
    }
    os.makedirs(os.path.join(root, "bbh"))
    for task, rows in tasks.items():
        with open(os.path.join(root, "bbh", f"{task}.json"), "w") as f:
            json.dump({"examples": [{"input": i, "target": t} for i, t in rows]}, f)
    return str(root)
