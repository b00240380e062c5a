"""`orca-jax generate-traces`: ask a teacher (OpenAI-compatible URL or a local model) for explanation traces."""

import json

from orca_jax.data.traces import read_traces
from orca_jax.teacher import jobs, recipes
from orca_jax.teacher.client import SamplingParams


def add_arguments(p):
    p.add_argument("--prompts", required=True, help="prompt file (FLAN submix JSONL, or any trace format; "
                   "a trailing assistant turn is dropped and asked again)")
    p.add_argument("--prompts_format", default=None, help="format of --prompts (default: detected)")
    p.add_argument("--teacher", required=True,
                   help="OpenAI-compatible base URL (e.g. https://api.openai.com/v1), or a local model path "
                        "(HF folder, .gguf, orbax checkpoint) to generate in-process with top-k capture")
    p.add_argument("--model", default=None, help="model name sent to the API and recorded as the trace's teacher "
                   "(default for a local teacher: the path's base name)")
    p.add_argument("--system-messages", "--system_messages", dest="system_messages", required=True,
                   help="orca1 (per FLAN sub-collection), orca2 (strategy per task category, see --strategies), "
                        "or a JSON file with a list of system messages (one drawn per prompt)")
    p.add_argument("--strategies", default=None, help="orca2: JSON file mapping task or category (or '*') to a strategy")
    p.add_argument("--sample", default=None, help="Orca 1 stratified sample first, e.g. cot=150000,niv2=440000,t0=2500000,flan2021=2000000")
    p.add_argument("--subset", type=int, default=None, help="ask only a random subset of this size (the strong-teacher pass)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling, subset and system-message choice")
    p.add_argument("--limit", type=int, default=None, help="ask only the first N requests")
    p.add_argument("--out", required=True, help="output traces (JSONL); rejected answers go to OUT.rejected.jsonl")
    p.add_argument("--cache", default=None, help="answer cache (SQLite; default: OUT without extension + .cache.sqlite)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--requests_per_minute", "--requests-per-minute", type=float, default=None,
                   help="request-rate limit (e.g. 300 for ChatGPT, 18 for GPT-4)")
    p.add_argument("--max_tokens", "--max-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top_p", "--top-p", type=float, default=0.95)
    p.add_argument("--api_key_env", default="OPENAI_API_KEY", help="environment variable holding the API key "
                   "(the key is only sent in the Authorization header, never written anywhere)")
    p.add_argument("--max_retries", type=int, default=8)
    p.add_argument("--backoff_base", type=float, default=1.0,
                   help="seconds: retry n waits up to base * 2**n (at most 60 s; at least the server's Retry-After)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request attempt")
    p.add_argument("--topk", type=int, default=0, help="local teacher: store the top-k log-probs per response token")
    p.add_argument("--max_batch", type=int, default=32, help="local teacher: prompts generated together")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")


def run(args):
    prompts = list(read_traces(args.prompts, format=args.prompts_format, require_response=False))
    requests = recipes.plan_requests(prompts, system_messages=args.system_messages, seed=args.seed,
                                     strategies_path=args.strategies, sample=args.sample, subset=args.subset,
                                     limit=args.limit)
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)
    summary = jobs.generate_traces(
        requests, teacher=args.teacher, model=args.model, sampling=sampling, out_path=args.out,
        cache_path=args.cache, progress=not args.no_progress, concurrency=args.concurrency,
        requests_per_minute=args.requests_per_minute, api_key_env=args.api_key_env,
        max_retries=args.max_retries, backoff_base_s=args.backoff_base, timeout_s=args.timeout, topk=args.topk, max_batch=args.max_batch)
    print(json.dumps(vars(summary)))
    if summary.unfinished:
        print(f"{summary.unfinished} requests did not finish (teacher unavailable); "
              "run the same command again to ask only those")
        return 1
    return 0
