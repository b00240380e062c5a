"""`orca-jax eval`: zero-shot BBH / AGIEval / GSM8K (and generic multiple choice) for a model,
or re-scoring of an existing predictions file with the same rules."""

import os

from orca_jax.errors import UserError
from orca_jax.evaluation.prompts import VARIANTS
from orca_jax.evaluation.tables import summary_markdown


def add_arguments(parser):
    parser.add_argument("--model", help="HF folder, .gguf file or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--benchmarks", default="bbh,agieval,gsm8k",
                        help="comma-separated: bbh, agieval, gsm8k, mc, or one task as bbh:navigate")
    parser.add_argument("--data_dir", help="folder with bbh/, agieval/, gsm8k/, mc/ in their official layouts")
    parser.add_argument("--out", required=True, help="output folder: predictions.jsonl, summary.{json,md,csv}")
    parser.add_argument("--predictions", help="re-score this predictions JSONL instead of running a model")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each task")
    parser.add_argument("--system", default="empty",
                        help="system message: 'empty' (default, Orca 1's message 1), 'cautious' (Orca 2's), or any text")
    parser.add_argument("--variant", choices=VARIANTS, default="zero_shot", help="prompt variant")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16 (default: the model's)")


def run(args):
    if args.predictions:
        if args.model:
            raise UserError("give either --predictions (re-score) or --model (generate), not both")
        from orca_jax.evaluation.runner import rescore

        summary = rescore(args.predictions, args.out)
    else:
        if not args.model or not args.data_dir:
            raise UserError("--model and --data_dir are required (or --predictions FILE to re-score)")
        if args.limit is not None and args.limit < 1:
            raise UserError(f"--limit must be positive, got {args.limit}")
        from orca_jax.data.system_messages import erased_system_message
        from orca_jax.evaluation.benchmarks import load_examples
        from orca_jax.evaluation.runner import evaluate
        from orca_jax.model.loading import load_model

        examples = load_examples(args.data_dir, args.benchmarks, args.limit)  # bad data fails before the model loads
        model = load_model(args.model, dtype=args.dtype)
        summary = evaluate(model.config, model.params, model.tokenizer, examples, out_dir=args.out,
                           system=erased_system_message(args.system), variant=args.variant, batch_size=args.batch_size,
                           max_new_tokens=args.max_new_tokens)
    print(summary_markdown(summary), end="")
    print(f"wrote {', '.join(os.path.join(args.out, f) for f in ('predictions.jsonl', 'summary.json', 'summary.md', 'summary.csv'))}")
