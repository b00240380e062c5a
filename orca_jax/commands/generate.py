"""`orca-jax generate`: one chat reply from a model (HF folder, .gguf file or orca-jax model folder)."""

import json


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="HF folder, .gguf file, or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--prompt", required=True, help="the user message")
    parser.add_argument("--system", default=None, help="system message (default: none; the template may add one)")
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (with temperature > 0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16 (parameters stay fp32)")
    parser.add_argument("--json", action="store_true", help='print {"token_ids": [...], "text": "..."}')


def run(args):
    import jax

    from orca_jax import decoding
    from orca_jax.model.loading import load_model

    model = load_model(args.model, dtype=args.dtype)
    tokenizer = model.tokenizer
    messages = [{"role": "system", "content": args.system}] if args.system is not None else []
    messages.append({"role": "user", "content": args.prompt})
    prompt_ids = tokenizer.encode_chat(messages, add_generation_prompt=True)
    ids = decoding.generate(
        model.config, model.params, [prompt_ids], args.max_new_tokens, temperature=args.temperature,
        top_p=args.top_p, eos_ids=tokenizer.stop_ids, rng=jax.random.key(args.seed))[0]
    text = tokenizer.decode(ids)
    print(json.dumps({"token_ids": ids, "text": text}, ensure_ascii=False) if args.json else text)
