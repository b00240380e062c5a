"""SeqIO trace Tasks/Mixtures, `orca-jax prepare` caches (counts, skips, erasing) and reading them back."""

import json
import re

import gin
import numpy as np
import pytest

pytest.importorskip("seqio")

from orca_jax.cli import main  # noqa: E402
from orca_jax.data.cache import ExampleCache  # noqa: E402
from orca_jax.data.chat import tokenize_trace  # noqa: E402
from orca_jax.data.loader import make_loader  # noqa: E402
from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE, ORCA2_STRATEGIES, erase_prompt  # noqa: E402
from orca_jax.data.tokenizer import load_tokenizer  # noqa: E402
from orca_jax.data.traces import read_traces  # noqa: E402
from orca_jax.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def smollm2_path(tmp_path_factory, smollm2_tokenizer):
    """SmolLM2's tokenizer saved once as a fast-loading HF folder."""
    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    smollm2_tokenizer.save(str(folder))
    return str(folder)


def _write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines), encoding="utf-8")


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _write(d / "chatgpt.jsonl", [
        {"id": f"q{i}", "system_prompt": ORCA2_STRATEGIES["step_by_step"], "question": f"What is {i}+{i}?", "response": f"{i}+{i} = {2 * i}."}
        for i in range(6)
    ] + ['{"id": "broken", "question": ', {"id": "long", "system_prompt": "", "question": "Say a lot.", "response": "word " * 400}])
    _write(d / "gpt4.jsonl", [
        {"conversations": [{"from": "human", "value": f"Explain {i}."}, {"from": "gpt", "value": f"Because {i} is {i}."}]} for i in range(4)
    ])
    (d / "mixtures.json").write_text(json.dumps({"orca_stage": {"traces_chatgpt": 3, "traces_gpt4": 1}}))
    return d


def _run_prepare(data_dir, cache, smollm2_path, *extra):
    return main(["prepare", "--data_dir", str(data_dir), "--cache_dir", str(cache), "--tokenizer", smollm2_path, *extra])


def test_prepare_caches_the_tokenized_traces_with_counts(data_dir, tmp_path, smollm2_path, capsys):
    cache = tmp_path / "cache"
    rc = _run_prepare(data_dir, cache, smollm2_path, "--task", "traces_chatgpt", "--on_bad_record", "skip", "--max_length", "300")
    assert rc == 0
    out = capsys.readouterr().out
    assert "traces_chatgpt: 6 examples" in out and "skipped 2" in out
    stored = ExampleCache(str(cache / "traces_chatgpt"))
    meta = stored.metadata
    assert meta["records_read"] == 7 and meta["skipped"] == 2
    assert meta["skipped_per_reason"]["longer than max_length 300"] == 1
    assert sum(n for r, n in meta["skipped_per_reason"].items() if "broken JSON" in r) == 1
    assert (meta["template"], meta["erasing_policy"], meta["tokenizer"]["path"]) == ("chatml", None, smollm2_path)
    # The cache holds exactly what the chat template makes of each good trace, in file order.
    tok = load_tokenizer(smollm2_path)
    good = [t for t in read_traces(str(data_dir / "chatgpt.jsonl"), on_bad_record="skip") if t.id != "long"]
    assert len(stored) == len(good)
    for i, trace in enumerate(good):
        expected = tokenize_trace(trace, tok, "chatml")
        np.testing.assert_array_equal(stored.example(i)["ids"], expected["ids"])
        np.testing.assert_array_equal(stored.example(i)["loss_weights"], expected["loss_weights"])
    batch = next(make_loader("traces_chatgpt", cache_root=str(cache), seq_len=256, global_batch_size=2, seed=0, process_index=0, process_count=1))
    assert batch["inputs"].shape == (2, 256) and batch["segment_ids"].max() >= 1

    # inspect: the marked (loss-weighted) text of every segment is exactly a teacher response + end of turn.
    capsys.readouterr()
    assert main(["inspect", "--task", "traces_chatgpt", "--cache_dir", str(cache), "--n", "1", "--seq_len", "512", "--color", "never"]) == 0
    out = capsys.readouterr().out
    marked = re.findall("⟦(.*?)⟧", out, flags=re.S)
    assert len(marked) == 6 and out.count("── segment") == 6  # all six examples fit one row of 512
    assert sorted(marked) == sorted(t.response + "<|im_end|>" for t in good)
    assert "example lengths (tokens):" in out and "non-padding" in out
    assert main(["inspect", "--task", "traces_chatgpt", "--cache_dir", str(cache), "--n", "1", "--seq_len", "512", "--color", "always"]) == 0
    assert "\033[32m" in capsys.readouterr().out


def test_bad_record_raises_by_default(data_dir, tmp_path, smollm2_path, capsys):
    assert _run_prepare(data_dir, tmp_path / "c", smollm2_path, "--task", "traces_chatgpt") == 2
    assert "chatgpt.jsonl:7: (line): broken JSON" in capsys.readouterr().err


def test_erasing_by_source_in_one_mixture(tmp_path, smollm2_path, capsys):
    """Orca 2's last stage: Orca 1's GPT-4 traces (OpenOrca Parquet) keep their system messages,
    Orca 2's strategy-prompted data (OpenAI messages) get the cautious message; read back from the cache."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orca_jax.data.system_messages import ORCA1_SYSTEM_MESSAGES

    data = tmp_path / "data"
    data.mkdir()
    orca1 = [{"id": f"niv.{i}", "system_prompt": ORCA1_SYSTEM_MESSAGES[(2, 7, 16)[i % 3]], "question": f"What is {i}+1?",
              "response": f"{i}+1 = {i + 1}."} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(orca1), str(data / "flan1m_gpt4.parquet"))
    strategies = list(ORCA2_STRATEGIES.values())
    orca2 = [{"messages": [{"role": "system", "content": strategies[i % 5]}, {"role": "user", "content": f"Double {i}."},
                           {"role": "assistant", "content": f"{2 * i}."}]} for i in range(5)]
    _write(data / "orca2_data.jsonl", orca2)
    cache = tmp_path / "cache"
    mixture = "--gin", "register_trace_mixtures.mixtures = {'orca2_gpt4': {'traces_flan1m_gpt4': 2, 'traces_orca2_data': 1}}"
    # erasing keyed on the mixture would erase Orca 1's messages too: refused
    assert _run_prepare(data, cache, smollm2_path, "--task", "orca2_gpt4", *mixture,
                        "--gin", "erasing_policy.per_task = {'orca2_gpt4': 'cautious'}") == 2
    assert "erasing_policy.per_task: orca2_gpt4 is a mixture" in capsys.readouterr().err
    gin.clear_config()  # prepare locks gin's configuration, as train does
    assert _run_prepare(data, cache, smollm2_path, "--task", "orca2_gpt4", *mixture,
                        "--gin", "erasing_policy.per_task = {'traces_orca2_data': 'cautious'}") == 0
    kept = ExampleCache(str(cache / "orca2_gpt4" / "tasks" / "traces_flan1m_gpt4"))
    erased = ExampleCache(str(cache / "orca2_gpt4" / "tasks" / "traces_orca2_data"))
    assert (kept.metadata["erasing_policy"], erased.metadata["erasing_policy"]) == (None, "cautious")
    assert [kept.system(i) for i in range(len(kept))] == [r["system_prompt"] for r in orca1]
    assert [erased.system(i) for i in range(len(erased))] == [CAUTIOUS_SYSTEM_MESSAGE] * 5
    tok = load_tokenizer(smollm2_path)
    for i in range(5):  # the tokens carry the recorded message: the teacher's, or the cautious one with no strategy left
        assert orca1[i]["system_prompt"] in tok.decode(kept.example(i)["ids"])
        text = tok.decode(erased.example(i)["ids"])
        assert CAUTIOUS_SYSTEM_MESSAGE in text and not any(s in text for s in strategies)
    first = next(read_traces(str(data / "orca2_data.jsonl")))
    np.testing.assert_array_equal(erased.example(0)["ids"], tokenize_trace(erase_prompt(first, "cautious"), tok, "chatml")["ids"])

    # inspect names each packed example's task and system message
    capsys.readouterr()
    assert main(["inspect", "--task", "orca2_gpt4", "--cache_dir", str(cache), "--n", "2", "--seq_len", "512", "--color", "never"]) == 0
    headers = re.findall(r"── segment \d+ \(\d+ tokens\) · (\S+) · system ([^:]+): (.*) ──", capsys.readouterr().out)
    assert {task for task, _, _ in headers} == {"traces_flan1m_gpt4", "traces_orca2_data"}
    for task, how, shown in headers:
        if task == "traces_orca2_data":
            assert how == "erased to cautious" and shown == repr(CAUTIOUS_SYSTEM_MESSAGE[:60] + "…")
        else:
            assert how == "teacher's" and any(shown.strip("'…") in r["system_prompt"] for r in orca1)


def test_unknown_task_is_a_user_error(data_dir, tmp_path, smollm2_path, capsys):
    assert _run_prepare(data_dir, tmp_path / "c", smollm2_path, "--task", "traces_nope") == 2
    assert "traces_nope" in capsys.readouterr().err


def test_teacher_topk_goes_through_prepare_into_packed_batches(tmp_path, smollm2_path):
    from orca_jax.data.traces import Trace, write_traces

    tok = load_tokenizer(smollm2_path)
    rng = np.random.default_rng(0)
    traces = []
    for i in range(4):
        trace = Trace(id=f"t{i}", system="Be brief.", turns=[{"role": "user", "content": f"Count to {i + 2}."},
                                                             {"role": "assistant", "content": " ".join(map(str, range(1, i + 3)))}])
        n = int(tokenize_trace(trace, tok, "chatml")["loss_weights"].sum()) - (1 if i else 0)  # t0 also covers end-of-turn
        n -= 2 if i == 3 else 0  # t3's top-k does not match its response: skipped and counted
        trace.teacher_topk_ids = rng.integers(0, 1000, (n, 2)).tolist()
        trace.teacher_topk_logprobs = (-rng.random((n, 2))).round(4).tolist()
        traces.append(trace)
    data = tmp_path / "data"
    data.mkdir()
    write_traces(str(data / "local_teacher.jsonl"), traces)
    cache = tmp_path / "cache"
    assert _run_prepare(data, cache, smollm2_path, "--task", "traces_local_teacher", "--on_bad_record", "skip") == 0
    stored = ExampleCache(str(cache / "traces_local_teacher"))
    assert len(stored) == 3 and stored.k == 2 and stored.metadata["skipped"] == 1
    assert "teacher top-k has" in next(iter(stored.metadata["skipped_per_reason"]))
    for i in range(3):
        expected = tokenize_trace(traces[i], tok, "chatml")
        for key in ("ids", "teacher_topk_ids", "teacher_topk_logprobs"):
            np.testing.assert_array_equal(stored.example(i)[key], expected[key])
    batch = next(make_loader("traces_local_teacher", cache_root=str(cache), seq_len=128, global_batch_size=1, seed=0,
                             process_index=0, process_count=1))
    assert batch["teacher_topk_ids"].shape == (1, 128, 2)
    weighted = batch["loss_weights"][0] > 0
    # Every weighted target has the teacher's distribution (finite log-probs in the first slot).
    assert (batch["teacher_topk_logprobs"][0][weighted][:, 0] > -100).all()


def test_missing_chatml_tokens_are_added_and_reported(data_dir, tmp_path, capsys):
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from orca_jax.data.tokenizer import Tokenizer

    backend = BackendTokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(["What is 1+1? 1+1 = 2. Explain 3. Because 3 is 3."] * 5,
                                trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    folder = tmp_path / "tiny_tokenizer"
    Tokenizer(backend, eos_id=1).save(str(folder))
    before = load_tokenizer(str(folder)).vocab_size
    cache = tmp_path / "cache"
    assert _run_prepare(data_dir, cache, str(folder), "--task", "traces_gpt4") == 0
    assert f"resize the model's embeddings to vocab_size {before + 2}" in capsys.readouterr().out
    meta = ExampleCache(str(cache / "traces_gpt4")).metadata
    assert meta["tokenizer"]["added_tokens"] == ["<|im_start|>", "<|im_end|>"] and meta["tokenizer"]["vocab_size"] == before + 2
    ids = ExampleCache(str(cache / "traces_gpt4")).example(0)["ids"]
    assert ids[0] == before and ids.max() == before + 1  # the new tokens' ids, right after the old vocabulary


FLAN_V2 = [  # FLAN-v2 submix rows: zero-shot and few-shot templates, options and not
    {"inputs": "Premise: The cat sat.\nHypothesis: A cat sat.\nOPTIONS:\n- yes\n- no", "targets": "yes",
     "_task_source": "Flan2021", "_task_name": "anli_r1", "_template_type": "zs_opt"},
    {"inputs": "Q: What is 2+3?\nA: 5\n\nQ: What is 4+4?\nA:", "targets": "4+4 = 8, so the answer is 8.",
     "_task_source": "CoT", "_task_name": "gsm8k", "_template_type": "fs_noopt"},
    {"inputs": "Translate to French: good morning", "targets": "bonjour", "_task_source": "NIv2",
     "_task_name": "task1", "_template_type": "zs_noopt"},
    {"inputs": "Answer nothing.", "targets": "", "_task_source": "T0", "_task_name": "t0", "_template_type": "fs_opt"},
]


def test_flan_v2_submix_trains_with_loss_exactly_on_the_targets(tmp_path, smollm2_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "flan_v2.jsonl", FLAN_V2)
    cache = tmp_path / "cache"
    assert _run_prepare(data, cache, smollm2_path, "--task", "traces_flan_v2", "--on_bad_record", "skip") == 0
    out = capsys.readouterr().out
    assert "traces_flan_v2: 3 examples" in out and "skipped 1: targets: empty (nothing to train on)" in out
    stored = ExampleCache(str(cache / "traces_flan_v2"))
    tok = load_tokenizer(smollm2_path)
    end_of_turn = tok.token_to_id("<|im_end|>")
    for i, record in enumerate(FLAN_V2[:3]):
        ex = stored.example(i)
        weighted = ex["ids"][ex["loss_weights"] > 0].tolist()
        # exactly the target's own tokens (tokenized alone), then the end of the assistant turn
        assert weighted == tok.encode(record["targets"], add_bos=False) + [end_of_turn]
        assert record["inputs"] in tok.decode(ex["ids"][ex["loss_weights"] == 0], skip_special_tokens=False)
    # a stage whose examples all exceed its sequence length is an error naming the files and reasons
    with pytest.raises(UserError, match=r"traces_flan_v2: no examples from .*flan_v2.jsonl .*3 x longer than seq_len 8"):
        make_loader("traces_flan_v2", cache_root=str(cache), seq_len=8, global_batch_size=1, seed=0, process_index=0, process_count=1)


def test_a_task_whose_every_record_is_skipped_fails_with_the_reasons(tmp_path, smollm2_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "flan_v2.jsonl", [FLAN_V2[3], dict(FLAN_V2[0], inputs=""), '{"inputs": '])
    assert _run_prepare(data, tmp_path / "cache", smollm2_path, "--task", "traces_flan_v2", "--on_bad_record", "skip") == 2
    err = capsys.readouterr().err
    assert f"task traces_flan_v2: no examples from {data / 'flan_v2.jsonl'} (0 records read" in err
    for reason in ("1 x targets: empty (nothing to train on)", "1 x inputs: empty", "1 x (line): broken JSON"):
        assert reason in err
