"""`orca-jax inspect --task NAME`: show packed rows of a prepared task with loss-weighted tokens
marked and, per packed example, its task and the system message it carries (teacher's or erased)."""

import os
import sys


def add_arguments(parser):
    parser.add_argument("--task", required=True, help="prepared task or mixture name")
    parser.add_argument("--cache_dir", default=None, help="cache root (default: $ORCA_JAX_CACHE_DIR, else ./orca_jax_cache)")
    parser.add_argument("--n", type=int, default=3, help="rows to print")
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour weighted tokens (auto: when stdout is a terminal); otherwise they are ⟦marked⟧")


def run(args) -> int:
    import numpy as np

    from orca_jax.data.cache import read_mixture
    from orca_jax.data.inspect_rows import format_row, format_stats, length_histogram, system_label
    from orca_jax.data.loader import default_cache_root, make_loader
    from orca_jax.data.tokenizer import load_tokenizer

    cache_root = args.cache_dir or default_cache_root()
    is_mixture = read_mixture(os.path.join(cache_root, args.task)) is not None
    # One pass over a task (a mixture samples forever), so small tasks show each example once.
    loader = make_loader(args.task, cache_root=cache_root, seq_len=args.seq_len, global_batch_size=args.n, seed=args.seed,
                         num_epochs=None if is_mixture else 1, process_index=0, process_count=1)
    stores = [p.store for p in loader.pieces]
    tokenizer = load_tokenizer(stores[0].metadata["tokenizer"]["path"])
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    batch = next(loader)
    for r in range(args.n):
        print(f"═══ row {r} ═══")
        labels = [system_label(stores[s], i) for s, i in loader.last_batch_examples[r]]
        print(format_row(batch, r, lambda ids: tokenizer.decode(ids, skip_special_tokens=False), color, labels))
    print("\nexample lengths (tokens):")
    print(length_histogram(np.concatenate([s.lengths for s in stores])))
    print("\npacking: " + format_stats(loader.stats))
    return 0
