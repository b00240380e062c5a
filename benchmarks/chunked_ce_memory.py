"""Compiled train-step memory with and without chunked cross-entropy (LossConfig.logits_chunk_size):
XLA's temp bytes (activations and other buffers the step allocates besides its arguments and
outputs), from `compiled.memory_analysis()`. Nothing runs: the step is only compiled.

Default shape: TinyLlama-1.1B's widths and vocabulary at 2 layers (so the logits' share shows),
batch 8 x 2048, fp32, AdamW.

    python benchmarks/chunked_ce_memory.py [--layers 2] [--chunk 256] [--dtype bfloat16]
                                           [--out benchmarks/results/chunked_ce_memory.json]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine_description, write_json  # noqa: E402


def train_step_temp_bytes(config, batch: int, seq_len: int, chunk_size: int | None) -> int:
    """Temp bytes of the project's compiled train step on this backend (one device)."""
    import jax
    import jax.numpy as jnp

    from orca_jax import partitioning
    from orca_jax.train import trainer
    from orca_jax.train.optimizer import adamw_direction, learning_rate_schedule

    mesh = partitioning.make_mesh((1, 1, 1), jax.devices()[:1])
    rules = partitioning.logical_axis_rules()
    optimizer = adamw_direction(weight_decay=0.1)
    abstract, shardings = trainer.state_shardings(config, optimizer, mesh, rules)
    step = trainer.ShardedStep(
        trainer.make_train_step(config, optimizer, learning_rate_schedule(100), trainer.LossConfig(
            z_loss=1e-4, logits_chunk_size=chunk_size), mesh=mesh, rules=rules),
        shardings, trainer.BATCH_KEYS, mesh, rules)
    rows = {k: jax.ShapeDtypeStruct((batch, seq_len), jnp.float32 if k == "loss_weights" else jnp.int32)
            for k in trainer.BATCH_KEYS}
    return step.lower(abstract, rows).compile().memory_analysis().temp_size_in_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--dtype", default="float32", help="compute dtype (params stay fp32; logits are fp32 always)")
    parser.add_argument("--out", default="benchmarks/results/chunked_ce_memory.json")
    args = parser.parse_args()

    import jax

    from orca_jax.model.config import get_preset

    config = get_preset("tinyllama-1.1b").replace(num_layers=args.layers, max_position_embeddings=args.seq_len,
                                                 dtype=args.dtype)
    full = train_step_temp_bytes(config, args.batch, args.seq_len, None)
    chunked = train_step_temp_bytes(config, args.batch, args.seq_len, args.chunk)
    logits_bytes = args.batch * args.seq_len * config.vocab_size * 4
    record = write_json(args.out, {
        "what": f"compiled train step temp bytes, TinyLlama-1.1B widths at {args.layers} layers, batch "
                f"{args.batch} x {args.seq_len}, {args.dtype} compute, AdamW, z-loss; chunk {args.chunk}",
        "baseline_temp_bytes": full, "ours_temp_bytes": chunked, "ratio": chunked / full,
        "saved_bytes": full - chunked, "full_fp32_logits_bytes": logits_bytes, "backend": jax.default_backend(), "jax": jax.__version__,
        "machine": machine_description()})
    print(f"chunked CE memory: train step temp {full / 2**30:.2f} GiB unchunked, {chunked / 2**30:.2f} GiB with "
          f"chunk {args.chunk} (ratio {record['ratio']:.2f}; saved {(full - chunked) / logits_bytes:.1f}x the "
          f"{logits_bytes / 2**30:.2f} GiB of full fp32 logits)")


if __name__ == "__main__":
    main()
