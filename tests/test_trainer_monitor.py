"""TensorBoard scalars the monitor writes, read back with TensorFlow's own event reader."""

import functools
import glob

import jax

import pytest

from orca_jax.model import decoder
from orca_jax.model.config import get_preset
from orca_jax.train.monitor import Monitor, train_flops_per_token


def read_scalars(log_dir):
    tf = pytest.importorskip("tensorflow")
    out = {}
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_scalars_every_log_step(tmp_path):
    monitor = Monitor(str(tmp_path), first_step=0, last_step=4, flops_per_token=1e6, log_every=2,
                      peak_flops_per_device=1e9, progress_bar=False)
    for step in range(1, 5):
        metrics = {"loss": 1.0 / step, "grad_norm": 0.5, "learning_rate": 1e-3 * step, "loss_weight": 10.0,
                   "finite": 1.0, "nonpadding_tokens": 48.0, "loss/ce": 1.0 / step}
        monitor.step(step, metrics, batch_tokens=64)
    monitor.close()
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["loss"]] == [2, 4]
    assert scalars["loss"][1][1] == pytest.approx(0.25)
    assert scalars["learning_rate"][0][1] == pytest.approx(2e-3)
    assert [v for _, v in scalars["packing_efficiency"]] == pytest.approx([0.75, 0.75])
    assert all(v > 0 for _, v in scalars["tokens_per_second"]) and "mfu" in scalars
    assert "loss/ce" in scalars and "finite" not in scalars


def test_flops_per_token_counts_matmuls_and_attention():
    config = get_preset("tinyllama-1.1b")
    abstract = jax.eval_shape(functools.partial(decoder.init_params, config), jax.random.key(0))
    sizes = {jax.tree_util.keystr(p): x.size for p, x in jax.tree_util.tree_leaves_with_path(abstract)}
    # every weight a token is multiplied by: all params but the embedding lookup (norm scales,
    # 0.01% of them, are elementwise and not counted by the formula)
    matmul_params = sum(n for k, n in sizes.items() if "embed_tokens" not in k and "norm" not in k)
    attention = 12 * config.num_layers * config.num_heads * config.head_dim * 2048
    assert train_flops_per_token(config, 2048) == 6 * matmul_params + attention
