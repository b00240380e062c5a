"""Train steps to time: this project's sharded jit step, and transformers + torch on the same
config and tokens. Shared by train_step_cpu.py and train_step_gpu.py.

Both sides: the same LLaMA-shaped model and AdamW; ours reads packed rows (segment ids and
restarting positions honoured), torch gets the same tokens as plain causal rows (transformers'
SDPA path has no packed-segment mask), which only favours the baseline.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


class Contender(NamedTuple):
    run: Callable[[], None]  # one train step, blocking
    n_params: int
    temp_bytes: int  # the compiled step's temporary buffers (XLA memory_analysis)


def packed_batch(batch: int, seq_len: int, segments: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of `segments` equal-length examples each, fully packed (no padding), loss on all tokens."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, vocab, size=(batch, seq_len), dtype=np.int32)
    seg_len = seq_len // segments
    segment_ids = np.minimum(np.arange(seq_len) // seg_len, segments - 1).astype(np.int32) + 1
    positions = (np.arange(seq_len) - (segment_ids - 1) * seg_len).astype(np.int32)
    targets = np.roll(inputs, -1, axis=1)
    weights = np.ones((batch, seq_len), np.float32)
    last = np.r_[segment_ids[1:] != segment_ids[:-1], True]  # an example's last token predicts nothing
    weights[:, last] = 0.0
    return {"inputs": inputs, "targets": targets, "segment_ids": np.broadcast_to(segment_ids, inputs.shape).copy(),
            "positions": np.broadcast_to(positions, inputs.shape).copy(), "loss_weights": weights}


def ours(config, batch: dict[str, np.ndarray], mesh_shape=(-1, 1, 1), logits_chunk_size: int | None = None):
    """This project's train step, compiled once, as a Contender.
    `logits_chunk_size`: chunked cross-entropy (LossConfig.logits_chunk_size)."""
    import jax
    import numpy as np

    from orca_jax import partitioning
    from orca_jax.model import decoder
    from orca_jax.train import trainer
    from orca_jax.train.optimizer import adamw_direction, learning_rate_schedule

    mesh = partitioning.make_mesh(mesh_shape)
    rules = partitioning.logical_axis_rules()
    optimizer = adamw_direction(weight_decay=0.1)
    _, shardings = trainer.state_shardings(config, optimizer, mesh, rules)
    params = jax.jit(decoder.init_params, static_argnums=0, out_shardings=shardings.params)(config, jax.random.key(0))
    state = trainer.TrainState(step=jax.device_put(np.int32(0), shardings.step), params=params,
                               opt_state=jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params))
    step = trainer.ShardedStep(
        trainer.make_train_step(config, optimizer, learning_rate_schedule(10**6, peak_lr=1e-5),
                                trainer.LossConfig(logits_chunk_size=logits_chunk_size),
                                mesh=mesh, rules=rules),
        shardings, trainer.BATCH_KEYS, mesh, rules)
    device_batch = partitioning.global_batch(batch, mesh, rules)
    compiled = step.lower(state, device_batch).compile()
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], device_batch, None)
        jax.block_until_ready(metrics["loss"])
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    return Contender(run, n_params, compiled.memory_analysis().temp_size_in_bytes)


def torch_baseline(config, batch: dict[str, np.ndarray], device: str = "cpu", bf16: bool = False,
                   compile: bool = False):
    """transformers LlamaForCausalLM + torch AdamW on the same tokens (causal rows)."""
    import torch
    import transformers

    hf = config.to_hf_config()
    hf_config = transformers.AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    hf_config._attn_implementation = "sdpa"
    model = transformers.AutoModelForCausalLM.from_config(hf_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1, betas=(0.9, 0.95),
                                  fused=device != "cpu")
    inputs = torch.as_tensor(batch["inputs"], dtype=torch.long, device=device)
    labels = inputs.clone()
    forward = torch.compile(model) if compile else model

    def run():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(input_ids=inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device != "cpu":
            torch.cuda.synchronize()
        else:
            loss.item()
    return run
