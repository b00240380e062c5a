"""`orca-jax answer-prompts`: a model's answers to open-ended prompt sets, as `judge` candidates."""

from orca_jax.evaluation.prompt_sets import answer_prompts


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="HF folder, .gguf file or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--prompts", required=True, help="comma-separated prompt files (Vicuna-80, Self-Instruct 252, or id+prompt JSONL)")
    parser.add_argument("--out", required=True, help="answers JSONL (id, prompt, response, set) for `orca-jax judge`")
    parser.add_argument("--system", default="empty", help="system message: 'empty', 'cautious' or any text")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=1024)
    parser.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16")


def run(args):
    from orca_jax.data.system_messages import erased_system_message
    from orca_jax.evaluation.prompt_sets import read_prompt_set
    from orca_jax.model.loading import load_model

    files = [p for p in args.prompts.split(",") if p]
    for path in files:  # bad prompt files fail before the model loads
        read_prompt_set(path)
    model = load_model(args.model, dtype=args.dtype)
    answers = answer_prompts(model.config, model.params, model.tokenizer, files, args.out,
                             system=erased_system_message(args.system), batch_size=args.batch_size,
                             max_new_tokens=args.max_new_tokens)
    print(f"wrote {len(answers)} answers to {args.out}")
