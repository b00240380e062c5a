"""Train-step tokens/s and MFU on one accelerator for the TinyLlama-1.1B shape, packed rows of
4 segments (segment ids honoured), AdamW, bf16 compute; optionally transformers + torch on the
same tokens. Needs jax, flax, optax, orbax-checkpoint (+ torch, transformers for --baseline).

    python benchmarks/train_step_gpu.py [--attention cudnn] [--remat none] [--logits_chunk 512] [--baseline]
    python benchmarks/train_step_gpu.py --tiny      # a CPU-sized smoke run of the same script
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import train_step_setup  # noqa: E402

H200_PEAK_BF16 = 989e12  # dense bf16 FLOP/s, the DESIGN.md anchor table's reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch (runs on a CPU)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--attention", default="cudnn", help="DecoderConfig.attention_impl")
    parser.add_argument("--remat", default="none", help="DecoderConfig.remat_policy")
    parser.add_argument("--logits_chunk", type=int, help="chunked cross-entropy: LossConfig.logits_chunk_size")
    parser.add_argument("--peak_tflops", type=float, default=H200_PEAK_BF16 / 1e12)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--baseline", action="store_true", help="also time transformers + torch (SDPA, causal rows)")
    parser.add_argument("--out", default="benchmarks/results/train_step_gpu.json")
    args = parser.parse_args()

    import jax

    from orca_jax.model.config import get_preset
    from orca_jax.train.monitor import train_flops_per_token

    if args.tiny:
        config = get_preset("tiny").replace(attention_impl="xla")
        args.batch, args.seq_len = 4, 128
    else:
        config = get_preset("tinyllama-1.1b").replace(dtype="bfloat16", attention_impl=args.attention,
                                                     remat_policy=args.remat)
    batch = train_step_setup.packed_batch(args.batch, args.seq_len, args.segments, config.vocab_size)
    ours, n_params, _ = train_step_setup.ours(config, batch, logits_chunk_size=args.logits_chunk)
    fns = {"ours": ours}
    if args.baseline:
        device = "cuda" if jax.devices()[0].platform == "gpu" else "cpu"
        fns["torch"] = train_step_setup.torch_baseline(config, batch, device=device, bf16=not args.tiny)
    seconds = common.interleaved(fns, repeats=args.repeats, warmup=2)
    tokens = args.batch * args.seq_len
    flops_per_token = train_flops_per_token(config, args.seq_len)
    result = {}
    for name, values in seconds.items():
        tps = tokens / common.median(values)
        result[name] = {"tokens_per_s": tps, "mfu": tps * flops_per_token / (args.peak_tflops * 1e12)}
    device_kind = jax.devices()[0].device_kind
    record = common.write_json(args.out, {
        "what": f"train step {n_params / 1e9:.2f}B params, batch {args.batch}x{args.seq_len}, {args.segments} "
                f"segments/row, attention {config.attention_impl}, remat {config.remat_policy}, {config.dtype}, "
                f"logits chunk {args.logits_chunk or 'none'}",
        "results": result, "peak_tflops": args.peak_tflops, "machine": common.machine_description(device_kind)})
    line = ", ".join(f"{n} {r['tokens_per_s']:,.0f} tok/s (MFU {100 * r['mfu']:.1f}%)" for n, r in result.items())
    print(f"train step: {line} on {record['machine']}")


if __name__ == "__main__":
    main()
