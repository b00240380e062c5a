"""PackedLoader: determinism, exact resume, process sharding, epochs, over-long examples, caches."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from orca_jax.data.cache import write_cache, write_mixture
from orca_jax.data.loader import PackedLoader, make_loader
from orca_jax.errors import UserError

SEQ = 32


def _examples(n, seed=0, max_len=SEQ, topk=None):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = int(rng.integers(2, max_len + 1))
        ex = {"ids": rng.integers(1, 500, m).astype(np.int32), "loss_weights": rng.integers(0, 2, m).astype(np.float32)}
        if topk:
            ex["teacher_topk_ids"] = rng.integers(0, 500, (m, topk)).astype(np.int32)
            ex["teacher_topk_logprobs"] = -rng.random((m, topk)).astype(np.float32)
        out.append(ex)
    return out


def _take(loader, n):
    return [next(loader) for _ in range(n)]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def _segments(batch):
    """Each packed example's input tokens, as tuples."""
    out = []
    for r in range(batch["inputs"].shape[0]):
        seg = batch["segment_ids"][r]
        out += [tuple(batch["inputs"][r][seg == s]) for s in range(1, seg.max() + 1)]
    return out


KW = dict(seq_len=SEQ, global_batch_size=4, process_index=0, process_count=1, buffer_size=16)


def test_same_seed_same_batches_and_other_seed_differs():
    ex = _examples(60)
    a = _take(PackedLoader.from_examples(ex, seed=3, **KW), 12)
    _same(a, _take(PackedLoader.from_examples(ex, seed=3, **KW), 12))
    b = _take(PackedLoader.from_examples(ex, seed=4, **KW), 12)
    assert any(not np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, b))


@pytest.mark.parametrize("stop_after", [1, 5, 9])
def test_restored_state_gives_the_remaining_batches(stop_after):
    ex = _examples(50, topk=2)
    uninterrupted = _take(PackedLoader.from_examples(ex, seed=1, **KW), 20)
    first = PackedLoader.from_examples(ex, seed=1, **KW)
    _take(first, stop_after)
    state = json.loads(json.dumps(first.state()))  # goes through a checkpoint as JSON
    resumed = PackedLoader.from_examples(ex, seed=1, **KW)
    resumed.restore(state)
    _same(_take(resumed, 20 - stop_after), uninterrupted[stop_after:])


def test_processes_together_see_the_single_process_batches():
    ex = _examples(70)
    kw = dict(KW, global_batch_size=6)
    single = _take(PackedLoader.from_examples(ex, seed=5, **kw), 8)
    shards = [_take(PackedLoader.from_examples(ex, seed=5, **dict(kw, process_index=p, process_count=3)), 8) for p in range(3)]
    for step, batch in enumerate(single):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([s[step][key] for s in shards]), batch[key])


def test_one_epoch_sees_every_example_once_then_stops():
    ex = _examples(37)
    loader = PackedLoader.from_examples(ex, seed=0, num_epochs=1, **KW)
    batches = list(loader)
    seen = sorted(s for b in batches for s in _segments(b))
    assert seen == sorted(tuple(e["ids"]) for e in ex)
    assert all(b["inputs"].shape == (4, SEQ) for b in batches)  # last batch padded, not short
    assert loader.stats["segments"] == 37 and 0 < loader.stats["non_padding"] <= 1


@pytest.mark.parametrize("batch", [1, 3])
def test_steps_per_epoch_counts_the_batches_of_one_epoch(batch):
    ex = _examples(57)
    kw = dict(KW, global_batch_size=batch)
    loader = PackedLoader.from_examples(ex, seed=2, num_epochs=1, **kw)
    assert loader.steps_per_epoch == len(list(loader))


def test_epochs_reshuffle():
    ex = _examples(40)
    loader = PackedLoader.from_examples(ex, seed=0, num_epochs=2, buffer_size=40, **{k: v for k, v in KW.items() if k != "buffer_size"})
    segs = [s for b in loader for s in _segments(b)]
    assert sorted(segs) == sorted([tuple(e["ids"]) for e in ex] * 2)


def test_batches_are_not_ordered_by_length():
    """The planner emits a buffer's rows longest example first; batches must mix lengths,
    or training would see all long examples, then all short ones. One buffer holds the whole
    data here, so without shuffling the rows' longest examples would fall monotonically."""
    kw = {**KW, "buffer_size": 400, "global_batch_size": 1}
    loader = PackedLoader.from_examples(_examples(300), seed=0, num_epochs=1, **kw)
    longest = [int(np.bincount(b["segment_ids"][0])[1:].max()) for b in loader]
    rank_correlation = np.corrcoef(np.argsort(np.argsort(longest)), np.arange(len(longest)))[0, 1]
    assert abs(rank_correlation) < 0.2, rank_correlation


def test_over_long_examples_are_dropped_and_counted_never_truncated():
    ex = _examples(20) + [{"ids": np.arange(1, SEQ + 6, dtype=np.int32), "loss_weights": np.ones(SEQ + 5, np.float32)}]
    loader = PackedLoader.from_examples(ex, seed=0, num_epochs=1, **KW)
    segs = [s for b in loader for s in _segments(b)]
    assert loader.stats["dropped_too_long"] == 1 and len(segs) == 20
    assert all(len(s) <= SEQ for s in segs)


def test_split_windows_predict_every_target_exactly_once():
    n = 3 * SEQ + 5
    long = {"ids": np.arange(1, n + 1, dtype=np.int32), "loss_weights": np.ones(n, np.float32)}
    loader = PackedLoader.from_examples([long], seed=0, num_epochs=1, too_long="split", **KW)
    batches = list(loader)
    predicted = sorted(int(t) for b in batches for t in b["targets"][b["loss_weights"] > 0])
    assert predicted == list(range(2, n + 1)) and loader.stats["split_too_long"] == 1


def test_prepared_cache_gives_the_same_batches_as_in_memory(tmp_path):
    ex = _examples(45, topk=3)
    write_cache(str(tmp_path / "t"), ex, {"task": "t"})
    cached = PackedLoader(str(tmp_path / "t"), seed=2, **KW)
    in_memory = PackedLoader.from_examples([dict(e, source="t") for e in ex], seed=2, **KW)
    _same(_take(cached, 10), _take(in_memory, 10))
    assert cached.source_names == in_memory.source_names == ["t"]
    assert "source_ids" not in next(PackedLoader.from_examples(ex, seed=2, **KW))


def test_source_ids_name_each_tokens_example_source():
    ex = [dict(e, source=f"s{i % 3}") for i, e in enumerate(_examples(60, seed=5))]
    loader = PackedLoader.from_examples(ex, seed=1, **KW)
    assert loader.source_names == ["s0", "s1", "s2"]
    by_tokens = {tuple(e["ids"]): loader.source_names.index(e["source"]) for e in ex}
    for batch in _take(loader, 8):
        for r in range(batch["inputs"].shape[0]):
            seg = batch["segment_ids"][r]
            assert (batch["source_ids"][r][seg == 0] == -1).all()
            for s in range(1, seg.max() + 1):
                ids = batch["source_ids"][r][seg == s]
                assert (ids == by_tokens[tuple(batch["inputs"][r][seg == s])]).all()
    with pytest.raises(UserError, match="source"):
        PackedLoader.from_examples(ex[:2] + _examples(2), seed=1, **KW)


def test_mixture_samples_tasks_by_rate_deterministically(tmp_path):
    a = [{"ids": np.full(8, 1, np.int32), "loss_weights": np.ones(8, np.float32)} for _ in range(30)]
    b = [{"ids": np.full(8, 2, np.int32), "loss_weights": np.ones(8, np.float32)} for _ in range(30)]
    write_cache(str(tmp_path / "mix" / "a"), a, {})
    write_cache(str(tmp_path / "mix" / "b"), b, {})
    write_mixture(str(tmp_path / "mix"), {"a": 3.0, "b": 1.0})  # task caches relative to the mixture
    kw = dict(KW, global_batch_size=8)
    batches = _take(make_loader("mix", cache_root=str(tmp_path), seed=0, **kw), 50)
    _same(batches, _take(make_loader("mix", cache_root=str(tmp_path), seed=0, **kw), 50))
    firsts = np.array([s[0] for b in batches for s in _segments(b)])
    assert abs((firsts == 1).mean() - 0.75) < 0.05
    # each task is a source: a token's source is the task its example was drawn from
    assert make_loader("mix", cache_root=str(tmp_path), seed=0, **kw).source_names == ["a", "b"]
    for b in batches:
        real = b["segment_ids"] > 0
        np.testing.assert_array_equal(b["source_ids"][real], b["inputs"][real] - 1)
    with pytest.raises(UserError, match="num_epochs"):
        make_loader("mix", cache_root=str(tmp_path), seed=0, num_epochs=1, **kw)


def test_packing_options_from_gin(tmp_path):
    import gin

    n = 2 * SEQ
    write_cache(str(tmp_path / "t"), [{"ids": np.arange(1, n + 1, dtype=np.int32), "loss_weights": np.ones(n, np.float32)}], {})
    with gin.unlock_config():
        gin.parse_config(["make_loader.too_long = 'split'", "make_loader.num_epochs = 1"])
    try:
        loader = make_loader("t", cache_root=str(tmp_path), seed=0, **KW)
    finally:
        gin.clear_config()
    assert len(list(loader)) == 1 and loader.stats["split_too_long"] == 1


def test_missing_cache_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="prepare"):
        make_loader("nope", cache_root=str(tmp_path), seed=0, **KW)


def test_loader_runs_without_tensorflow_or_seqio(tmp_path):
    write_cache(str(tmp_path / "t"), _examples(10), {})
    code = (
        "import sys\n"
        "from orca_jax.data.loader import make_loader\n"
        f"b = next(make_loader('t', cache_root={str(tmp_path)!r}, seq_len=32, global_batch_size=2, seed=0, process_index=0, process_count=1))\n"
        "assert b['inputs'].shape == (2, 32)\n"
        "bad = [m for m in ('tensorflow', 'seqio') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 0, result.stderr


def test_prefetcher_hands_out_the_same_batches_with_exact_state():
    from orca_jax.data.loader import Prefetcher

    ex = _examples(50)
    plain = PackedLoader.from_examples(ex, seed=7, **KW)
    expected, states = [], []
    for _ in range(12):
        expected.append(next(plain))
        states.append(plain.state())
    ahead = Prefetcher(PackedLoader.from_examples(ex, seed=7, **KW), depth=3)
    got = _take(ahead, 5)
    assert ahead.state() == states[4]  # not the state of the batches prepared ahead
    ahead.restore(states[2])
    got += _take(ahead, 9)
    _same(got, expected[:5] + expected[3:12])
    ahead.close()
    finite = Prefetcher(PackedLoader.from_examples(ex, seed=7, num_epochs=1, **KW))
    assert len(list(finite)) == PackedLoader.from_examples(ex, seed=7, num_epochs=1, **KW).steps_per_epoch
    with pytest.raises(StopIteration):
        next(finite)
