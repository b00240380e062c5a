"""The training loader: deterministic, process-sharded, checkpointable packed batches.

Reads prepared caches with NumPy only (no TensorFlow, no seqio). Every process draws the same
example stream (epoch-seeded permutations; for mixtures, a seeded task choice per slot), plans
the same packed rows over a bounded buffer, shuffles them (the planner emits them longest
first, and batches in that order would run from long examples to short ones, each batch full of
one kind), and materialises only its own rows of each global
batch, so the global batch does not depend on the process count. `state()` captures the stream
position, the unplanned buffer and the planned-but-unemitted rows, so `restore(state)` resumes
with exactly the batches an uninterrupted run would have produced.

Sources: every example carries the id of where it came from, an index into `source_names`.
A prepared cache holds one task, so its examples share one source named by its metadata's
`task` (a mixture: one source per task); in-memory examples name theirs in a `source` field.
Batches then carry `source_ids` (see packing.py), for the per-source training loss.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import gin
import numpy as np

from orca_jax.data.cache import ExampleCache, empty_task_message, read_mixture
from orca_jax.data.packing import BufferedPlanner, pack_rows
from orca_jax.errors import UserError

STATE_VERSION = 2
DEFAULT_CACHE_ROOT = "orca_jax_cache"  # when neither an argument nor $ORCA_JAX_CACHE_DIR names one
_CHOICE_BLOCK = 4096  # mixture task choices are drawn in seeded blocks of this many slots


class _ListStore:
    """In-memory examples with the ExampleCache interface (for tests and small jobs). Examples
    may name their source (`"source": str`), all or none of them."""

    def __init__(self, examples: Sequence[dict]):
        self.examples = [{k: np.asarray(v) for k, v in ex.items() if k != "source"} for ex in examples]
        named = ["source" in ex for ex in examples]
        if any(named) and not all(named):
            raise UserError(f"example {named.index(False)}: no source; give every example a source or none")
        self.source_names = list(dict.fromkeys(ex["source"] for ex in examples)) if all(named) and examples else []
        index = {name: i for i, name in enumerate(self.source_names)}
        self.sources = np.array([index[ex["source"]] for ex in examples] if self.source_names else [], np.int64)
        self.lengths = np.array([len(ex["ids"]) for ex in self.examples], np.int64)
        first = self.examples[0] if self.examples else {}
        self.k = first["teacher_topk_ids"].shape[1] if "teacher_topk_ids" in first else None

    def __len__(self) -> int:
        return len(self.examples)

    def example(self, i: int, start: int = 0, end: int | None = None) -> dict[str, np.ndarray]:
        return {k: v[start:end] for k, v in self.examples[i].items()}

    def source(self, i: int) -> int:
        return int(self.sources[i])


class _Pieces:
    """The packable units of one store: whole examples, or seq_len windows of over-long ones.

    Over-long examples are dropped and counted (`too_long="drop"`) or split into windows that
    overlap by one token (`"split"`), so every target is still predicted exactly once."""

    def __init__(self, store, seq_len: int, too_long: str):
        lengths = np.asarray(store.lengths, np.int64)
        long = lengths > seq_len
        self.dropped = int(long.sum()) if too_long == "drop" else 0
        self.split = int(long.sum()) if too_long == "split" else 0
        if too_long == "split" and self.split:
            windows = []  # (example, start, end)
            for i, n in enumerate(lengths.tolist()):
                if 0 < n <= seq_len:
                    windows.append((i, 0, n))
                elif n > seq_len:
                    windows += [(i, s, min(s + seq_len, n)) for s in range(0, n - 1, seq_len - 1)]
            self.example, self.start, self.end = np.asarray(windows, np.int64).reshape(-1, 3).T
        else:
            short = np.flatnonzero(~long & (lengths > 0))
            self.example, self.start, self.end = short, np.zeros(len(short), np.int64), lengths[short]
        self.length = self.end - self.start
        self.store = store

    def __len__(self) -> int:
        return len(self.example)

    def get(self, p: int) -> dict[str, np.ndarray]:
        return self.store.example(int(self.example[p]), int(self.start[p]), int(self.end[p]))

    def source(self, p: int) -> int:
        return self.store.source(int(self.example[p]))


def _empty_store_message(pieces: _Pieces, seq_len: int) -> str:
    store = pieces.store
    too_long = {f"longer than seq_len {seq_len}": pieces.dropped} if pieces.dropped else {}
    return empty_task_message(store.source_names[0] if store.source_names else "(in-memory examples)",
                              getattr(store, "metadata", {}), too_long)


class PackedLoader:
    """Iterator over this process's rows `[global_batch_size // process_count, seq_len]` of packed batches.

    Construct from a prepared cache dir (`PackedLoader(cache_dir, ...)`), several with rates
    (`PackedLoader.from_mixture`), or in-memory examples (`PackedLoader.from_examples`).
    `num_epochs=None` repeats forever; with a finite count the last batch is padded with empty
    rows (segment 0) so shapes stay fixed.
    """

    def __init__(self, cache_dir: str | None = None, *, seq_len: int, global_batch_size: int, seed: int,
                 num_epochs: int | None = None, process_index: int | None = None, process_count: int | None = None,
                 shuffle: bool = True, buffer_size: int = 8192, too_long: str = "drop",
                 _stores: list | None = None, _rates: Sequence[float] | None = None):
        if process_index is None or process_count is None:
            import jax  # only for the process layout; the data path never touches jax

            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        if global_batch_size % process_count:
            raise UserError(f"global_batch_size {global_batch_size} is not divisible by the process count {process_count}")
        if too_long not in ("drop", "split"):
            raise UserError(f"too_long: expected 'drop' or 'split', got {too_long!r}")
        stores = _stores if _stores is not None else [ExampleCache(cache_dir)]
        if len(stores) > 1 and num_epochs is not None:
            raise UserError("a mixture samples its tasks forever by rate; num_epochs must be None")
        self.seq_len, self.global_batch_size, self.seed = seq_len, global_batch_size, seed
        self.num_epochs, self.shuffle = num_epochs, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.rows_per_process = global_batch_size // process_count
        self.pieces = [_Pieces(s, seq_len, too_long) for s in stores]
        for pieces in self.pieces:
            if len(pieces) == 0:
                raise UserError(_empty_store_message(pieces, seq_len))
        ks = {s.k for s in stores}
        if len(ks) > 1:
            raise UserError(f"tasks disagree on teacher top-k ({sorted(map(str, ks))}); mix only tasks with the same k")
        rates = np.asarray(_rates if _rates is not None else [1.0], np.float64)
        self.cum_rates = np.cumsum(rates / rates.sum())
        # One id space over all stores (ids of names, in store order); no sources unless every store has them.
        names = [s.source_names for s in stores]
        self.source_names: list[str] = list(dict.fromkeys(n for ns in names for n in ns)) if all(names) else []
        self._source_ids = [np.array([self.source_names.index(n) for n in ns], np.int32) for ns in names] \
            if self.source_names else []
        # The tokenizers the caches were prepared with (path, vocab_size, added_tokens, and the
        # chat template the examples were rendered with), so a trainer can check its vocabulary
        # and save the same tokenizer and template with the model.
        self.tokenizers: list[dict] = [dict(s.metadata["tokenizer"], template=s.metadata.get("template"))
                                       for s in stores if "tokenizer" in getattr(s, "metadata", {})]
        # A piece's global reference: store s's piece p is base[s] + p.
        self.base = np.concatenate([[0], np.cumsum([len(p) for p in self.pieces])]).astype(np.int64)
        # A buffer larger than the data would hold several copies of each example, and the rows
        # it carries over to the next plan (the hard-to-fill long examples) would then be
        # missing from batches for many steps at a time.
        self.planner = BufferedPlanner(seq_len, max(2, min(buffer_size, int(self.base[-1]))))
        self._perm_cache: dict[int, tuple[int, np.ndarray]] = {}  # store -> (epoch, order)
        self._choice_cache: tuple[int, np.ndarray] | None = None
        self._stream = {"slot": 0, "positions": [0] * len(self.pieces), "buffer": [], "pending": [], "batches": 0, "plans": 0}
        self.stats = {"dropped_too_long": sum(p.dropped for p in self.pieces), "split_too_long": sum(p.split for p in self.pieces),
                      "rows": 0, "segments": 0, "tokens": 0, "padding": 0}

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_examples(cls, examples: Sequence[dict], **kwargs) -> "PackedLoader":
        return cls(None, _stores=[_ListStore(examples)], **kwargs)

    @classmethod
    def from_mixture(cls, caches: dict[str, float], **kwargs) -> "PackedLoader":
        """`caches`: cache directory -> sampling rate."""
        dirs = list(caches)
        return cls(None, _stores=[ExampleCache(d) for d in dirs], _rates=[caches[d] for d in dirs], **kwargs)

    # ------------------------------------------------------------------ the example stream

    def _permutation(self, store: int, epoch: int) -> np.ndarray:
        cached = self._perm_cache.get(store)
        if cached is None or cached[0] != epoch:  # each task keeps only its current epoch's order
            n = len(self.pieces[store])
            perm = np.random.default_rng([self.seed, 0, store, epoch]).permutation(n) if self.shuffle else np.arange(n)
            cached = self._perm_cache[store] = (epoch, perm)
        return cached[1]

    def _choose_store(self, slot: int) -> int:
        if len(self.pieces) == 1:
            return 0
        block = slot // _CHOICE_BLOCK
        if self._choice_cache is None or self._choice_cache[0] != block:
            u = np.random.default_rng([self.seed, 1, block]).random(_CHOICE_BLOCK)
            self._choice_cache = (block, np.minimum(np.searchsorted(self.cum_rates, u, side="right"), len(self.pieces) - 1))
        return int(self._choice_cache[1][slot % _CHOICE_BLOCK])

    def _exhausted(self) -> bool:
        return self.num_epochs is not None and self._stream["positions"][0] >= self.num_epochs * len(self.pieces[0])

    def _draw(self) -> int:
        s = self._choose_store(self._stream["slot"])
        pos = self._stream["positions"][s]
        n = len(self.pieces[s])
        self._stream["slot"] += 1
        self._stream["positions"][s] = pos + 1
        return int(self.base[s] + self._permutation(s, pos // n)[pos % n])

    def _locate(self, ref: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.base, ref, side="right") - 1)
        return s, ref - int(self.base[s])

    def _length(self, ref: int) -> int:
        s, p = self._locate(ref)
        return int(self.pieces[s].length[p])

    def _plan_more(self) -> bool:
        """Fill the buffer and plan it; False when the stream has nothing more."""
        st = self._stream
        while len(st["buffer"]) < self.planner.buffer_size and not self._exhausted():
            st["buffer"].append(self._draw())
        if not st["buffer"]:
            return False
        final = self._exhausted()
        rows, carry = self.planner.plan(st["buffer"], [self._length(r) for r in st["buffer"]], final=final)
        if self.shuffle:
            np.random.default_rng([self.seed, 3, st["plans"]]).shuffle(rows)
        st["plans"] += 1
        st["pending"].extend(rows)
        st["buffer"] = [r for r, _ in carry]
        return True

    # ------------------------------------------------------------------ iteration

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        st = self._stream
        while len(st["pending"]) < self.global_batch_size:
            if not self._plan_more():
                break
        if not st["pending"]:
            raise StopIteration
        rows = st["pending"][: self.global_batch_size]
        del st["pending"][: self.global_batch_size]
        rows = rows + [[] for _ in range(self.global_batch_size - len(rows))]  # pad the last batch
        st["batches"] += 1
        mine = rows[self.process_index * self.rows_per_process:(self.process_index + 1) * self.rows_per_process]
        examples, local_rows = [], []
        self.last_batch_examples = []  # per local row: (store, example index) of each segment
        for row in mine:
            local_rows.append(list(range(len(examples), len(examples) + len(row))))
            self.last_batch_examples.append([])
            for ref in row:
                s, p = self._locate(ref)
                self.last_batch_examples[-1].append((s, int(self.pieces[s].example[p])))
                ex = self.pieces[s].get(p)
                if self.source_names:
                    ex["source"] = self._source_ids[s][self.pieces[s].source(p)]
                examples.append(ex)
        batch = pack_rows(examples, local_rows, self.seq_len, topk=self.pieces[0].store.k,
                          with_sources=bool(self.source_names))
        tokens = int(sum(len(e["ids"]) for e in examples))
        self.stats["rows"] += len(mine)
        self.stats["segments"] += len(examples)
        self.stats["tokens"] += tokens
        self.stats["padding"] += len(mine) * self.seq_len - tokens
        self.stats["non_padding"] = self.stats["tokens"] / max(1, self.stats["rows"] * self.seq_len)
        self.stats["examples_per_row"] = self.stats["segments"] / max(1, self.stats["rows"])
        return batch

    # ------------------------------------------------------------------ checkpointing

    @functools.cached_property
    def steps_per_epoch(self) -> int:
        """Global batches in one pass over every example (for a mixture: each task's examples
        once), packed as this loader packs; exact for a single task read with num_epochs=1."""
        if len(self.pieces) == 1:
            order = self._permutation(0, 0)
        else:
            n = int(self.base[-1])
            order = np.random.default_rng([self.seed, 2]).permutation(n) if self.shuffle else np.arange(n)
        lengths = np.concatenate([p.length for p in self.pieces])
        rows = sum(1 for _ in self.planner.rows((int(i), int(lengths[i])) for i in order))
        return max(1, -(-rows // self.global_batch_size))

    @property
    def epoch(self) -> int:
        return self._stream["positions"][0] // len(self.pieces[0])

    def state(self) -> dict[str, Any]:
        """JSON-serialisable position: restore() on a loader built with the same arguments
        continues with exactly the batches this one would produce next."""
        st = self._stream
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "position": st["slot"],
            "rng": {"seed": self.seed, "shuffle": self.shuffle},
            "positions": list(st["positions"]),
            "buffer": list(st["buffer"]),
            "pending": [list(r) for r in st["pending"]],
            "batches": st["batches"],
            "plans": st["plans"],
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise UserError(f"loader state: version: expected {STATE_VERSION}, got {state.get('version')}")
        if state["rng"] != {"seed": self.seed, "shuffle": self.shuffle}:
            raise UserError(f"loader state: rng {state['rng']} does not match this loader (seed {self.seed}, shuffle {self.shuffle})")
        if len(state["positions"]) != len(self.pieces):
            raise UserError(f"loader state: {len(state['positions'])} tasks, this loader has {len(self.pieces)}")
        self._stream = {
            "slot": int(state["position"]),
            "positions": [int(p) for p in state["positions"]],
            "buffer": [int(r) for r in state["buffer"]],
            "pending": [[int(r) for r in row] for row in state["pending"]],
            "batches": int(state["batches"]),
            "plans": int(state["plans"]),
        }


def default_cache_root() -> str:
    return os.environ.get("ORCA_JAX_CACHE_DIR") or DEFAULT_CACHE_ROOT


@gin.configurable(denylist=["mixture_or_task_name", "seq_len", "global_batch_size", "seed", "process_index", "process_count"])
def make_loader(mixture_or_task_name: str, *, cache_root: str | None = None, seq_len: int, global_batch_size: int, seed: int,
                num_epochs: int | None = None, shuffle: bool = True, buffer_size: int = 8192, too_long: str = "drop",
                process_index: int | None = None, process_count: int | None = None) -> PackedLoader:
    """A loader for a prepared task or mixture under `cache_root` (default: $ORCA_JAX_CACHE_DIR,
    else ./orca_jax_cache; see `orca-jax prepare`). Packing options can be set in gin, e.g.
    `make_loader.too_long = "split"`."""
    directory = os.path.join(cache_root or default_cache_root(), mixture_or_task_name)
    rates = read_mixture(directory)
    common = dict(seq_len=seq_len, global_batch_size=global_batch_size, seed=seed, num_epochs=num_epochs, shuffle=shuffle,
                  buffer_size=buffer_size, too_long=too_long, process_index=process_index, process_count=process_count)
    if rates is None:
        return PackedLoader(directory, **common)
    return PackedLoader.from_mixture({os.path.join(directory, task): rate for task, rate in rates.items()}, **common)


class Prefetcher:
    """Runs a PackedLoader `depth` batches ahead on a background thread, so the training step
    does not wait for packing. `state()` is the state after the last batch *handed out* (not the
    last one prepared), so checkpoints stay exact."""

    _DONE = object()

    def __init__(self, loader: PackedLoader, depth: int = 2):
        self.loader, self.depth = loader, depth
        self._consumed_state = loader.state()
        self._start()

    def _start(self) -> None:
        import queue
        import threading

        self._queue: "queue.Queue" = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()

        def work():
            try:
                for batch in self.loader:
                    if self._stop.is_set():
                        return
                    self._queue.put((batch, self.loader.state()))
            except BaseException as e:  # handed to the consumer, raised there
                self._queue.put((e, None))
                return
            self._queue.put((self._DONE, None))

        self._thread = threading.Thread(target=work, name="orca-jax-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item, state = self._queue.get()
        if item is self._DONE:
            self._queue.put((self._DONE, None))  # stay exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        self._consumed_state = state
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except Exception:
                self._thread.join(timeout=0.01)

    def state(self) -> dict[str, Any]:
        return self._consumed_state

    def restore(self, state: dict[str, Any]) -> None:
        self.close()
        self.loader.restore(state)
        self._consumed_state = state
        self._start()

    @property
    def stats(self) -> dict:
        return self.loader.stats

    @property
    def steps_per_epoch(self) -> int:
        return self.loader.steps_per_epoch
