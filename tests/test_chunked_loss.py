"""Chunked cross-entropy (LossConfig.logits_chunk_size): the loss and gradients of the unchunked
step, while the compiled step no longer holds [batch, length, vocab] fp32 logits."""

import os
import sys

import jax
import numpy as np
import pytest

import trainer_support as ts
from orca_jax.data.loader import PackedLoader
from orca_jax.errors import UserError
from orca_jax.model import decoder
from orca_jax.model.config import get_preset
from orca_jax.train import trainer
from orca_jax.train.summary import host_params

sys.path.insert(0, ts.REPO)  # the benchmarks package
from benchmarks.chunked_ce_memory import train_step_temp_bytes  # noqa: E402

SOURCES = 2


def packed_batch(topk: int | None):
    """4 packed rows of 32 (prompt tokens weight 0, padding) from two sources, with teacher top-k."""
    examples = [dict(ex, source=("flan", "gpt4")[i % SOURCES])
                for i, ex in enumerate(ts.progression_examples(40, seed=3, topk=topk))]
    loader = PackedLoader.from_examples(examples, seq_len=32, global_batch_size=4, seed=0, process_index=0,
                                        process_count=1)
    batch = next(iter(loader))
    assert (batch["segment_ids"].max(axis=1) > 1).all() and (batch["loss_weights"] == 0).any()
    return {k: v for k, v in batch.items() if k in trainer.BATCH_KEYS + trainer.TOPK_KEYS + trainer.SOURCE_KEYS}


def loss_and_grads(config, loss_cfg, params, batch):
    model = decoder.Decoder(config)

    def objective(p):
        sums = trainer.forward_loss_sums(model, loss_cfg, p, batch, num_sources=SOURCES)
        return sums["objective"], sums
    (_, sums), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(params)
    return jax.device_get(sums), host_params(grads)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("loss", [dict(z_loss=1e-3),
                                  dict(z_loss=1e-3, kd_source="offline", kd_kind="forward_kl", kd_alpha=0.3,
                                       kd_temperature=2.0, kd_missing_mass="tail")], ids=["ce", "topk_kd"])
def test_chunked_loss_and_gradients_equal_unchunked(tied, loss):
    config = get_preset("tiny").replace(vocab_size=ts.VOCAB, tie_word_embeddings=tied)
    params = decoder.init_params(config, jax.random.key(1))
    batch = packed_batch(topk=4 if "kd_source" in loss else None)
    want_sums, want_grads = loss_and_grads(config, trainer.LossConfig(**loss), params, batch)
    # 8 divides the length 32; 12 does not (the last chunk is padding with weight 0)
    for chunk in (8, 12):
        sums, grads = loss_and_grads(config, trainer.LossConfig(**loss, logits_chunk_size=chunk), params, batch)
        assert sums.keys() == want_sums.keys()
        for k in sums:
            np.testing.assert_allclose(sums[k], want_sums[k], rtol=1e-5, err_msg=f"{k}, chunk {chunk}")
        assert ts.max_relative_difference(grads, want_grads) <= 1e-5


def test_chunked_step_holds_no_full_logits():
    config = get_preset("tiny").replace(vocab_size=32768, num_layers=1)
    logits_bytes = 4 * 256 * config.vocab_size * 4
    full = train_step_temp_bytes(config, 4, 256, None)
    chunked = train_step_temp_bytes(config, 4, 256, 16)
    # Unchunked, the step keeps more than one [4, 256, 32768] fp32 array (logits and their
    # gradient). Chunked, not even half of one: without the recomputation in the backward pass
    # the chunks' saved intermediates would add up to more than a full one again.
    assert full > 1.5 * logits_bytes and chunked < 0.5 * logits_bytes, (full, chunked, logits_bytes)


@pytest.mark.parametrize("fields, expected", [
    (dict(logits_chunk_size=-8), "LossConfig.logits_chunk_size = -8: expected a positive number"),
    (dict(logits_chunk_size=256, kd_source="online"), "cannot be combined with kd_source = 'online'"),
])
def test_bad_chunk_settings_fail_at_configuration(fields, expected):
    with pytest.raises(UserError, match=expected):
        trainer.LossConfig(**fields)
