"""A seqio Vocabulary over this project's tokenizer, for t5x's feature converters and decoding.

seqio reserves id 0 for padding (`Vocabulary.pad_id`), and t5x's unpacked batches and
PrefixLM loss masks find padding by that id. Our tokenizers keep their own id 0 (often a
real token), so trace features are checked for it where seqio would misread it
(`orca_jax.t5x.features`).
"""

from __future__ import annotations

import seqio
import tensorflow as tf

from orca_jax.data.tokenizer import Tokenizer


class TokenizerVocabulary(seqio.Vocabulary):
    """seqio view of a `Tokenizer`: `encode` adds no BOS/EOS (the chat template writes them),
    `decode` stops at `eos_id` (the end of the reply) and drops special tokens."""

    def __init__(self, tokenizer: Tokenizer, eos_id: int | None = None):
        super().__init__(extra_ids=0)
        self.tokenizer = tokenizer
        # A chat model's reply ends with the template's end-of-turn token, not always EOS.
        self._eos_id = tokenizer.eos_id if eos_id is None else eos_id

    @property
    def eos_id(self) -> int | None:
        return self._eos_id

    @property
    def bos_id(self) -> int | None:
        return self.tokenizer.bos_id

    @property
    def unk_id(self) -> int | None:
        return None

    @property
    def _base_vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def _encode(self, s: str) -> list[int]:
        return self.tokenizer.encode(s, add_bos=False)

    def _decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        while ids and ids[-1] == self.pad_id:  # t5x pads decoded rows with 0 after the reply
            ids.pop()
        return self.tokenizer.decode(ids)

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        def encode(text):
            return tf.constant(self._encode(text.numpy().decode("utf-8")), tf.int32)

        ids = tf.py_function(encode, [s], tf.int32)
        return tf.ensure_shape(ids, [None])

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        def decode_rows(rows):
            rows = rows.numpy()
            return tf.constant([self._decode(row).encode("utf-8") for row in rows.reshape(-1, rows.shape[-1])])

        flat = tf.py_function(decode_rows, [tf.reshape(ids, [-1, tf.shape(ids)[-1]])], tf.string)
        return tf.reshape(flat, tf.shape(ids)[:-1])

    def __eq__(self, other) -> bool:
        return (isinstance(other, TokenizerVocabulary) and self.eos_id == other.eos_id
                and self.tokenizer.backend.to_str() == other.tokenizer.backend.to_str())

    def __hash__(self) -> int:
        return hash((type(self), self._base_vocab_size, self.eos_id))

    def __str__(self) -> str:
        return f"TokenizerVocabulary(size={self.vocab_size}, eos_id={self.eos_id})"
