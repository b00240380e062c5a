"""What a person watching a run sees: TensorBoard scalars, a tqdm bar, a FLOP-based MFU estimate."""

from __future__ import annotations

import math
import os
import time

import gin
import jax
from tqdm import tqdm

from orca_jax.model.config import DecoderConfig
from orca_jax.train.trainer import SOURCE_LOSS_PREFIX

# Dense bf16 peak per chip, for the MFU estimate when gin does not give one.
PEAK_FLOPS = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "tpu v4": 275e12, "tpu v5p": 459e12,
              "tpu v5 lite": 197e12, "tpu v5e": 197e12, "tpu v6": 918e12}


def train_flops_per_token(config: DecoderConfig, seq_len: int) -> float:
    """6 N for the matmuls (N without the embedding lookup) plus 12 L d T for attention
    scores and values (PaLM, appendix B)."""
    d, h = config.hidden_size, config.num_heads * config.head_dim
    kv = config.num_kv_heads * config.head_dim
    per_layer = d * h * 2 + d * kv * 2 + 3 * d * config.intermediate_size
    head = d * config.vocab_size
    return 6.0 * (config.num_layers * per_layer + head) + 12.0 * config.num_layers * h * seq_len


def device_peak_flops() -> float | None:
    kind = jax.devices()[0].device_kind.lower()
    return next((v for k, v in PEAK_FLOPS.items() if k in kind), None)


@gin.configurable
class Monitor:
    """Logs metrics every `log_every` steps to TensorBoard (process 0) and a progress bar."""

    def __init__(self, log_dir: str, *, first_step: int, last_step: int, flops_per_token: float,
                 log_every: int = 10, peak_flops_per_device: float | None = None, progress_bar: bool = True,
                 description: str = "train"):
        self.enabled = jax.process_index() == 0
        self.log_every = log_every
        self.flops_per_token = flops_per_token
        peak = peak_flops_per_device or device_peak_flops()
        self.peak_total = peak * jax.device_count() if peak else None
        self.writer = None
        self.bar = None
        if self.enabled:
            from tensorboardX import SummaryWriter
            os.makedirs(log_dir, exist_ok=True)
            self.writer = SummaryWriter(log_dir)
            if progress_bar:
                self.bar = tqdm(total=last_step, initial=first_step, desc=description, dynamic_ncols=True)
        self._t0 = time.perf_counter()
        self._tokens = 0
        self._slots = 0
        self._nonpad = 0

    def step(self, step: int, metrics: dict[str, float], batch_tokens: int) -> None:
        self._tokens += metrics["nonpadding_tokens"]
        self._slots += batch_tokens
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        if step % self.log_every:
            return
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        # a source absent from this step's batch has no loss (NaN): nothing to plot
        scalars = {k: v for k, v in metrics.items() if k not in ("finite", "nonpadding_tokens")
                   and not (k.startswith(SOURCE_LOSS_PREFIX) and math.isnan(v))}
        scalars["tokens_per_second"] = self._slots / elapsed
        scalars["packing_efficiency"] = self._tokens / max(self._slots, 1)
        if self.peak_total:
            scalars["mfu"] = self._slots * self.flops_per_token / elapsed / self.peak_total
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['learning_rate']:.2e}")
        self._t0, self._tokens, self._slots = time.perf_counter(), 0, 0

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.enabled:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
