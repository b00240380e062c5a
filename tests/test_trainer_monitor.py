"""TensorBoard scalars the monitor writes, read back with TensorFlow's own event reader."""

import functools

import jax
import pytest

from orca_jax.model import decoder
from orca_jax.model.config import get_preset
from orca_jax.train.monitor import Monitor, train_flops_per_token
from trainer_support import read_scalars


def test_scalars_every_log_step(tmp_path):
    monitor = Monitor(str(tmp_path), first_step=0, last_step=4, flops_per_token=1e6, log_every=2,
                      peak_flops_per_device=1e9, progress_bar=False)
    for step in range(1, 5):
        metrics = {"loss": 1.0 / step, "grad_norm": 0.5, "learning_rate": 1e-3 * step, "loss_weight": 10.0,
                   "finite": 1.0, "nonpadding_tokens": 48.0, "loss/ce": 1.0 / step,
                   # per-source losses; a source absent from the step's batch reports NaN
                   "loss/ce/flan": 2.0 / step, "loss/ce/gpt4": 3.0 if step == 2 else float("nan")}
        monitor.step(step, metrics, batch_tokens=64)
    monitor.close()
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["loss"]] == [2, 4]
    assert scalars["loss"][1][1] == pytest.approx(0.25)
    assert scalars["learning_rate"][0][1] == pytest.approx(2e-3)
    assert [v for _, v in scalars["packing_efficiency"]] == pytest.approx([0.75, 0.75])
    assert all(v > 0 for _, v in scalars["tokens_per_second"]) and "mfu" in scalars
    assert "loss/ce" in scalars and "finite" not in scalars
    assert scalars["loss/ce/flan"] == [(2, 1.0), (4, 0.5)] and scalars["loss/ce/gpt4"] == [(2, 3.0)]


def test_training_run_logs_loss_per_source(tmp_path):
    import gin
    import numpy as np

    import trainer_support as ts
    from orca_jax.data.loader import PackedLoader
    from orca_jax.train import curriculum

    def two_sources(name, **kwargs):
        examples = ts.progression_examples(200, seed=0)
        return PackedLoader.from_examples([dict(ex, source=("flan", "gpt4")[i % 2]) for i, ex in enumerate(examples)],
                                          **kwargs)

    ts.parse_tiny_gin(tmp_path)
    try:
        curriculum.train(model_dir=str(tmp_path / "run"), loader_fn=two_sources)
    finally:
        gin.clear_config()  # parsing locked it; later tests register configurables
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    assert [s for s, _ in scalars["loss/ce/flan"]] == [s for s, _ in scalars["loss"]] == list(range(1, 7))
    # the batch CE is the weight-averaged mean of the two sources' CE, so it lies between them
    for (_, a), (_, b), (_, ce) in zip(scalars["loss/ce/flan"], scalars["loss/ce/gpt4"], scalars["loss/ce"]):
        assert min(a, b) - 1e-5 <= ce <= max(a, b) + 1e-5 and np.isfinite([a, b]).all()


def test_flops_per_token_counts_matmuls_and_attention():
    config = get_preset("tinyllama-1.1b")
    abstract = jax.eval_shape(functools.partial(decoder.init_params, config), jax.random.key(0))
    sizes = {jax.tree_util.keystr(p): x.size for p, x in jax.tree_util.tree_leaves_with_path(abstract)}
    # every weight a token is multiplied by: all params but the embedding lookup (norm scales,
    # 0.01% of them, are elementwise and not counted by the formula)
    matmul_params = sum(n for k, n in sizes.items() if "embed_tokens" not in k and "norm" not in k)
    attention = 12 * config.num_layers * config.num_heads * config.head_dim * 2048
    assert train_flops_per_token(config, 2048) == 6 * matmul_params + attention
