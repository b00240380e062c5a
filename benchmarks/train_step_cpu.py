"""Train-step tokens/s on this CPU: this project's jit step vs transformers + torch (eager),
same config and tokens, AdamW on both, timed call by call in alternation.

    python benchmarks/train_step_cpu.py [--repeats 10] [--bf16] [--out benchmarks/results/train_step_cpu.json]

--bf16: bf16 compute on both sides (ours: DecoderConfig.dtype; torch: CPU autocast), fp32 weights.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import train_step_setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="bf16 compute on both sides")
    parser.add_argument("--out", default="benchmarks/results/train_step_cpu.json")
    args = parser.parse_args()

    from orca_jax.model.config import DecoderConfig
    config = DecoderConfig(vocab_size=2048, hidden_size=256, intermediate_size=688, num_layers=4, num_heads=8,
                           num_kv_heads=4, dtype="bfloat16" if args.bf16 else "float32")
    batch = train_step_setup.packed_batch(args.batch, args.seq_len, args.segments, config.vocab_size)
    ours, n_params, _ = train_step_setup.ours(config, batch)
    baseline = train_step_setup.torch_baseline(config, batch, bf16=args.bf16)
    seconds = common.interleaved({"ours": ours, "torch": baseline}, repeats=args.repeats, warmup=2)
    tokens = args.batch * args.seq_len
    ours_tps = tokens / common.median(seconds["ours"])
    torch_tps = tokens / common.median(seconds["torch"])
    record = common.write_json(args.out, {
        "what": f"train step (fwd+bwd+AdamW), {n_params / 1e6:.1f}M params, batch {args.batch}x{args.seq_len}, "
                f"{args.segments} segments/row, {config.dtype} compute",
        "baseline_tokens_per_s": torch_tps, "ours_tokens_per_s": ours_tps, "ratio": ours_tps / torch_tps,
        "machine": common.machine_description()})
    print(f"train step CPU: transformers+torch {torch_tps:,.0f} tok/s, ours {ours_tps:,.0f} tok/s, "
          f"ratio {record['ratio']:.2f} ({record['machine']})")


if __name__ == "__main__":
    main()
