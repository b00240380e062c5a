"""`orca-jax eval`: zero-shot BBH / AGIEval / GSM8K (and generic multiple choice) for a model,
as a paper's protocol or the benchmarks' official one (`--protocol`), or re-scoring of an
existing predictions file with the same rules."""

import os

from orca_jax.errors import UserError
from orca_jax.evaluation.data_sources import add_data_arguments
from orca_jax.evaluation.prompts import VARIANTS
from orca_jax.evaluation.protocols import PROTOCOLS
from orca_jax.evaluation.tables import summary_markdown


def add_arguments(parser):
    parser.add_argument("--model", help="HF folder, .gguf file or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="official",
                        help="whose evaluation to follow: 'official' (each benchmark's own rules, default), 'orca1' or "
                             "'orca2' (the paper's subsets, system message and prompt; see README 'Evaluate')")
    parser.add_argument("--benchmarks", default=None,
                        help="comma-separated: bbh, agieval, gsm8k, mc, or one task as bbh:navigate "
                             "(default: the protocol's)")
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder: predictions.jsonl, summary.{json,md,csv}")
    parser.add_argument("--predictions", help="re-score this predictions JSONL instead of running a model")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each task")
    parser.add_argument("--system", default=None,
                        help="system message: 'empty' (Orca 1's message 1), 'cautious' (Orca 2's), or any text "
                             "(default: the protocol's, empty for all three)")
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="prompt variant (default: the protocol's)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16 (default: the model's)")


def run(args):
    protocol = PROTOCOLS[args.protocol]
    if args.predictions:
        if args.model:
            raise UserError("give either --predictions (re-score) or --model (generate), not both")
        from orca_jax.evaluation.runner import rescore

        summary = rescore(args.predictions, args.out)
    else:
        if not args.model:
            raise UserError("--model is required (or --predictions FILE to re-score)")
        if args.limit is not None and args.limit < 1:
            raise UserError(f"--limit must be positive, got {args.limit}")
        from orca_jax.data.system_messages import erased_system_message
        from orca_jax.evaluation import data_sources
        from orca_jax.evaluation.benchmarks import load_examples, parse_specs, task_file
        from orca_jax.evaluation.runner import evaluate
        from orca_jax.model.loading import load_model

        specs = args.benchmarks.split(",") if args.benchmarks else list(protocol.benchmarks)
        specs = [s for s in specs if s.strip()]
        if args.data_dir:
            data_dir = args.data_dir
            provenance = data_sources.describe_local(data_dir, [task_file(b, t) for b, t in parse_specs(data_dir, specs)])
        else:
            benchmarks = list(dict.fromkeys(spec.strip().partition(":")[0] for spec in specs))
            data_dir, provenance = data_sources.fetched_benchmarks(benchmarks, args.data_cache, args.data_mirror)
        examples = load_examples(data_dir, specs, args.limit)  # bad data fails before the model loads
        system, variant = args.system or protocol.system, args.variant or protocol.variant
        model = load_model(args.model, dtype=args.dtype)
        summary = evaluate(model.config, model.params, model.tokenizer, examples, out_dir=args.out,
                           system=erased_system_message(system), variant=variant, batch_size=args.batch_size,
                           max_new_tokens=args.max_new_tokens,
                           meta={"protocol": dict(protocol.describe(), system=system, variant=variant),
                                 "data": provenance})
    print(summary_markdown(summary), end="")
    print(f"wrote {', '.join(os.path.join(args.out, f) for f in ('predictions.jsonl', 'summary.json', 'summary.md', 'summary.csv'))}")
