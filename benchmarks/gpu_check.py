"""One GPU, one script: packed attention correctness, then training tokens/s and MFU vs transformers.

    python benchmarks/gpu_check.py [--kernels cudnn,pallas_gpu] [--steps 10] [--logits_chunk 512] [--torch_compile]
                                   [--out benchmarks/results/gpu_check.json]
    python benchmarks/gpu_check.py --tiny          # CPU smoke test of the same code path

Needs only jax, flax, optax, orbax-checkpoint, gin-config, tqdm, torch and transformers: the
project modules it imports stay clear of TensorFlow and seqio (the JSON records that they did).
Budget: under 8 minutes on an H100/H200; a kernel that would start after --budget_s is skipped
(and said so in the JSON).

1. Packing check, per kernel: a 2-layer model of the benchmark's shape, bf16, one row of 4
   packed segments; each segment's logits must equal the same segment run alone with the same
   kernel. The error is also compared with that of the row run *without* segment ids (what a
   kernel that ignores them would produce), so a leak cannot hide under the tolerance.
2. Training, per kernel that passed: TinyLlama-1.1B shape, batch 8 x 2048, fp32 master weights,
   bf16 compute, the project's train step with AdamW; packed rows (4 segments, segment ids
   honoured), the same with chunked cross-entropy (--logits_chunk positions at a time; 0: not
   run) and unpacked rows (one sequence each), timed in alternation; each with its compiled
   step's temp bytes (XLA memory_analysis).
3. transformers LlamaForCausalLM of the same shape on the same card (run before step 2's
   training, which keeps most of the memory): SDPA, bf16 autocast, fused
   AdamW, unpacked rows (its SDPA path has no packed-segment mask); --torch_compile adds a
   torch.compile run.
Training setup and MFU formula: benchmarks/train_step_setup.py, orca_jax.train.monitor.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import train_step_setup  # noqa: E402
from benchmarks.common import interleaved, machine_description, median, write_json  # noqa: E402
from orca_jax.model import decoder  # noqa: E402
from orca_jax.model.config import DecoderConfig, get_preset  # noqa: E402
from orca_jax.train.monitor import device_peak_flops, train_flops_per_token  # noqa: E402

SEGMENTS_PER_ROW = 4
# Packed-vs-alone error allowed, relative to the largest logit: bf16 rounding of a different
# tiling, far below the effect of attending across segments.
PACKING_RTOL = 2e-2


def packing_check(config: DecoderConfig, seq_len: int) -> dict:
    """Max |packed - alone| logits error of the configured kernel, relative to the largest logit,
    and the same for a row that ignores segment ids (the leak a broken kernel would show)."""
    # Parameters do not depend on the kernel; xla also takes init's 1-token dummy input (splash does not).
    params = decoder.init_params(config.replace(attention_impl="xla"), jax.random.key(1))
    apply = jax.jit(functools.partial(decoder.apply, config))
    row = train_step_setup.packed_batch(1, seq_len, SEGMENTS_PER_ROW, config.vocab_size, seed=1)
    tokens, positions, segment_ids = row["inputs"], row["positions"], row["segment_ids"]
    packed = np.asarray(apply(params, tokens, positions, segment_ids), np.float32)[0]
    # Ignoring segment ids = one causal sequence whose positions still restart per segment.
    leaky = np.asarray(apply(params, tokens, positions, np.ones_like(segment_ids)), np.float32)[0]
    error = leak = scale = 0.0
    for seg in range(1, SEGMENTS_PER_ROW + 1):
        where = np.flatnonzero(segment_ids[0] == seg)
        alone = np.asarray(apply(params, tokens[:, where], positions[:, where], np.ones((1, len(where)), np.int32)),
                           np.float32)[0]
        error = max(error, float(np.abs(packed[where] - alone).max()))
        leak = max(leak, float(np.abs(leaky[where] - alone).max()))
        scale = max(scale, float(np.abs(alone).max()))
    ok = error <= PACKING_RTOL * scale and error <= 0.1 * leak
    return {"max_abs_error": error, "max_abs_logit": scale, "leak_if_segments_ignored": leak, "ok": bool(ok)}


def mfu_text(result: dict) -> str:
    return f", MFU {result['mfu']:.1%}" if result["mfu"] is not None else ""


def summary_line(record: dict) -> str:
    """The fastest kernel's packed rows against transformers, in one line."""
    packed = {k: e["packed"] for k, e in record["kernels"].items() if "packed" in e}
    failed = [k for k, e in record["kernels"].items() if not e["packing_check"]["ok"]]
    parts = [f"packing check failed: {','.join(failed)}"] if failed else []
    if packed:
        kernel = max(packed, key=lambda k: packed[k]["tokens_per_s"])
        best = packed[kernel]
        parts.append(f"packed {kernel}: {best['tokens_per_s']:,.0f} tokens/s{mfu_text(best)}")
        chunked = record["kernels"][kernel].get("packed_chunked_ce")
        if chunked:
            parts.append(f"with chunked CE {chunked['tokens_per_s']:,.0f} tokens/s{mfu_text(chunked)}")
        if "transformers_eager" in record:
            ratio = best["tokens_per_s"] / record["transformers_eager"]["tokens_per_s"]
            parts.append(f"{ratio:.2f}x transformers eager (unpacked)")
    return f"gpu_check {record['device']}: " + "; ".join(parts or ["nothing measured"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model, batch 2 x 128, xla kernel: a CPU smoke test")
    parser.add_argument("--kernels", help="comma-separated attention_impl values "
                                          "(default cudnn,pallas_gpu on GPU; xla with --tiny)")
    parser.add_argument("--steps", type=int, help="timed steps per contender (default 10; 2 with --tiny)")
    parser.add_argument("--remat", default="none", help="remat_policy of the JAX model")
    parser.add_argument("--logits_chunk", type=int, help="LossConfig.logits_chunk_size of the packed_chunked_ce "
                                                         "run (default 512; 32 with --tiny; 0: no such run)")
    parser.add_argument("--peak_tflops", type=float, help="peak bf16 TFLOP/s, if the card is not known to monitor.py")
    parser.add_argument("--skip_transformers", action="store_true")
    parser.add_argument("--torch_compile", action="store_true", help="also time transformers under torch.compile")
    parser.add_argument("--budget_s", type=float, default=300.0, help="start no kernel's training run after this")
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    # Grow JAX's GPU memory on demand (read when JAX first touches the device, just below), so
    # torch has room for its baseline.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    if args.tiny:
        shape, batch, seq_len = get_preset("tiny"), 2, 128
    else:
        shape, batch, seq_len = get_preset("tinyllama-1.1b"), 8, 2048
    kernels = (args.kernels or ("xla" if args.tiny else "cudnn,pallas_gpu")).split(",")
    steps = args.steps or (2 if args.tiny else 10)
    logits_chunk = (32 if args.tiny else 512) if args.logits_chunk is None else args.logits_chunk
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else device_peak_flops()
    base = shape.replace(dtype="bfloat16", remat_policy=args.remat, max_position_embeddings=max(seq_len, 2048))
    flops_per_token = train_flops_per_token(base, seq_len)
    packed = train_step_setup.packed_batch(batch, seq_len, SEGMENTS_PER_ROW, base.vocab_size)
    unpacked = train_step_setup.packed_batch(batch, seq_len, 1, base.vocab_size)

    def result(seconds: list[float]) -> dict:
        tokens_per_s = batch * seq_len / median(seconds)
        return {"tokens_per_s": tokens_per_s, "step_s": median(seconds),
                "mfu": tokens_per_s * flops_per_token / peak if peak else None}

    record = {"what": f"train step, {'tiny' if args.tiny else 'TinyLlama-1.1B'} shape, batch {batch} x {seq_len}, "
                      f"AdamW, bf16 compute, fp32 params; MFU by orca_jax.train.monitor.train_flops_per_token",
              "device": device.device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
              "peak_flops": peak, "flops_per_token": flops_per_token, "steps": steps, "remat": args.remat,
              "logits_chunk": logits_chunk, "kernels": {}}
    configs = {kernel: base.replace(attention_impl=kernel) for kernel in kernels}
    for kernel, config in configs.items():
        check = packing_check(config.replace(num_layers=min(2, config.num_layers)), seq_len)
        record["kernels"][kernel] = {"packing_check": check}
        print(f"{kernel}: packed vs alone max error {check['max_abs_error']:.3g} (leak if segments ignored "
              f"{check['leak_if_segments_ignored']:.3g}): {'ok' if check['ok'] else 'FAILED'}", flush=True)

    if not args.skip_transformers:
        # Before JAX's big runs: torch then hands its cached memory back, while JAX's allocator
        # keeps what it once held.
        import torch
        import transformers

        record["transformers_versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
        torch_device = "cuda" if on_gpu else "cpu"
        fns = {"eager": train_step_setup.torch_baseline(base, unpacked, device=torch_device, bf16=on_gpu)}
        if args.torch_compile:
            fns["compile"] = train_step_setup.torch_baseline(base, unpacked, device=torch_device, bf16=on_gpu,
                                                             compile=True)
        for name, seconds in interleaved(fns, repeats=steps, warmup=2).items():
            entry = record[f"transformers_{name}"] = result(seconds)
            print(f"transformers {name} SDPA unpacked: {entry['tokens_per_s']:,.0f} tokens/s{mfu_text(entry)}", flush=True)
        del fns
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()

    for kernel, config in configs.items():
        entry = record["kernels"][kernel]
        if not entry["packing_check"]["ok"]:
            continue
        if time.perf_counter() - started > args.budget_s:
            entry["skipped"] = f"over the {args.budget_s:.0f} s budget"
            continue
        runs = {"packed": (packed, None), "unpacked": (unpacked, None)}
        if logits_chunk:
            runs["packed_chunked_ce"] = (packed, logits_chunk)
        contenders = {name: train_step_setup.ours(config, rows, logits_chunk_size=chunk)
                      for name, (rows, chunk) in runs.items()}
        fns = {name: contender.run for name, contender in contenders.items()}
        for name, seconds in interleaved(fns, repeats=steps, warmup=2).items():
            entry[name] = {**result(seconds), "temp_bytes": contenders[name].temp_bytes}
            print(f"{kernel} {name}: {entry[name]['tokens_per_s']:,.0f} tokens/s{mfu_text(entry[name])}", flush=True)
        del fns, contenders  # frees the train states before the next kernel
        gc.collect()
    record["tensorflow_or_seqio_imported"] = sorted(m for m in ("tensorflow", "seqio") if m in sys.modules)
    record["machine"] = machine_description(device.device_kind if on_gpu else None)
    record["elapsed_s"] = time.perf_counter() - started
    write_json(args.out, record)
    print(summary_line(record) + f"; {args.out}, {record['elapsed_s']:.0f} s")
    return record


if __name__ == "__main__":
    record = main()
    sys.exit(0 if all(k["packing_check"]["ok"] for k in record["kernels"].values()) else 1)
