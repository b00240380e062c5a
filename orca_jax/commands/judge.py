"""`orca-jax judge`: GPT-4-as-judge of candidate answers against reference answers."""

import os

from orca_jax.evaluation.judge import judge_table, run_judge


def add_arguments(parser):
    parser.add_argument("--candidates", required=True, help="JSONL of answers to judge: id, prompt, response[, set]")
    parser.add_argument("--references", required=True, help="JSONL of reference answers (e.g. ChatGPT's), same ids")
    parser.add_argument("--judge", required=True, help="URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1")
    parser.add_argument("--model", default="gpt-4", help="judge model name")
    parser.add_argument("--out", default=None, help="output folder (default: <candidates>_judge/); holds the resumable judgments.jsonl")
    parser.add_argument("--api_key_env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max_tokens", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests_per_minute", type=float, default=None)


def run(args):
    out = args.out or os.path.splitext(args.candidates)[0] + "_judge"
    summary = run_judge(args.candidates, args.references, args.judge, out, model=args.model,
                        temperature=args.temperature, max_tokens=args.max_tokens, concurrency=args.concurrency,
                        requests_per_minute=args.requests_per_minute, api_key_env=args.api_key_env)
    print(judge_table(summary), end="")
    print(f"wrote {os.path.join(out, 'judge_summary.json')}")
