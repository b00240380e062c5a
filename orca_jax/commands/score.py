"""`orca-jax score`: per-token log-probabilities of a text under a model, as JSON."""

import json


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="HF folder, .gguf file, or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--text", required=True)
    parser.add_argument("--chat", action="store_true", help="wrap the text as one user turn of the chat template")


def run(args):
    from orca_jax.model.loading import load_model
    from orca_jax.model.scoring import token_logprobs

    model = load_model(args.model)
    tokenizer = model.tokenizer
    if args.chat:
        ids = tokenizer.encode_chat([{"role": "user", "content": args.text}])
    else:
        ids = tokenizer.encode(args.text)
    logprobs = token_logprobs(model.config, model.params, ids)
    print(json.dumps({"token_ids": ids, "logprobs": [float(x) for x in logprobs]}))
