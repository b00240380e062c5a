"""t5x's view of the trace tasks: the per-token loss mask that t5x's feature converters build from
the t5x trace tasks equals the one orca-jax's own loader (prepared cache + PackedLoader) builds
from the same traces, multi-turn and erased ones included; and the Vocabulary wraps the tokenizer."""

import json

import gin
import numpy as np
import pytest

pytest.importorskip("seqio")

import seqio  # noqa: E402

from orca_jax.data.loader import make_loader  # noqa: E402
from orca_jax.data.prepare import prepare  # noqa: E402
from orca_jax.data.system_messages import ORCA2_STRATEGIES  # noqa: E402
from orca_jax.data.tokenizer import load_tokenizer  # noqa: E402
from orca_jax.t5x.features import WeightedLMFeatureConverter  # noqa: E402
from orca_jax.t5x.vocabulary import TokenizerVocabulary  # noqa: E402
from tests.test_tasks import smollm2_path  # noqa: E402,F401  (the fixture: SmolLM2's tokenizer as a folder)

SEQ_LEN = 256


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture()
def registered(tmp_path, smollm2_path):
    """Single-turn Orca 2 traces (erased to the cautious message) and multi-turn ShareGPT ones."""
    from tasks.t5x_features import register_t5x_trace_tasks
    from tasks.traces import register_trace_tasks

    data = tmp_path / "data"
    data.mkdir()
    _write(data / "orca2.jsonl", [{"id": f"s{i}", "system_prompt": ORCA2_STRATEGIES["step_by_step"],
                                   "question": f"What is {i} times {i + 2}?", "response": f"{i} * {i + 2} = {i * (i + 2)}."}
                                  for i in range(7)])
    _write(data / "chats.jsonl", [{"conversations": [
        {"from": "human", "value": f"Name {i} colours."}, {"from": "gpt", "value": "Red, green" + ", blue" * i + "."},
        {"from": "human", "value": "And one more?"}, {"from": "gpt", "value": f"Colour number {i + 1}: teal."}]}
        for i in range(5)])
    (data / "mixtures.json").write_text(json.dumps({"stage": {"traces_orca2": 2, "traces_chats": 1}}))
    gin.bind_parameter("erasing_policy.per_task", {"traces_orca2": "cautious"})
    names = register_trace_tasks(data_dir=str(data), tokenizer_path=smollm2_path)
    return register_t5x_trace_tasks(names), tmp_path


def _loader_segments(task, cache_root):
    """(predicted token ids, their loss weights) per example, from orca-jax's loader."""
    prepare(task, str(cache_root))
    loader = make_loader(task, cache_root=str(cache_root), seq_len=SEQ_LEN, global_batch_size=2, seed=0,
                         num_epochs=1, process_index=0, process_count=1)
    segments = []
    for batch in loader:
        for row in range(batch["inputs"].shape[0]):
            for s in range(1, batch["segment_ids"][row].max() + 1):
                slots = np.flatnonzero(batch["segment_ids"][row] == s)[:-1]  # the last token predicts nothing
                segments.append((batch["targets"][row, slots].tolist(), batch["loss_weights"][row, slots].tolist()))
    return sorted(segments)


def _t5x_segments(task, converter, lengths):
    """The same, from the t5x task through a seqio feature converter (packed rows)."""
    ds = seqio.get_dataset(task, lengths, dataset_split="train", shuffle=False, num_epochs=1,
                           feature_converter=converter)
    segments = []
    for row in ds.as_numpy_iterator():
        for s in range(1, row["decoder_segment_ids"].max() + 1):
            slots = np.flatnonzero(row["decoder_segment_ids"] == s)[1:]  # slot 0 predicts the first token
            segments.append((row["decoder_target_tokens"][slots].tolist(),
                             row["decoder_loss_weights"][slots].astype(np.float32).tolist()))
    return sorted(segments)


def _through_last_weighted(segments):
    out = []
    for targets, weights in segments:
        end = max(i for i, w in enumerate(weights) if w > 0) + 1
        out.append((targets[:end], weights[:end]))
    return sorted(out)


def test_t5x_loss_mask_equals_the_loaders_multi_turn_and_erased(registered, tmp_path):
    names, _ = registered
    assert {"t5x_traces_orca2", "t5x_traces_chats", "t5x_stage", "t5x_prefix_stage"} <= set(names)
    converter = WeightedLMFeatureConverter(pack=True)
    for task in ("traces_orca2", "traces_chats"):
        expected = _loader_segments(task, tmp_path / "cache")
        assert len(expected) == (7 if task == "traces_orca2" else 5)
        got = _t5x_segments("t5x_" + task, converter, {"targets": SEQ_LEN})
        assert got == expected
    # Multi-turn: loss on both replies, not on the user turn between them.
    weights = np.array(expected[0][1])
    assert np.count_nonzero(np.diff(weights) > 0) == 2

    # Single-turn traces through seqio's own PrefixLM converter: the same weighted tokens.
    prefix = _t5x_segments("t5x_prefix_traces_orca2", seqio.DecoderFeatureConverter(pack=True),
                           {"inputs": SEQ_LEN, "targets": SEQ_LEN})
    assert prefix == _through_last_weighted(_loader_segments("traces_orca2", tmp_path / "cache"))

    # The mixture's rates carry over.
    mixture = seqio.get_mixture_or_task("t5x_stage")
    assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == {"t5x_traces_orca2": 2.0, "t5x_traces_chats": 1.0}


def test_prefix_task_refuses_multi_turn_traces(registered):
    ds = seqio.get_mixture_or_task("t5x_prefix_traces_chats").get_dataset(None, shuffle=False)
    with pytest.raises(Exception, match="task t5x_prefix_traces_chats example 0: .*several spans"):
        next(ds.as_numpy_iterator())


def test_vocabulary_wraps_the_tokenizer(smollm2_path):
    tokenizer = load_tokenizer(smollm2_path)
    im_end = tokenizer.token_to_id("<|im_end|>")
    vocabulary = TokenizerVocabulary(tokenizer, eos_id=im_end)
    text = "Orca 2 explains: 12 * 3 = 36, step by step."
    ids = tokenizer.encode(text, add_bos=False)
    assert vocabulary.encode(text) == ids
    assert vocabulary.encode_tf(text).numpy().tolist() == ids
    assert vocabulary.vocab_size == tokenizer.vocab_size and vocabulary.eos_id == im_end
    # decode stops at the end of the reply and drops t5x's padding after it
    assert vocabulary.decode(ids + [im_end, 5, 6, 0, 0]) == text
    assert vocabulary.decode_tf(np.array([ids + [im_end, 0]], np.int32)).numpy()[0].decode() == text
