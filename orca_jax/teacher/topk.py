"""Teacher top-k capture: per response token, the model's top-k next-token ids and log-probs.

One teacher-forced forward pass over prompt + response (batched, right-padded; padding is
segment 0 and never attended) gives, at the position before each response token, the
model's log-softmax at temperature 1: the distribution offline logit distillation matches,
whatever temperature the response was sampled at. The same pass gives each response token's
own log-prob (OpenAI-style `logprobs`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from orca_jax.model.config import DecoderConfig
from orca_jax.model.scoring import next_token_scores


@dataclasses.dataclass
class ResponseScores:
    token_logprobs: np.ndarray  # [n] log p(response[i] | prompt, response[:i])
    topk_ids: np.ndarray  # [n, k] most likely next tokens at that position, best first
    topk_logprobs: np.ndarray  # [n, k]


def score_responses(config: DecoderConfig, params, prompts: list[list[int]], responses: list[list[int]], k: int,
                    *, rows_per_pass: int = 8, pad_to_multiple: int = 64) -> list[ResponseScores]:
    """Scores of each response given its prompt; `rows_per_pass` bounds the [rows, length, vocab] logits."""
    results = []
    for start in range(0, len(prompts), rows_per_pass):
        rows = [list(p) + list(r) for p, r in zip(prompts[start:start + rows_per_pass],
                                                  responses[start:start + rows_per_pass])]
        length = -(-max(len(r) for r in rows) // pad_to_multiple) * pad_to_multiple
        tokens = np.zeros((len(rows), length), np.int32)
        segment_ids = np.zeros((len(rows), length), np.int32)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = row
            segment_ids[i, :len(row)] = 1
        positions = np.arange(length, dtype=np.int32)[None] * segment_ids
        chosen, top_ids, top_logprobs = (np.asarray(x) for x in next_token_scores(
            config, params, tokens, positions, segment_ids, k=k))
        for i, (prompt, response) in enumerate(zip(prompts[start:], responses[start:start + len(rows)])):
            # Logits at position t predict token t + 1: the response's tokens are predicted from
            # positions len(prompt) - 1 .. len(prompt) + len(response) - 2.
            span = slice(len(prompt) - 1, len(prompt) + len(response) - 1)
            results.append(ResponseScores(chosen[i, span], top_ids[i, span], top_logprobs[i, span]))
    return results
