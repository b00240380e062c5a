"""Loader throughput from a prepared cache (NumPy only): tokens/s on one core.

    python benchmarks/loader.py [--gsm8k PATH] [--seq_len 2048] [--batch 8] [--steps 200]

Caches GSM8K-train traces (SmolLM2 ChatML) in a temp dir, then times PackedLoader batches
(shuffle, exact-fill packing, materialisation). Goal: >= 1M tokens/s per core.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.gsm8k_traces import DEFAULT_GSM8K, gsm8k_examples  # noqa: E402
from orca_jax.data.cache import write_cache  # noqa: E402
from orca_jax.data.loader import PackedLoader  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gsm8k", default=DEFAULT_GSM8K)
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_cache(tmp, gsm8k_examples(args.gsm8k), {"task": "gsm8k_train"})
        loader = PackedLoader(tmp, seq_len=args.seq_len, global_batch_size=args.batch, seed=0, process_index=0, process_count=1)
        start = time.process_time()
        wall = time.perf_counter()
        for _ in range(args.steps):
            next(loader)
        cpu_s, wall_s = time.process_time() - start, time.perf_counter() - wall
        slots = args.steps * args.batch * args.seq_len
        print(f"{args.steps} batches of {args.batch}x{args.seq_len}: {slots / cpu_s / 1e6:.2f}M tokens/s per core (CPU time), "
              f"{slots / wall_s / 1e6:.2f}M tokens/s wall; non-padding {100 * loader.stats['non_padding']:.2f}%, "
              f"{loader.stats['examples_per_row']:.2f} examples/row")


if __name__ == "__main__":
    main()
