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
    parser.add_argument("--harness", default=None, metavar="TASKS",
                        help="also (or, without --benchmarks, only) run these lm-evaluation-harness tasks, "
                             "e.g. mmlu,arc_challenge,hellaswag,truthfulqa_mc2 (needs the 'harness' extra)")
    parser.add_argument("--harness_include", default=None, metavar="DIR",
                        help="folder of extra lm-eval task YAMLs (e.g. local data: dataset_path: json)")
    parser.add_argument("--num_fewshot", type=int, default=None, help="lm-eval tasks: exemplars (default: the task's)")
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="lm-eval tasks: render prompts with the model's chat template (--system as its system turn)")


def run(args):
    if args.predictions:
        if args.model or args.harness:
            raise UserError("give either --predictions (re-score) or --model (generate), not both")
        from orca_jax.evaluation.runner import rescore

        summary = rescore(args.predictions, args.out)
        written = ("predictions.jsonl",)
    else:
        if not args.model:
            raise UserError("--model is required (or --predictions FILE to re-score)")
        if args.limit is not None and args.limit < 1:
            raise UserError(f"--limit must be positive, got {args.limit}")
        from orca_jax.evaluation.tables import write_summary
        from orca_jax.model.loading import load_model

        builtin = _builtin_examples(args) if args.benchmarks or not args.harness else None
        harness = _harness_tasks(args) if args.harness else None  # unknown tasks fail before the model loads
        model = load_model(args.model, dtype=args.dtype)
        summary = _evaluate_builtin(args, model, *builtin) if builtin else {}
        if harness:
            from orca_jax.data.system_messages import erased_system_message
            from orca_jax.evaluation.harness import run_tasks

            system = erased_system_message(args.system) if args.system else None  # 'empty', 'cautious' or text
            summary["lm_eval"] = run_tasks(model, args.model, *harness, limit=args.limit, num_fewshot=args.num_fewshot,
                                           batch_size=args.batch_size, apply_chat_template=args.apply_chat_template,
                                           system=system)
            write_summary(args.out, summary)
        written = ("predictions.jsonl",) if builtin else ()
    print(summary_markdown(summary), end="")
    print(f"wrote {', '.join(os.path.join(args.out, f) for f in written + ('summary.json', 'summary.md', 'summary.csv'))}")


def _builtin_examples(args) -> tuple[list, dict]:
    """The protocol's (or --benchmarks') examples and the provenance of their files; bad
    data fails here, before the model loads."""
    from orca_jax.evaluation import data_sources
    from orca_jax.evaluation.benchmarks import load_examples, parse_specs, task_file

    specs = args.benchmarks.split(",") if args.benchmarks else list(PROTOCOLS[args.protocol].benchmarks)
    specs = [s for s in specs if s.strip()]
    if args.data_dir:
        data_dir = args.data_dir
        provenance = data_sources.describe_local(data_dir, [task_file(b, t) for b, t in parse_specs(data_dir, specs)])
    else:
        benchmarks = list(dict.fromkeys(spec.strip().partition(":")[0] for spec in specs))
        data_dir, provenance = data_sources.fetched_benchmarks(benchmarks, args.data_cache, args.data_mirror)
    return load_examples(data_dir, specs, args.limit), provenance


def _evaluate_builtin(args, model, examples: list, provenance: dict) -> dict:
    from orca_jax.data.system_messages import erased_system_message
    from orca_jax.evaluation.runner import evaluate

    protocol = PROTOCOLS[args.protocol]
    system, variant = args.system or protocol.system, args.variant or protocol.variant
    return evaluate(model.config, model.params, model.tokenizer, examples, out_dir=args.out,
                    system=erased_system_message(system), variant=variant, batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens,
                    meta={"protocol": dict(protocol.describe(), system=system, variant=variant), "data": provenance})


def _harness_tasks(args) -> tuple[list[str], object]:
    """--harness's task names and the lm-eval TaskManager that knows them."""
    try:
        from orca_jax.evaluation.harness import task_manager
    except ImportError as e:
        raise UserError(f"--harness needs lm-evaluation-harness: pip install -e .[harness] ({e})") from None
    tasks = [t.strip() for t in args.harness.split(",") if t.strip()]
    return tasks, task_manager(tasks, args.harness_include)
