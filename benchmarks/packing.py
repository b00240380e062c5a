"""Packing efficiency and throughput on GSM8K-train traces: ours vs seqio.utils.trim_and_pack_dataset.

    python benchmarks/packing.py [--gsm8k PATH] [--seq_len 2048 512]

Goal: >= 99% non-padding at 2048. Prints one markdown row per packer and length.
"""

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.gsm8k_traces import DEFAULT_GSM8K, gsm8k_examples  # noqa: E402
from orca_jax.data.packing import pack_dataset, packing_stats  # noqa: E402


def seqio_pack(examples, seq_len):
    """seqio's greedy packer on the same token ids; returns (rows, non-padding tokens, seconds)."""
    import seqio
    import tensorflow as tf

    ds = tf.data.Dataset.from_generator(lambda: ({"ids": ex["ids"]} for ex in examples),
                                        output_signature={"ids": tf.TensorSpec([None], tf.int32)})
    start = time.perf_counter()
    packed = seqio.utils.trim_and_pack_dataset(ds, {"ids": seq_len}, use_custom_ops=False)
    rows = tokens = 0
    for row in packed.as_numpy_iterator():
        rows += 1
        tokens += int((row["ids_segment_ids"] > 0).sum())
    return rows, tokens, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gsm8k", default=DEFAULT_GSM8K)
    parser.add_argument("--seq_len", type=int, nargs="+", default=[2048, 512])
    args = parser.parse_args()
    examples = gsm8k_examples(args.gsm8k)
    lengths = np.array([len(e["ids"]) for e in examples])
    total = int(lengths.sum())
    print(f"{len(examples)} examples, {lengths.min()}-{lengths.max()} tokens, mean {lengths.mean():.1f}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print("| what | packer | rows | non-padding | examples/row | tokens/s | machine |")
    for seq_len in args.seq_len:
        fits = [e for e in examples if len(e["ids"]) <= seq_len]
        n_tokens = sum(len(e["ids"]) for e in fits)
        start = time.perf_counter()
        batch = pack_dataset(fits, seq_len)
        ours_s = time.perf_counter() - start
        stats = packing_stats(batch)
        print(f"| GSM8K train @ {seq_len} | orca-jax exact-fill (buffer 8192) | {stats['rows']} | {100 * stats['non_padding']:.2f}% | "
              f"{stats['examples_per_row']:.2f} | {n_tokens / ours_s / 1e6:.2f}M | {machine} |")
        rows, tokens, seqio_s = seqio_pack(fits, seq_len)
        print(f"| GSM8K train @ {seq_len} | seqio trim_and_pack_dataset | {rows} | {100 * tokens / (rows * seq_len):.2f}% | "
              f"{len(fits) / rows:.2f} | {tokens / seqio_s / 1e6:.2f}M | {machine} |")
        assert tokens == n_tokens == total or seq_len < lengths.max()


if __name__ == "__main__":
    main()
