"""`orca-jax prepare --task NAME`: run a seqio Task/Mixture's preprocessing once and cache it.

`--decontaminate bbh,agieval,gsm8k` checks every trace read against those benchmarks' test
items as `orca-jax decontaminate` does (13-gram overlap) and prints the same per-benchmark
report; with `--drop_contaminated` the contaminated traces are left out of the cache (counted
among the skipped records)."""

import os

from orca_jax.data.loader import DEFAULT_CACHE_ROOT, default_cache_root
from orca_jax.data.traces import ON_BAD_RECORD
from orca_jax.errors import UserError
from orca_jax.train import gin_setup

EXAMPLES_SHOWN = 5  # contaminated items listed per benchmark, as decontaminate's default


def add_arguments(parser):
    parser.add_argument("--task", required=True, help="seqio Task or Mixture name (trace tasks: traces_<file name>)")
    parser.add_argument("--data_dir", default=None, help="trace directory (default: gin, else $ORCA_JAX_DATA_DIR)")
    parser.add_argument("--cache_dir", default=None, help=f"cache root (default: $ORCA_JAX_CACHE_DIR, else ./{DEFAULT_CACHE_ROOT})")
    parser.add_argument("--tokenizer", default=None, help="HF folder, tokenizer.json or GGUF (default: gin, else $ORCA_JAX_TOKENIZER)")
    parser.add_argument("--template", default=None, help="chat template: chatml, llama2, plain or tokenizer (default: gin, else chatml)")
    parser.add_argument("--on_bad_record", choices=ON_BAD_RECORD, default=None, help="raise at the first bad record, or skip and count")
    parser.add_argument("--max_length", type=int, default=None, help="drop (and count) examples longer than this many tokens")
    parser.add_argument("--decontaminate", default=None, metavar="BENCHMARKS",
                        help="check the traces against these benchmarks' test items, comma-separated as "
                             "decontaminate's --benchmarks (bbh, agieval, gsm8k, mc, bbh:navigate)")
    parser.add_argument("--benchmark_data_dir", default=None,
                        help="benchmark files in their official layouts for --decontaminate "
                             "(default: the official files, fetched once as `orca-jax eval` does)")
    parser.add_argument("--drop_contaminated", action="store_true",
                        help="leave the traces --decontaminate finds out of the cache")
    gin_setup.add_arguments(parser)


def run(args) -> int:
    from orca_jax.commands.decontaminate import benchmark_scan, print_benchmarks
    from orca_jax.data.prepare import prepare
    from orca_jax.evaluation.decontamination import NGRAM
    from tasks.traces import register_trace_tasks

    if not args.decontaminate and (args.drop_contaminated or args.benchmark_data_dir):
        raise UserError("--drop_contaminated and --benchmark_data_dir go with --decontaminate BENCHMARKS")
    gin_setup.parse_flags(args, require_files=False)
    overrides = {k: v for k, v in (("data_dir", args.data_dir), ("tokenizer_path", args.tokenizer), ("template", args.template),
                                   ("on_bad_record", args.on_bad_record)) if v is not None}
    register_trace_tasks(**overrides)
    cache_dir = args.cache_dir or default_cache_root()
    scan = benchmark_scan(args.decontaminate, args.benchmark_data_dir)[0] if args.decontaminate else None
    screen = _contamination_screen(scan, NGRAM, args.drop_contaminated) if scan else None
    for task, meta in prepare(args.task, cache_dir, max_length=args.max_length, screen=screen).items():
        print(f"{task}: {meta['num_examples']} examples, {meta['num_tokens']} tokens ({meta['num_loss_tokens']} with loss), "
              f"skipped {meta['skipped']}")
        for reason, n in meta["skipped_per_reason"].items():
            print(f"  skipped {n}: {reason}")
        if meta["tokenizer"]["added_tokens"]:
            print(f"  added tokens {meta['tokenizer']['added_tokens']} for the {meta['template']} template: "
                  f"resize the model's embeddings to vocab_size {meta['tokenizer']['vocab_size']}")
    if scan:
        print_benchmarks(scan.report(EXAMPLES_SHOWN), NGRAM)
    print(f"cache: {os.path.join(cache_dir, args.task)}")
    return 0


def _contamination_screen(scan, ngram: int, drop: bool):
    """Checks each trace (the scan keeps its hits for the report); drops it only with `drop`."""
    reason = f"shares a {ngram}-gram with a benchmark test item (--drop_contaminated)"

    def screen(path, trace):
        return reason if scan.check(path, trace) and drop else None

    return screen

