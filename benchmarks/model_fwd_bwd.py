"""Forward+backward tokens/s of orca-jax's decoder vs transformers (torch eager), same config and batch.

Both compute mean next-token cross-entropy and all parameter gradients in fp32 on the same
weights (the HF model is saved and loaded with `load_hf_folder`). Rounds alternate between the two
so background load hits both alike; the median round counts. Prints one line, writes JSON.

    python benchmarks/model_fwd_bwd.py [--batch 8 --seq 256 --rounds 5 --steps 5]
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import transformers

from orca_jax.model import decoder, hf_convert

HF_CONFIG = dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "model_fwd_bwd.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**HF_CONFIG))  # default (SDPA) attention
    with tempfile.TemporaryDirectory() as folder:
        hf_model.save_pretrained(folder)
        config, params = hf_convert.load_hf_folder(folder)
    hf_model.train()

    tokens = np.random.RandomState(0).randint(0, HF_CONFIG["vocab_size"], (args.batch, args.seq))
    positions = np.broadcast_to(np.arange(args.seq), tokens.shape)
    segments = np.ones_like(tokens)

    @jax.jit
    def jax_step(params):
        def loss_fn(p):
            logits = decoder.apply(config, p, tokens, positions, segments)[:, :-1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
        return jax.value_and_grad(loss_fn)(params)

    torch_tokens = torch.tensor(tokens)

    def torch_step():
        hf_model.zero_grad(set_to_none=True)
        loss = hf_model(input_ids=torch_tokens, labels=torch_tokens).loss
        loss.backward()
        return loss

    jax_loss = float(jax.block_until_ready(jax_step(params))[0])  # compile
    torch_loss = float(torch_step())
    assert abs(jax_loss - torch_loss) < 1e-3, (jax_loss, torch_loss)  # same computation on both sides

    def timed(step):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return args.batch * args.seq * args.steps / (time.perf_counter() - start)

    ours, baseline = [], []
    for _ in range(args.rounds):
        ours.append(timed(lambda: jax.block_until_ready(jax_step(params))))
        baseline.append(timed(torch_step))
    result = {
        "what": "forward+backward tokens/s, fp32, LLaMA d256 L4 h8/kv4 ffn688 vocab4096",
        "batch": args.batch, "seq": args.seq,
        "baseline_transformers_torch_eager": statistics.median(baseline),
        "ours_jax": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(baseline),
        "rounds_ours": ours, "rounds_baseline": baseline,
        "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, jax {jax.__version__} "
                   f"({jax.default_backend()}), torch {torch.__version__}, {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"model fwd+bwd: ours {result['ours_jax']:.0f} tok/s, transformers {result['baseline_transformers_torch_eager']:.0f}"
          f" tok/s, ratio {result['ratio']:.2f}x ({result['machine']})")


if __name__ == "__main__":
    main()
