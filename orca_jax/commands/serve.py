"""`orca-jax serve`: an OpenAI-compatible HTTP server for a local model (teacher, eval target or judge)."""

import asyncio
import os
import sys

from orca_jax import serve
from orca_jax.model.loading import load_model
from orca_jax.teacher.local_teacher import LocalTeacher


def add_arguments(p):
    p.add_argument("--model", required=True, help="HF folder, .gguf file or orca-jax checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; "
                   "0.0.0.0 exposes the server to the network, with no authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; the URL is printed)")
    p.add_argument("--max_batch", type=int, default=8, help="requests generated together in one batch")
    p.add_argument("--model_name", default=None, help="name reported by /v1/models (default: the path's base name)")
    p.add_argument("--dtype", default=None, help="compute dtype, e.g. bfloat16 (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling")


def run(args):
    teacher = LocalTeacher(load_model(args.model, dtype=args.dtype), max_batch=args.max_batch, seed=args.seed)
    name = args.model_name or os.path.basename(os.path.normpath(args.model))

    def ready(url):
        print(f"serving {name} at {url}", flush=True)

    try:
        asyncio.run(serve.serve(teacher, name, args.host, args.port, on_ready=ready))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
