"""`orca-jax prepare --task NAME`: run a seqio Task/Mixture's preprocessing once and cache it."""

import os

from orca_jax.data.loader import DEFAULT_CACHE_ROOT, default_cache_root
from orca_jax.data.traces import ON_BAD_RECORD


def add_arguments(parser):
    parser.add_argument("--task", required=True, help="seqio Task or Mixture name (trace tasks: traces_<file name>)")
    parser.add_argument("--data_dir", default=None, help="trace directory (default: gin, else $ORCA_JAX_DATA_DIR)")
    parser.add_argument("--cache_dir", default=None, help=f"cache root (default: $ORCA_JAX_CACHE_DIR, else ./{DEFAULT_CACHE_ROOT})")
    parser.add_argument("--tokenizer", default=None, help="HF folder, tokenizer.json or GGUF (default: gin, else $ORCA_JAX_TOKENIZER)")
    parser.add_argument("--template", default=None, help="chat template: chatml, llama2, plain or tokenizer (default: gin, else chatml)")
    parser.add_argument("--on_bad_record", choices=ON_BAD_RECORD, default=None, help="raise at the first bad record, or skip and count")
    parser.add_argument("--max_length", type=int, default=None, help="drop (and count) examples longer than this many tokens")
    parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
    parser.add_argument("--gin", action="append", default=[], metavar="NAME=VALUE", help="gin binding (repeatable)")


def run(args) -> int:
    from orca_jax.data.prepare import prepare
    from orca_jax.train import gin_setup
    from tasks.traces import register_trace_tasks

    gin_setup.parse(args.gin_file, args.gin, require_files=False)
    overrides = {k: v for k, v in (("data_dir", args.data_dir), ("tokenizer_path", args.tokenizer), ("template", args.template),
                                   ("on_bad_record", args.on_bad_record)) if v is not None}
    register_trace_tasks(**overrides)
    cache_dir = args.cache_dir or default_cache_root()
    for task, meta in prepare(args.task, cache_dir, max_length=args.max_length).items():
        print(f"{task}: {meta['num_examples']} examples, {meta['num_tokens']} tokens ({meta['num_loss_tokens']} with loss), "
              f"skipped {meta['skipped']}")
        for reason, n in meta["skipped_per_reason"].items():
            print(f"  skipped {n}: {reason}")
        if meta["tokenizer"]["added_tokens"]:
            print(f"  added tokens {meta['tokenizer']['added_tokens']} for the {meta['template']} template: "
                  f"resize the model's embeddings to vocab_size {meta['tokenizer']['vocab_size']}")
    print(f"cache: {os.path.join(cache_dir, args.task)}")
    return 0

