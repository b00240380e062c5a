"""Packing tokenized examples into fixed-length rows.

Planning (which examples share a row) works on lengths only, over a bounded buffer:
largest example first, then the next largest that fits while the gap stays wide, and the row's
last gap filled by an exact (or, failing that, the fullest) subset sum of the remaining examples.
Best-fit decreasing alone leaves about half the shortest example per row; filling the last gap
exactly is what reaches >= 99% non-padding on Orca-like length distributions
(see benchmarks/README.md).

Rows hold, per position: `inputs`, `targets` (next token of the same example; the last token of
each example predicts nothing: target 0, weight 0), `segment_ids` (1, 2, ... per example;
0 = padding), `positions` (restart at 0 per example), `loss_weights` and, when the examples
carry them, `teacher_topk_ids` / `teacher_topk_logprobs` aligned with `targets`, and
`source_ids` (each token's example's `source`, an index into the loader's `source_names`;
NO_SOURCE for padding).
"""

from __future__ import annotations

import bisect
from typing import Iterable, Iterator, Sequence

import numpy as np

# Log-prob for top-k slots that carry no teacher distribution (padding, prompt, a missing row):
# exp() of it is exactly 0 in float32, and unlike -inf it never turns 0 * logp into NaN.
TOPK_FILL_LOGPROB = -1e4
# source_ids of padding: no source (its one-hot over the sources is all zeros, so per-source sums skip it).
NO_SOURCE = -1


def _best_subset(available: dict[int, list], gap: int) -> list[int]:
    """Lengths (with multiplicity, from `available` length -> items) summing to `gap` exactly if
    possible, else to the largest reachable sum below it. Bitset subset sum with counts split
    into powers of two; larger lengths are preferred so that short examples stay for later rows."""
    pieces: list[tuple[int, int]] = []  # (length, how many of it)
    history = [1]  # history[i] = sums reachable with the first i pieces
    mask = (1 << (gap + 1)) - 1
    for length in sorted((l for l in available if l <= gap), reverse=True):
        count, take = min(len(available[length]), gap // length), 1
        while count > 0:
            n = min(take, count)
            pieces.append((length, n))
            history.append(history[-1] | ((history[-1] << (length * n)) & mask))
            count -= n
            take *= 2
        if history[-1] >> gap & 1:
            break  # exact fill found; later (shorter) lengths are not needed
    reach = history[-1]
    target = reach.bit_length() - 1
    chosen = []
    for i in range(len(pieces), 0, -1):
        if not history[i - 1] >> target & 1:
            length, n = pieces[i - 1]
            chosen.extend([length] * n)
            target -= length * n
    return chosen


def plan_rows(lengths: Sequence[int], seq_len: int, greedy_until_gap: int | None = None) -> list[list[int]]:
    """Group example indices into rows whose lengths sum to at most `seq_len`.

    Each row takes the largest remaining example, then keeps adding the largest one that fits
    while at least `greedy_until_gap` tokens would stay free (default seq_len // 4), then fills
    what is left by subset sum. Deterministic: ties go to the lower index.
    """
    greedy_until_gap = seq_len // 4 if greedy_until_gap is None else greedy_until_gap
    available: dict[int, list[int]] = {}  # length -> indices, highest first so pop() gives the lowest
    for i in reversed(range(len(lengths))):
        n = int(lengths[i])
        if not 0 < n <= seq_len:
            raise ValueError(f"example {i} has {n} tokens; packable examples have 1..{seq_len}")
        available.setdefault(n, []).append(i)
    distinct = sorted(available)

    def take(length: int) -> int:
        items = available[length]
        index = items.pop()
        if not items:
            del available[length]
            distinct.pop(bisect.bisect_left(distinct, length))
        return index

    rows = []
    while distinct:
        row = [take(distinct[-1])]
        gap = seq_len - lengths[row[0]]
        while distinct:
            k = bisect.bisect_right(distinct, gap)
            if k == 0:
                break
            largest = distinct[k - 1]
            if gap - largest >= greedy_until_gap:
                row.append(take(largest))
                gap -= largest
                continue
            for length in _best_subset(available, gap):
                row.append(take(length))
            break
        rows.append(row)
    return rows


class BufferedPlanner:
    """Plans rows over a bounded buffer of a stream of (item, length) pairs.

    When the buffer is full, its rows are planned; the least filled rows' items (those below
    `carry_below` fill, at most half a buffer) go back into the buffer to pack with what comes
    next instead of being emitted as padding. The last buffer (`final=True`) is planned whole.
    """

    def __init__(self, seq_len: int, buffer_size: int = 8192, carry_below: float = 0.99, greedy_until_gap: int | None = None):
        if buffer_size < 2:
            raise ValueError("buffer_size must be >= 2")
        self.seq_len, self.buffer_size, self.carry_below = seq_len, buffer_size, carry_below
        self.greedy_until_gap = greedy_until_gap

    def plan(self, items: list, lengths: list[int], final: bool) -> tuple[list[list], list]:
        """(rows of items, (item, length) pairs carried over) for one full buffer (or the last if `final`)."""
        planned = plan_rows(lengths, self.seq_len, self.greedy_until_gap)
        keep, carry = [], []
        for row in planned:
            fill = sum(lengths[i] for i in row) / self.seq_len
            if not final and fill < self.carry_below and len(carry) + len(row) <= self.buffer_size // 2:
                carry.extend(row)
            else:
                keep.append(row)
        return [[items[i] for i in row] for row in keep], [(items[i], lengths[i]) for i in sorted(carry)]

    def rows(self, stream: Iterable[tuple[object, int]]) -> Iterator[list]:
        """Rows (lists of items) for a whole stream, in a deterministic order."""
        items, lengths = [], []
        for item, n in stream:
            items.append(item)
            lengths.append(n)
            if len(items) >= self.buffer_size:
                rows, carry = self.plan(items, lengths, final=False)
                yield from rows
                items, lengths = [x for x, _ in carry], [n for _, n in carry]
        if items:
            yield from self.plan(items, lengths, final=True)[0]


def pack_rows(examples: Sequence[dict], rows: Sequence[Sequence[int]], seq_len: int, topk: int | None = None,
              with_sources: bool | None = None) -> dict[str, np.ndarray]:
    """Materialise rows (lists of indices into `examples`) as a packed batch `[len(rows), seq_len]`.

    An example is `{"ids": int[n], "loss_weights": float[n]}` plus optionally
    `teacher_topk_ids` / `teacher_topk_logprobs` `[n, k]`, where `loss_weights[i]` is the weight
    of predicting token i and top-k row i is the teacher's distribution for token i, and
    `source` (an int). `topk` and `with_sources` (inferred from the examples when None) keep
    those features even in all-padding rows.
    """
    n_rows = len(rows)
    batch = {name: np.zeros((n_rows, seq_len), np.int32) for name in ("inputs", "targets", "segment_ids", "positions")}
    batch["loss_weights"] = np.zeros((n_rows, seq_len), np.float32)
    if topk is None and len(examples) and "teacher_topk_ids" in examples[0]:
        topk = examples[0]["teacher_topk_ids"].shape[1]
    has_topk = topk is not None
    if with_sources is None:
        with_sources = bool(len(examples)) and "source" in examples[0]
    if with_sources:
        batch["source_ids"] = np.full((n_rows, seq_len), NO_SOURCE, np.int32)
    if has_topk:
        k = topk
        topk_ids = batch["teacher_topk_ids"] = np.zeros((n_rows, seq_len, k), np.int32)
        topk_lp = batch["teacher_topk_logprobs"] = np.full((n_rows, seq_len, k), TOPK_FILL_LOGPROB, np.float32)
    for r, row in enumerate(rows):
        offset = 0
        for segment, index in enumerate(row, start=1):
            ex = examples[index]
            ids = ex["ids"]
            n = len(ids)
            end = offset + n
            if end > seq_len:
                raise ValueError(f"row {r} overflows seq_len {seq_len}")
            batch["inputs"][r, offset:end] = ids
            batch["targets"][r, offset:end - 1] = ids[1:]
            batch["loss_weights"][r, offset:end - 1] = ex["loss_weights"][1:]
            batch["segment_ids"][r, offset:end] = segment
            batch["positions"][r, offset:end] = np.arange(n, dtype=np.int32)
            if has_topk:
                topk_ids[r, offset:end - 1] = ex["teacher_topk_ids"][1:]
                topk_lp[r, offset:end - 1] = ex["teacher_topk_logprobs"][1:]
            if with_sources:
                batch["source_ids"][r, offset:end] = ex["source"]
            offset = end
    return batch


def pack_dataset(examples: Sequence[dict], seq_len: int, buffer_size: int = 8192, **planner_kwargs) -> dict[str, np.ndarray]:
    """All examples packed (over a bounded buffer, in order) into one batch of rows."""
    planner = BufferedPlanner(seq_len, buffer_size, **planner_kwargs)
    rows = list(planner.rows((i, len(ex["ids"])) for i, ex in enumerate(examples)))
    return pack_rows(examples, rows, seq_len)


def packing_stats(batch: dict[str, np.ndarray]) -> dict[str, float]:
    """Non-padding fraction and examples per row of a packed batch."""
    seg = batch["segment_ids"]
    rows = seg.shape[0]
    return {
        "rows": int(rows),
        "non_padding": float((seg > 0).mean()) if seg.size else 0.0,
        "examples_per_row": float(seg.max(axis=1).sum() / rows) if rows else 0.0,
    }
