"""Benchmark contamination of teacher traces: word n-gram overlap, as GPT-3 and lm-eval measure it.

Text is normalized as lm-evaluation-harness's decontamination `Janitor` does it: ASCII
letters lower-cased, `string.punctuation` deleted, split on whitespace; so a benchmark
question pasted into a trace with other spacing, case or punctuation still matches. An
item (passage, question and options) is contaminated when a trace turn (system, user or
assistant, each on its own) shares one of its 13-grams (lm-eval's and GPT-3's N).
Following GPT-3's floor of 8 words for N, an item of 8 to 12 words counts when the whole
item appears in a turn, and shorter items (e.g. BBH's boolean expressions) are reported
as too short to check.

Orca 1 kept BBH out of its data by drawing on T0's train split only; traces brought from
elsewhere carry no such guarantee, which is what this report is for.
"""

import string
from collections import defaultdict
from dataclasses import dataclass, field

from orca_jax.data.traces import Trace
from orca_jax.evaluation.benchmarks import Example

NGRAM = 13
MIN_WORDS = 8
_NORMALIZE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)


def words(text: str) -> tuple[str, ...]:
    return tuple(text.translate(_NORMALIZE).split())


def item_text(example: Example) -> str:
    return "\n".join(filter(None, [example.passage, example.question, " ".join(example.options)]))


def _windows(tokens: tuple[str, ...], n: int):
    return (tokens[i:i + n] for i in range(len(tokens) - n + 1))


@dataclass
class Hit:
    example: Example
    trace_file: str
    trace_id: str
    overlap: str  # the shared words, normalized


@dataclass
class BenchmarkIndex:
    """Every checkable item's 13-grams (or whole word sequence, for 8 to 12 words)."""
    examples: list[Example]
    # keyed by the n-gram's hash: a million 13-word tuples would hold every word again
    ngrams: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    whole: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(list))
    too_short: list[int] = field(default_factory=list)
    whole_lengths: tuple[int, ...] = ()

    @classmethod
    def build(cls, examples: list[Example]) -> "BenchmarkIndex":
        index = cls(examples)
        for i, example in enumerate(examples):
            tokens = words(item_text(example))
            if len(tokens) >= NGRAM:
                for key in {hash(gram) for gram in _windows(tokens, NGRAM)}:
                    index.ngrams[key].append(i)
            elif len(tokens) >= MIN_WORDS:
                index.whole[tokens].append(i)
            else:
                index.too_short.append(i)
        index.whole_lengths = tuple(sorted({len(w) for w in index.whole}))
        return index

    def matches(self, text: str) -> dict[int, tuple[str, ...]]:
        """Item index -> the words it shares with `text`."""
        tokens, found = words(text), {}
        for gram in _windows(tokens, NGRAM):
            for i in self.ngrams.get(hash(gram), ()):
                found.setdefault(i, gram)
        for n in self.whole_lengths:
            for gram in _windows(tokens, n):
                for i in self.whole.get(gram, ()):
                    found.setdefault(i, gram)
        return found


def trace_texts(trace: Trace) -> list[str]:
    return ([trace.system] if trace.system else []) + [turn["content"] for turn in trace.turns]


class Scan:
    """Checks traces one at a time (files of millions stream through), keeping each
    contaminated item's first hit."""

    def __init__(self, index: BenchmarkIndex):
        self.index, self.hits = index, {}

    def check(self, trace_file: str, trace: Trace) -> bool:
        """Whether `trace` shares an n-gram with any benchmark item."""
        dirty = False
        for text in trace_texts(trace):
            for i, gram in self.index.matches(text).items():
                dirty = True
                self.hits.setdefault(i, Hit(self.index.examples[i], trace_file, trace.id, " ".join(gram)))
        return dirty

    def report(self, examples_shown: int) -> dict[str, dict]:
        """Per benchmark: items, checked, too short, contaminated, and the first examples."""
        hits = [self.hits[i] for i in sorted(self.hits)]
        out = {}
        for benchmark in dict.fromkeys(e.benchmark for e in self.index.examples):
            short = sum(self.index.examples[i].benchmark == benchmark for i in self.index.too_short)
            items = sum(e.benchmark == benchmark for e in self.index.examples)
            mine = [h for h in hits if h.example.benchmark == benchmark]
            out[benchmark] = {
                "items": items, "checked": items - short, "too_short": short, "contaminated": len(mine),
                "examples": [{"item": h.example.id, "trace_file": h.trace_file, "trace_id": h.trace_id,
                              "overlap": h.overlap} for h in mine[:examples_shown]],
            }
        return out
