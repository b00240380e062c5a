"""`orca-jax score`: per-token log-probabilities of a text under a model, as JSON.

Output: `token_ids`, `tokens` (each id decoded on its own), and `logprobs` aligned with them:
`logprobs[i]` is log p(token i | tokens 0..i-1), and `logprobs[0]` is null because the first
token has nothing before it to be predicted from. `total_logprob` sums the others. With
`--assistant`, the text is a user turn and the reply is scored as the assistant's turn after
it; `assistant` gives where the reply's tokens start (the template's end of turn included) and
their summed log-probability, log p(reply | prompt).
"""

import json

from orca_jax.errors import UserError

FIRST_TOKEN_NOTE = "logprobs[i] = log p(token i | tokens before it); token 0 has no context, so its logprob is null"


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="HF folder, .gguf file, or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--text", required=True, help="the text to score (with --chat: the user's message)")
    parser.add_argument("--chat", action="store_true",
                        help="render the text as one user turn of the model's chat template")
    parser.add_argument("--assistant", default=None, metavar="REPLY",
                        help="score REPLY as the assistant's turn answering --text's user turn (implies --chat); "
                             "the output's `assistant` field sums the reply's log-probs")
    parser.add_argument("--system", default=None,
                        help="system message for --chat / --assistant (default: whatever the template does "
                             "without one, e.g. its default system prompt)")


def run(args):
    from orca_jax.model.loading import load_model
    from orca_jax.model.scoring import token_logprobs

    if args.system is not None and not (args.chat or args.assistant is not None):
        raise UserError("--system needs --chat or --assistant (plain text has no system turn)")
    model = load_model(args.model)
    tokenizer = model.tokenizer
    reply_start = None
    if args.chat or args.assistant is not None:
        messages = ([{"role": "system", "content": args.system}] if args.system is not None else []) + [
            {"role": "user", "content": args.text}]
        if args.assistant is None:
            ids = tokenizer.encode_chat(messages)
        else:
            prompt = tokenizer.encode_chat(messages, add_generation_prompt=True)
            ids = tokenizer.encode_chat(messages + [{"role": "assistant", "content": args.assistant}])
            if ids[:len(prompt)] != prompt:
                raise UserError("the chat template renders the conversation with the reply differently from the "
                                "prompt alone, so the reply's tokens cannot be separated; score it with --text")
            reply_start = len(prompt)
    else:
        ids = tokenizer.encode(args.text)
    logprobs = [None] + [float(x) for x in token_logprobs(model.config, model.params, ids)]
    result = {
        "token_ids": ids,
        "tokens": [tokenizer.decode([i], skip_special_tokens=False) for i in ids],
        "logprobs": logprobs[:len(ids)],
        "note": FIRST_TOKEN_NOTE,
        "total_logprob": sum(logprobs[1:]),
    }
    if reply_start is not None:
        result["assistant"] = {"first_token": reply_start, "num_tokens": len(ids) - reply_start,
                               "logprob": sum(logprobs[reply_start:])}
    print(json.dumps(result, ensure_ascii=False))
