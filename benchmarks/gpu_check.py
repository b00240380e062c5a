"""One GPU, one script: packed attention correctness, then training tokens/s and MFU vs transformers.

    python benchmarks/gpu_check.py [--kernels cudnn,pallas_gpu] [--steps 10] [--out gpu_check.json]
    python benchmarks/gpu_check.py --tiny          # CPU smoke test of the same code path

Needs only jax, flax, optax, orbax-checkpoint, gin-config, torch and transformers: the project
modules imported here stay clear of TensorFlow and seqio (the JSON records that they did).

1. Packing check, per kernel: a 2-layer model of the benchmark's shape, bf16, one row of 4
   packed segments; each segment's logits must equal the same segment run alone with the same
   kernel. The error is also compared with the error of the same row run *without* segment ids
   (what a kernel that ignores them would produce), so a leak cannot hide under the tolerance.
2. Training throughput, per kernel: TinyLlama-1.1B shape, batch 8 x 2048, fp32 master weights,
   bf16 compute, AdamW (the project's train step: clip + Adam + decoupled weight decay), packed
   rows (4 segments, segment ids honoured) and unpacked rows (one sequence each). Same compiled
   step for both: only the data differ.
3. transformers LlamaForCausalLM of the same shape, torch eager SDPA, bf16 autocast, fused AdamW,
   unpacked rows (transformers' SDPA path has no packed-segment mask).

MFU = tokens/s * (6 * parameters + 6 * layers * seq_len * heads * head_dim) / peak: dense
matmuls forward + backward plus causal attention over the full row, the convention of the
anchor figures in DESIGN.md (so packed rows are credited the same FLOPs as unpacked ones).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine_description, write_json  # noqa: E402
from orca_jax import partitioning  # noqa: E402
from orca_jax.model import decoder  # noqa: E402
from orca_jax.model.config import DecoderConfig, get_preset  # noqa: E402
from orca_jax.train import trainer  # noqa: E402
from orca_jax.train.optimizer import adamw_direction  # noqa: E402

# bf16 dense peak TFLOP/s by device kind (substring match); others need --peak_tflops.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
SEGMENTS_PER_ROW = 4
# Packed-vs-alone error allowed, relative to the largest logit: bf16 rounding of a different
# tiling, far below the effect of attending across segments.
PACKING_RTOL = 2e-2


def segment_lengths(seq_len: int) -> list[int]:
    """4 unequal segments filling the row; multiples of seq_len/16 (of 128 at 2048, as splash needs)."""
    unit = seq_len // 16
    return [5 * unit, 3 * unit, 4 * unit, 4 * unit]


def packed_row_arrays(seq_len: int, rotate: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """segment_ids and positions [seq_len] of one row packed with SEGMENTS_PER_ROW segments."""
    lengths = np.roll(segment_lengths(seq_len), rotate)
    segment_ids = np.repeat(np.arange(1, len(lengths) + 1), lengths).astype(np.int32)
    positions = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    return segment_ids, positions


def make_batch(batch: int, seq_len: int, vocab: int, packed: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.RandomState(seed)
    tokens = rs.randint(0, vocab, (batch, seq_len + 1)).astype(np.int32)
    if packed:
        rows = [packed_row_arrays(seq_len, rotate=i) for i in range(batch)]
        segment_ids = np.stack([r[0] for r in rows])
        positions = np.stack([r[1] for r in rows])
    else:
        segment_ids = np.ones((batch, seq_len), np.int32)
        positions = np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy()
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": segment_ids,
            "positions": positions, "loss_weights": np.ones((batch, seq_len), np.float32)}


def packing_check(config: DecoderConfig, seq_len: int) -> dict:
    """Max |packed - alone| logits error of the configured kernel, relative to the largest logit,
    and the same for a row that ignores segment ids (the leak a broken kernel would show)."""
    params = decoder.init_params(config, jax.random.key(1))
    apply = jax.jit(functools.partial(decoder.apply, config))
    segment_ids, positions = packed_row_arrays(seq_len)
    tokens = np.random.RandomState(1).randint(0, config.vocab_size, (1, seq_len)).astype(np.int32)
    packed = np.asarray(apply(params, tokens, positions[None], segment_ids[None]), np.float32)[0]
    # Ignoring segment ids = one causal sequence whose positions still restart per segment.
    leaky = np.asarray(apply(params, tokens, positions[None], np.ones_like(segment_ids)[None]), np.float32)[0]
    error = leak = scale = 0.0
    for seg in range(1, SEGMENTS_PER_ROW + 1):
        where = np.flatnonzero(segment_ids == seg)
        alone = np.asarray(apply(params, tokens[:, where], positions[None, where],
                                 np.ones((1, len(where)), np.int32)), np.float32)[0]
        error = max(error, float(np.abs(packed[where] - alone).max()))
        leak = max(leak, float(np.abs(leaky[where] - alone).max()))
        scale = max(scale, float(np.abs(alone).max()))
    ok = error <= PACKING_RTOL * scale and error <= 0.1 * leak
    return {"max_abs_error": error, "max_abs_logit": scale, "leak_if_segments_ignored": leak, "ok": bool(ok)}


def param_count(config: DecoderConfig) -> int:
    shapes = jax.eval_shape(lambda key: decoder.init_params(config, key), jax.random.key(0))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes)))


def train_flops_per_token(config: DecoderConfig, seq_len: int) -> float:
    return 6.0 * param_count(config) + 6.0 * config.num_layers * seq_len * config.num_heads * config.head_dim


def jax_train_throughput(config: DecoderConfig, batch: int, seq_len: int, steps: int) -> dict:
    """tokens/s of the project's sharded train step (1 device), packed and unpacked rows."""
    mesh = partitioning.make_mesh((1, 1, 1), devices=jax.devices()[:1])
    rules = partitioning.logical_axis_rules()
    optimizer = adamw_direction(weight_decay=0.1)
    step_fn = trainer.make_train_step(config, optimizer, optax.constant_schedule(1e-4), trainer.LossConfig(),
                                      mesh=mesh, rules=rules)
    _, shardings = trainer.state_shardings(config, optimizer, mesh, rules)

    def init(key):
        params = decoder.init_params(config, key)
        return trainer.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))

    state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
    step = trainer.ShardedStep(step_fn, shardings, trainer.BATCH_KEYS, mesh, rules)
    results = {}
    for name, packed in (("packed", True), ("unpacked", False)):
        host = make_batch(batch, seq_len, config.vocab_size, packed)
        device_batch = partitioning.global_batch(host, mesh, rules)
        start = time.perf_counter()
        state, metrics = step(state, device_batch)  # compiles on the first call only (same shapes)
        loss = float(metrics["loss"])
        warmup_s = time.perf_counter() - start
        if not np.isfinite(loss):
            raise RuntimeError(f"{config.attention_impl} {name}: non-finite loss {loss}")
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = step(state, device_batch)
        jax.block_until_ready(metrics)
        seconds = time.perf_counter() - start
        results[name] = {"tokens_per_s": batch * seq_len * steps / seconds, "step_s": seconds / steps,
                         "first_step_s": warmup_s, "loss": float(metrics["loss"])}
    return results


def transformers_train_throughput(config: DecoderConfig, batch: int, seq_len: int, steps: int) -> dict:
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    hf_config = transformers.AutoConfig.for_model(**config.to_hf_config())
    model = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa",
                                                          dtype=torch.float32).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=device == "cuda")
    host = make_batch(batch, seq_len, config.vocab_size, packed=False)
    inputs = torch.as_tensor(host["inputs"], dtype=torch.long, device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(input_ids=inputs, labels=inputs).loss  # HF shifts the labels itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    loss = float(step())
    warmup_s = time.perf_counter() - start
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - start
    return {"tokens_per_s": batch * seq_len * steps / seconds, "step_s": seconds / steps, "first_step_s": warmup_s,
            "loss": float(loss), "torch": torch.__version__, "transformers": transformers.__version__,
            "device": device}


def peak_tflops(device_kind: str, override: float | None) -> float | None:
    if override:
        return override
    return next((peak for name, peak in PEAK_TFLOPS.items() if name in device_kind), None)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model, batch 2 x 128, xla kernel: a CPU smoke test")
    parser.add_argument("--kernels", help="comma-separated attention_impl values "
                                          "(default cudnn,pallas_gpu on GPU; xla with --tiny)")
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default 10; 2 with --tiny)")
    parser.add_argument("--remat", default="none", help="remat_policy for the JAX model")
    parser.add_argument("--peak_tflops", type=float, help="peak bf16 TFLOP/s of the card, if not H100/H200/A100")
    parser.add_argument("--skip_transformers", action="store_true")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    if args.tiny:
        shape, batch, seq_len = get_preset("tiny"), 2, 128
    else:
        shape, batch, seq_len = get_preset("tinyllama-1.1b"), 8, 2048
    kernels = (args.kernels or ("xla" if args.tiny else "cudnn,pallas_gpu")).split(",")
    steps = args.steps or (2 if args.tiny else 10)
    device = jax.devices()[0]
    accelerator = None if device.platform == "cpu" else device.device_kind
    peak = peak_tflops(device.device_kind, args.peak_tflops)
    base = shape.replace(dtype="bfloat16", remat_policy=args.remat, max_position_embeddings=max(seq_len, 2048))
    flops_per_token = train_flops_per_token(base, seq_len)

    def mfu(tokens_per_s: float) -> float | None:
        return tokens_per_s * flops_per_token / (peak * 1e12) if peak else None

    record = {"what": f"train step, {'tiny' if args.tiny else 'TinyLlama-1.1B'} shape, batch {batch} x {seq_len}, "
                      f"AdamW, bf16 compute, fp32 params",
              "device": device.device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
              "peak_tflops": peak, "flops_per_token": flops_per_token, "steps": steps, "remat": args.remat,
              "kernels": {}}
    for kernel in kernels:
        config = base.replace(attention_impl=kernel)
        check = packing_check(config.replace(num_layers=min(2, config.num_layers)), seq_len)
        entry = {"packing_check": check}
        print(f"{kernel}: packed vs alone max error {check['max_abs_error']:.3g} "
              f"(leak if segments ignored {check['leak_if_segments_ignored']:.3g}): {'ok' if check['ok'] else 'FAILED'}",
              flush=True)
        if check["ok"]:
            for name, result in jax_train_throughput(config, batch, seq_len, steps).items():
                result["mfu"] = mfu(result["tokens_per_s"])
                entry[name] = result
                print(f"{kernel} {name}: {result['tokens_per_s']:.0f} tokens/s, MFU {result['mfu'] or 0:.1%}", flush=True)
        record["kernels"][kernel] = entry
    if not args.skip_transformers:
        result = transformers_train_throughput(base, batch, seq_len, steps)
        result["mfu"] = mfu(result["tokens_per_s"])
        record["transformers"] = result
        print(f"transformers eager SDPA unpacked: {result['tokens_per_s']:.0f} tokens/s, MFU {result['mfu'] or 0:.1%}",
              flush=True)
    record["tensorflow_or_seqio_imported"] = sorted(m for m in ("tensorflow", "seqio") if m in sys.modules)
    record["machine"] = machine_description(accelerator)
    record["elapsed_s"] = time.perf_counter() - started
    write_json(args.out, record)
    print(f"wrote {args.out} ({record['elapsed_s']:.0f} s)")
    return record


if __name__ == "__main__":
    record = main()
    sys.exit(0 if all(k["packing_check"]["ok"] for k in record["kernels"].values()) else 1)
