"""Trace examples as t5x task features, and the converter that keeps per-token loss weights.

An orca-jax example is `ids [n]` with `loss_weights [n]`, the weight of predicting token i
(the packer never predicts token 0). t5x's decoder-only layout predicts `targets[j]` at slot j
from the tokens before it (seqio writes id 0 at each segment's first input slot), so the same
tokens carry loss with no shift: targets = ids, weights = loss_weights with weight 0 on token 0.

Two task layouts:
  weighted  {"targets": ids, "targets_loss_weights": w}: any trace, multi-turn included, read by
            `WeightedLMFeatureConverter` (seqio's LM converters weigh every non-padding target)
  prefix    {"inputs": ids[:a], "targets": ids[a:b+1]}: traces whose weighted tokens are one
            span a..b (single-turn), read by seqio's own `PrefixLMFeatureConverter`; tokens
            after the span predict nothing and are dropped

`t5x_batch_from_packed` turns one of orca-jax's packed batches into the t5x batch of the same
examples: each segment keeps its slots, shifted right by one inside the segment.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import seqio
import tensorflow as tf

from orca_jax.errors import UserError

LOSS_WEIGHTS = "targets_loss_weights"


def weighted_features(example: Mapping[str, np.ndarray], example_name: str = "?") -> dict[str, np.ndarray]:
    """{"targets", "targets_loss_weights"} of one tokenized trace."""
    ids = np.asarray(example["ids"], np.int32)
    if np.any(ids == seqio.vocabularies.PAD_ID):
        # seqio's packer takes an example's length to be its count of non-zero ids
        raise UserError(f"{example_name}: token id {seqio.vocabularies.PAD_ID} (position "
                        f"{int(np.argmax(ids == seqio.vocabularies.PAD_ID))}) is padding to seqio; this tokenizer's "
                        "id 0 cannot go through seqio's feature converters")
    weights = np.asarray(example["loss_weights"], np.float32).copy()
    weights[:1] = 0.0  # token 0 has no preceding token: orca-jax's packer never predicts it
    if not np.all((weights == 0) | (weights == 1)):
        raise UserError(f"{example_name}: loss weights must be 0 or 1 for seqio's packer")
    return {"targets": ids, LOSS_WEIGHTS: weights}


def prefix_features(example: Mapping[str, np.ndarray], example_name: str = "?") -> dict[str, np.ndarray]:
    """{"inputs", "targets"} of one tokenized single-turn trace (one contiguous weighted span)."""
    weighted = weighted_features(example, example_name)
    ids, weighted = weighted["targets"], np.flatnonzero(weighted[LOSS_WEIGHTS] > 0)
    if not len(weighted):
        raise UserError(f"{example_name}: no loss-weighted token")
    start, end = int(weighted[0]), int(weighted[-1]) + 1
    if len(weighted) != end - start:
        raise UserError(f"{example_name}: loss falls on {len(weighted)} tokens in several spans (a multi-turn "
                        "trace); inputs/targets holds one reply: use the weighted t5x task instead")
    return {"inputs": ids[:start], "targets": ids[start:end]}


class WeightedLMFeatureConverter(seqio.LMFeatureConverter):
    """seqio's LM converter, with `decoder_loss_weights` taken from the task's
    `targets_loss_weights` instead of "every non-padding target". Task feature lengths name
    "targets" only; the weights are packed with it, to the same length, as 1 + weight (seqio's
    packer takes the non-zero prefix of a feature as the example, as PrefixSuffixLM's 1/2
    encoding also works around)."""

    MODEL_FEATURES = {
        **seqio.LMFeatureConverter.MODEL_FEATURES,
        "decoder_loss_weights": seqio.FeatureConverter.FeatureSpec(dtype=tf.float32),
    }

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        if LOSS_WEIGHTS not in ds.element_spec:
            raise UserError(f"WeightedLMFeatureConverter: the task has no {LOSS_WEIGHTS!r} feature "
                            f"(it has {sorted(ds.element_spec)}); use a t5x trace task (tasks.t5x_features)")
        lengths = {**task_feature_lengths, LOSS_WEIGHTS: task_feature_lengths["targets"]}
        ds = ds.map(lambda ex: {"targets": ex["targets"], LOSS_WEIGHTS: 1 + tf.cast(ex[LOSS_WEIGHTS] > 0, tf.int32)})
        ds = self._pack_or_pad(ds, lengths)

        def convert(features):
            converted = dict(self._convert_example(features))
            converted["decoder_loss_weights"] = tf.cast(tf.maximum(features[LOSS_WEIGHTS] - 1, 0), tf.float32)
            return converted

        return ds.map(convert, num_parallel_calls=tf.data.experimental.AUTOTUNE)


def t5x_batch_from_packed(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The t5x model features of an orca-jax packed batch (`PackedLoader`, `pack_rows`).

    Segment slot s+j holds orca-jax's input ids[j] and predicts ids[j+1]; in t5x, slot s+j
    predicts ids[j] (decoder_target_tokens = orca-jax's inputs) from ids[j-1], so weights and
    inputs move one slot right inside each segment and its first slot gets input 0, weight 0."""
    segments = np.asarray(batch["segment_ids"])
    first = np.asarray(batch["positions"]) == 0
    shifted = lambda x: np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    inputs = np.where(first, 0, shifted(np.asarray(batch["inputs"]))) * (segments > 0)
    weights = np.where(first, 0.0, shifted(np.asarray(batch["loss_weights"], np.float32)))
    return {
        "decoder_target_tokens": np.asarray(batch["inputs"], np.int32) * (segments > 0),
        "decoder_input_tokens": inputs.astype(np.int32),
        "decoder_loss_weights": (weights * (segments > 0)).astype(np.float32),
        "decoder_segment_ids": segments.astype(np.int32),
        "decoder_positions": np.asarray(batch["positions"], np.int32) * (segments > 0),
    }
