"""The decoder as a t5x DecoderOnlyModel: on one of orca-jax's packed batches, t5x's loss_fn on
the adapted decoder equals orca-jax's trainer loss (same parameters, same loss tokens)."""

import numpy as np
import pytest

pytest.importorskip("t5x.models")

import jax  # noqa: E402
import seqio  # noqa: E402
from t5x import adafactor, models  # noqa: E402

from orca_jax.data.loader import PackedLoader  # noqa: E402
from orca_jax.model import decoder  # noqa: E402
from orca_jax.model.config import get_preset  # noqa: E402
from orca_jax.t5x.features import t5x_batch_from_packed  # noqa: E402
from orca_jax.t5x.model import PARAMS_ROOT, T5XDecoder  # noqa: E402
from orca_jax.train.trainer import LossConfig, forward_loss_sums  # noqa: E402

CONFIG = get_preset("tiny")


def multi_turn_examples(n, seed):
    """Random token ids with loss on two separate replies per example (a multi-turn layout) and
    some examples whose id 0 appears inside a reply (a real token for orca-jax, not padding)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        length = int(rng.integers(8, 30))
        ids = rng.integers(0, CONFIG.vocab_size, length).astype(np.int32)
        weights = np.zeros(length, np.float32)
        a, b = sorted(rng.choice(np.arange(2, length), 2, replace=False))
        weights[a:a + 3] = weights[b:] = 1.0
        examples.append({"ids": ids, "loss_weights": weights})
    return examples


@pytest.fixture(scope="module")
def packed_batch():
    loader = PackedLoader.from_examples(multi_turn_examples(24, 0), seq_len=64, global_batch_size=4, seed=0,
                                        process_index=0, process_count=1)
    return next(iter(loader))


def test_t5x_loss_fn_equals_orca_jax_trainer_loss(packed_batch):
    params = decoder.init_params(CONFIG, jax.random.key(1))
    z_loss = 1e-3
    sums = forward_loss_sums(decoder.Decoder(CONFIG), LossConfig(z_loss=z_loss), params, packed_batch)
    orca_loss = float(sums["objective"] / np.sum(packed_batch["loss_weights"]))

    model = models.DecoderOnlyModel(T5XDecoder(CONFIG), seqio.PassThroughVocabulary(CONFIG.vocab_size),
                                    adafactor.Adafactor(), z_loss=z_loss,
                                    loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    t5x_batch = t5x_batch_from_packed(packed_batch)
    t5x_loss, _ = model.loss_fn({PARAMS_ROOT: params}, t5x_batch, dropout_rng=None)
    assert abs(float(t5x_loss) - orca_loss) < 1e-5, (float(t5x_loss), orca_loss)

    # The same tokens carry loss: per row, the weighted targets in order, and the weight sum.
    assert t5x_batch["decoder_loss_weights"].sum() == packed_batch["loss_weights"].sum()
    for row in range(packed_batch["inputs"].shape[0]):
        orca = packed_batch["targets"][row][packed_batch["loss_weights"][row] > 0]
        t5x = t5x_batch["decoder_target_tokens"][row][t5x_batch["decoder_loss_weights"][row] > 0]
        np.testing.assert_array_equal(orca, t5x)


def test_adapted_decoder_logits_are_orca_jax_logits_packed_and_unpacked(packed_batch):
    """Each real slot's logits equal orca-jax's logits for the same token, one slot earlier."""
    params = decoder.init_params(CONFIG, jax.random.key(2))
    orca_logits = np.asarray(decoder.apply(CONFIG, params, packed_batch["inputs"], packed_batch["positions"],
                                           packed_batch["segment_ids"]))
    t5x_batch = t5x_batch_from_packed(packed_batch)
    module = T5XDecoder(CONFIG)
    logits = np.asarray(module.apply({"params": {PARAMS_ROOT: params}}, t5x_batch["decoder_input_tokens"],
                                     t5x_batch["decoder_target_tokens"], t5x_batch["decoder_segment_ids"],
                                     t5x_batch["decoder_positions"], enable_dropout=False))
    real = (packed_batch["segment_ids"][:, 1:] > 0) & (packed_batch["positions"][:, 1:] > 0)
    np.testing.assert_allclose(logits[:, 1:][real], orca_logits[:, :-1][real], atol=1e-5)

    # Unpacked (no segment ids): one example per row, padding found by target id 0.
    ids = np.arange(1, 11, dtype=np.int32)[None]
    unpacked = module.apply({"params": {PARAMS_ROOT: params}}, np.pad(ids[:, :-1], ((0, 0), (1, 3))),
                            np.pad(ids, ((0, 0), (0, 3))), enable_dropout=False)
    reference = decoder.apply(CONFIG, params, ids, np.arange(10)[None], np.ones_like(ids))
    np.testing.assert_allclose(np.asarray(unpacked)[0, 1:10], np.asarray(reference)[0, :9], atol=1e-5)


@pytest.mark.slow
def test_t5x_predict_batch_decodes_greedily_like_orca_jax():
    """t5x's cached decoding (prefill + one token per step, prompts of different lengths) on the
    adapted decoder continues each prompt as greedy full forward passes of orca-jax's decoder.
    Slow: compiling t5x's decoding loop takes about 45 s of CPU."""
    params = decoder.init_params(CONFIG, jax.random.key(5))
    prompts = [[5, 17, 42, 9], [100, 3, 77, 8, 250, 11, 64]]
    length = 16
    batch = {"decoder_input_tokens": np.zeros((2, length), np.int32),
             "decoder_target_tokens": np.zeros((2, length), np.int32),
             "decoder_causal_attention": np.zeros((2, length), np.int32)}
    for row, prompt in enumerate(prompts):  # seqio's PrefixLM layout of an inputs-only example
        n = len(prompt)
        batch["decoder_target_tokens"][row, :n] = prompt
        batch["decoder_input_tokens"][row, 1:n + 1] = prompt
        batch["decoder_causal_attention"][row, :n + 1] = 1
    model = models.DecoderOnlyModel(T5XDecoder(CONFIG), seqio.PassThroughVocabulary(CONFIG.vocab_size, eos_id=1),
                                    adafactor.Adafactor())
    decoded = np.asarray(model.predict_batch({PARAMS_ROOT: params}, batch))
    for row, prompt in enumerate(prompts):
        sequence = list(prompt)
        for _ in range(length - 1 - len(prompt)):  # t5x fills the row up to its last slot
            logits = decoder.apply(CONFIG, params, np.array([sequence]), np.arange(len(sequence))[None],
                                   np.ones((1, len(sequence)), np.int32))
            sequence.append(int(np.argmax(logits[0, -1])))
        expected = sequence[len(prompt):]
        if 1 in expected:  # t5x stops a row at EOS
            expected = expected[:expected.index(1) + 1]
        assert decoded[row, :len(expected)].tolist() == expected
