"""orca-jax's decoder as the module of `t5x.models.DecoderOnlyModel`.

`T5XDecoder` takes what DecoderOnlyModel passes (decoder_input_tokens, decoder_target_tokens,
decoder_segment_ids, decoder_positions, enable_dropout, ...) and runs `orca_jax.model.decoder.Decoder`
on the same tokens orca-jax's own trainer would see. t5x's layout (see features.py) puts a
placeholder input (id 0, seqio's BOS) at each segment's first slot: it gets a segment id of its
own (minus the segment's), so no real token attends to it, and the real tokens keep orca-jax's
positions 0, 1, ... (t5x's minus one). The logits at real slots are then orca-jax's logits, and
a segment's weighted tokens are orca-jax's. Causal attention only: `inputs_bidirectional_attention`
(a PrefixLM's bidirectional prompt) is refused. t5x's cached decoding (`predict_batch`) runs on
orca-jax's KV cache (`T5XDecoder._cached`).

Parameters live under "decoder" with orca-jax's names and shapes (`params["decoder"]` is an
orca-jax parameter tree), unboxed as t5x's optimizers expect; their logical axis names go to the
`params_axes` collection, as `flax.linen.partitioning.param_with_axes` writes them, so t5x's
`PjitPartitioner` shards them by `logical_axis_rules()`.

`decoder_only_model(...)` builds the DecoderOnlyModel (gin-configurable, used by gin/t5x/) and
writes `model_config.json` + `tokenizer/` into the t5x MODEL_DIR so that `orca-jax convert`
can read its checkpoints without the gin files.
"""

from __future__ import annotations

import os

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
from flax.linen import partitioning as flax_partitioning

from orca_jax.errors import UserError
from orca_jax.model import decoder as orca_decoder
from orca_jax.model.config import DecoderConfig
from orca_jax.t5x import PARAMS_ROOT


# orca-jax's logical axis names on t5x's ("data", "model") mesh: data parallel over the batch,
# model parallel over the per-head, hidden and vocabulary dimensions (as partitioning.py's
# "tensor" axis); embed is not split (t5x's 1-D parameter partitioning).
LOGICAL_AXIS_RULES = (
    ("batch", "data"),
    ("length", None),
    ("vocab", "model"),
    ("embed", None),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("head_dim", None),
    ("norm", None),
)


@gin.configurable
def logical_axis_rules() -> tuple:
    """Rules for `t5x.partitioning.PjitPartitioner.logical_axis_rules`."""
    return LOGICAL_AXIS_RULES


@gin.configurable
def logical_factor_rules():
    """t5x Adafactor's factorization rules extended to orca-jax's names (the per-head kernels
    are rank 3): `Adafactor(logical_factor_rules=...)`."""
    from orca_jax.t5x import import_t5x

    adafactor = import_t5x("t5x.adafactor")
    rules = dict(adafactor.standard_logical_factor_rules())
    rules.update(kv_heads=adafactor.FactorDim.COLUMN, head_dim=adafactor.FactorDim.COLUMN,
                 norm=adafactor.FactorDim.NONE)
    return rules


def orca_layout(target_tokens, segment_ids=None, positions=None):
    """(segment_ids, positions) for orca-jax's decoder from t5x's features: each segment's first
    slot (the placeholder input) gets segment -s, the others keep s, and positions drop by one.
    Unpacked batches (no segment ids) are one segment per row up to its padding (target 0)."""
    if segment_ids is None:
        segment_ids = (target_tokens > 0).astype(jnp.int32)
        positions = jnp.broadcast_to(jnp.arange(target_tokens.shape[1], dtype=jnp.int32), target_tokens.shape)
    elif positions is None:
        raise UserError("T5XDecoder: decoder_segment_ids without decoder_positions")
    first = (positions == 0) & (segment_ids > 0)
    return jnp.where(first, -segment_ids, segment_ids), positions - 1


def _axes_tree(specs) -> dict:
    """{name: PartitionSpec} tree -> t5x's params_axes tree {name + "_axes": AxisMetadata}."""
    out = {}
    for key, value in specs.items():
        if isinstance(value, jax.sharding.PartitionSpec):
            out[key + "_axes"] = flax_partitioning.AxisMetadata(names=tuple(value))
        else:
            out[key] = _axes_tree(value)
    return out


def _unbox_with_axes(variables: dict) -> dict:
    """At init, orca-jax's boxed parameters -> plain arrays (t5x's optimizers take those) plus
    their logical axis names as the params_axes collection; later calls pass through."""
    params = variables.get("params", {})
    boxed = any(isinstance(leaf, nn.LogicallyPartitioned) for leaf in
                jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)))
    if not boxed:
        return variables
    return {**variables, "params": nn.unbox(params), "params_axes": _axes_tree(nn.get_partition_spec(params))}


_UnboxedDecoder = nn.map_variables(orca_decoder.Decoder, ["params", "params_axes"], trans_out_fn=_unbox_with_axes,
                                   init=True)


class T5XDecoder(nn.Module):
    """The module for `t5x.models.DecoderOnlyModel(module=T5XDecoder(config), ...)`."""

    config: DecoderConfig

    @nn.compact
    def __call__(self, decoder_input_tokens, decoder_target_tokens, decoder_segment_ids=None,
                 decoder_positions=None, decoder_causal_attention=None, *, enable_dropout: bool = True,
                 decode: bool = False, max_decode_length: int | None = None, prefill: bool = False,
                 prefill_lengths=None):
        del enable_dropout  # orca-jax's decoders have no dropout
        if decoder_causal_attention is not None:
            raise UserError("T5XDecoder: orca-jax decoders are causal; use DecoderOnlyModel with "
                            "inputs_bidirectional_attention = False")
        # DecoderOnlyModel.get_initial_variables makes float tokens unless given input_types
        tokens = decoder_input_tokens.astype(jnp.int32)
        # Initialisation unboxes the parameters and records their axes; later calls read them as they are.
        decoder = (_UnboxedDecoder if self.is_initializing() else orca_decoder.Decoder)(self.config, name=PARAMS_ROOT)
        if decode or prefill:
            return self._cached(decoder, tokens, prefill_lengths if prefill else None)
        segment_ids, positions = orca_layout(decoder_target_tokens, decoder_segment_ids, decoder_positions)
        return decoder(tokens, positions, segment_ids)

    def _cached(self, decoder, tokens, prefill_lengths):
        """t5x's cached decoding (DecoderOnlyModel.predict_batch) on orca-jax's KV cache.

        The first call (t5x passes its full input length L) creates a cache of 2L slots. Prefill
        writes slots [0, L): the prompt's tokens before its last (t5x feeds the last as the first
        decoding step), the placeholder slot 0 and everything after as padding. Each decoding step
        then writes one slot from L on for every row; each row's position is its own t5x index
        minus one (`t5x_index`, per row), so rows with prompts of different lengths stay exact."""
        from orca_jax.model.decoder import init_cache

        batch, length = tokens.shape
        if not self.has_variable("cache", "cache_index"):  # t5x's shape-only first call
            start = init_cache(self.config, batch, 2 * length)
            for name in ("segment_ids", "positions", "layers"):
                self.variable("cache", name, lambda value=start[name]: value)
            self.variable("cache", "cache_index", lambda: start["index"])  # t5x never beam-expands this name
            self.variable("cache", "t5x_index", lambda: jnp.zeros((batch,), jnp.int32))
            return jnp.zeros((batch, length, self.config.vocab_size), jnp.float32)
        variables = {name: self.get_variable("cache", name)
                     for name in ("segment_ids", "positions", "layers", "cache_index", "t5x_index")}
        cache = {"index": variables["cache_index"], "segment_ids": variables["segment_ids"],
                 "positions": variables["positions"], "layers": variables["layers"]}
        if prefill_lengths is not None:
            slots = jnp.arange(length)[None, :]
            segment_ids = ((slots >= 1) & (slots < prefill_lengths[:, None])).astype(jnp.int32)
            positions = jnp.maximum(slots - 1, 0) * segment_ids
            next_index = prefill_lengths.astype(jnp.int32)
        else:
            segment_ids = jnp.ones_like(tokens)
            positions = (variables["t5x_index"] - 1)[:, None] + jnp.arange(length)[None, :]
            next_index = variables["t5x_index"] + length
        logits, cache = decoder(tokens, positions, segment_ids, cache)
        for name in ("segment_ids", "positions", "layers"):
            self.put_variable("cache", name, cache[name])
        self.put_variable("cache", "cache_index", cache["index"])
        self.put_variable("cache", "t5x_index", next_index)
        return logits


@gin.configurable
def decoder_only_model(config: DecoderConfig, tokenizer_path: str, optimizer_def, *, template: str = "chatml",
                       z_loss: float = 0.0, model_dir: str | None = None):
    """`t5x.models.DecoderOnlyModel` over orca-jax's decoder, the tokenizer at `tokenizer_path`
    (with the template's tokens added, as the trace tasks tokenize) and orca-jax's loss layout.
    With `model_dir`, `model_config.json` and `tokenizer/` are written there (once) for
    `orca-jax convert`."""
    from orca_jax.data.chat import ensure_template_tokens
    from orca_jax.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    ensure_template_tokens(tokenizer, template)
    if model_dir:
        from orca_jax.model.orbax_io import is_model_folder, write_model_metadata

        os.makedirs(model_dir, exist_ok=True)
        if not is_model_folder(model_dir):
            write_model_metadata(model_dir, config, tokenizer)
    return t5x_model(config, tokenizer, optimizer_def, end_of_turn_id(tokenizer, template), z_loss=z_loss)


def t5x_model(config: DecoderConfig, tokenizer, optimizer_def, eos_id: int | None = None, z_loss: float = 0.0):
    """The DecoderOnlyModel: the loss is normalised by the total loss weight, as orca-jax's trainer
    does, and batches come from `WeightedLMFeatureConverter`."""
    from orca_jax.t5x import import_t5x
    from orca_jax.t5x.features import WeightedLMFeatureConverter
    from orca_jax.t5x.vocabulary import TokenizerVocabulary

    models = import_t5x("t5x.models")
    if tokenizer.vocab_size > config.vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.vocab_size} ids, more than the model's vocab_size "
                        f"{config.vocab_size}")
    return models.DecoderOnlyModel(
        module=T5XDecoder(config), vocabulary=TokenizerVocabulary(tokenizer, eos_id), optimizer_def=optimizer_def,
        feature_converter_cls=WeightedLMFeatureConverter, z_loss=z_loss, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")


def end_of_turn_id(tokenizer, template: str) -> int | None:
    """The token that ends an assistant turn under `template` (ChatML's <|im_end|>, else EOS)."""
    from orca_jax.data.chat import CHATML_TOKENS

    return tokenizer.token_to_id(CHATML_TOKENS[1]) if template == "chatml" else tokenizer.eos_id
