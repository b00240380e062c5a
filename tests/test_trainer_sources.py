"""Per-source cross-entropy in the train step against a NumPy reference from the model's logits."""

import jax
import numpy as np
import pytest

import trainer_support as ts
from orca_jax import partitioning
from orca_jax.data.loader import PackedLoader
from orca_jax.model import decoder
from orca_jax.model.config import get_preset
from orca_jax.train import trainer
from orca_jax.train.optimizer import adamw_direction, learning_rate_schedule

SOURCES = ["flan", "chatgpt", "gpt4"]


def _batch():
    examples = [dict(ex, source=SOURCES[i % 3]) for i, ex in enumerate(ts.progression_examples(60, seed=3))]
    loader = PackedLoader.from_examples(examples, seq_len=32, global_batch_size=8, seed=0,
                                        process_index=0, process_count=1)
    assert loader.source_names == SOURCES
    return next(loader)


def _reference(batch, params, config, names):
    """{name: weighted mean NLL of that source's tokens} in float64 from the model's logits."""
    logits = np.asarray(decoder.Decoder(config).apply({"params": params}, batch["inputs"], batch["positions"],
                                                      batch["segment_ids"]), np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    w = batch["loss_weights"].astype(np.float64)
    out = {}
    for i, name in enumerate(names):
        mask = w * (batch["source_ids"] == i)
        out[name] = (nll * mask).sum() / mask.sum() if mask.sum() else np.nan
    return out, (nll * w).sum() / w.sum()


@pytest.mark.parametrize("num_microbatches", [1, 2])
def test_per_source_loss_matches_numpy(num_microbatches):
    config = get_preset("tiny").replace(vocab_size=ts.VOCAB)
    mesh = partitioning.make_mesh((1, 1, 1), jax.devices()[:1])
    rules = partitioning.logical_axis_rules()
    optimizer = adamw_direction()
    _, shardings = trainer.state_shardings(config, optimizer, mesh, rules)
    host_params = ts.initial_host_params()
    params = jax.device_put(host_params, shardings.params)
    state = trainer.TrainState(step=jax.device_put(np.int32(0), shardings.step), params=params,
                               opt_state=jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params))
    # a fourth source the batch lacks: its loss is NaN (the monitor leaves it out)
    names = SOURCES + ["absent"]
    keys = trainer.BATCH_KEYS + trainer.SOURCE_KEYS
    step = trainer.ShardedStep(
        trainer.make_train_step(config, optimizer, learning_rate_schedule(10, peak_lr=1e-4), trainer.LossConfig(),
                                mesh=mesh, rules=rules, num_microbatches=num_microbatches, source_names=names),
        shardings, keys, mesh, rules)
    batch = _batch()
    assert len(np.unique(batch["source_ids"][batch["loss_weights"] > 0])) == 3
    device_batch = next(trainer.device_batches(iter([batch]), mesh, rules, keys))
    _, metrics = step(state, device_batch)
    metrics = trainer.to_host_scalars(metrics)

    expected, total = _reference(batch, host_params, config, names)
    for name in SOURCES:
        np.testing.assert_allclose(metrics[trainer.SOURCE_LOSS_PREFIX + name], expected[name], rtol=1e-5)
    assert np.isnan(metrics[trainer.SOURCE_LOSS_PREFIX + "absent"])
    np.testing.assert_allclose(metrics["loss"], total, rtol=1e-5)
    # the sources differ, so a mix-up of ids would show
    assert np.ptp([expected[n] for n in SOURCES]) > 1e-3
