"""`orca-jax serve`: an OpenAI-compatible HTTP server for a local model (teacher, eval target or judge)."""

import asyncio
import os
import sys

from orca_jax import serve
from orca_jax.continuous_batching import ContinuousBatcher
from orca_jax.errors import UserError
from orca_jax.model.loading import load_model


def add_arguments(p):
    p.add_argument("--model", required=True, help="HF folder, .gguf file or orca-jax checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; "
                   "0.0.0.0 exposes the server to the network, with no authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; the URL is printed)")
    p.add_argument("--max_batch", type=int, default=8,
                   help="requests decoded together (slots); one arriving while others decode joins at the next step")
    p.add_argument("--max_queue", type=int, default=64,
                   help="requests that may wait for a slot; beyond it the server answers 429 with Retry-After")
    p.add_argument("--cache_length", type=int, default=2048,
                   help="KV-cache tokens per slot: a request's prompt (rounded up to 32) + max_tokens must fit "
                        "(memory: max_batch x cache_length tokens of keys and values)")
    p.add_argument("--model_name", default=None, help="name reported by /v1/models (default: the path's base name)")
    p.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16 (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling")


def run(args):
    for name in ("max_batch", "max_queue", "cache_length"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name}: expected a positive number, got {getattr(args, name)}")
    batcher = ContinuousBatcher(load_model(args.model, dtype=args.dtype), max_batch=args.max_batch,
                                max_queue=args.max_queue, cache_length=args.cache_length, seed=args.seed)
    name = args.model_name or os.path.basename(os.path.normpath(args.model))

    def ready(url):
        print(f"serving {name} at {url}", flush=True)

    try:
        asyncio.run(serve.serve(batcher, name, args.host, args.port, on_ready=ready))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
