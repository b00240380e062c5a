"""`orca-jax convert / generate / score` on a tiny GGUF model, checked against transformers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from orca_jax.cli import main
from orca_jax.model.loading import load_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
from tiny_gguf import tiny_hf_model, write_gguf  # noqa: E402  (needs torch/transformers)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", tiny_hf_model("llama", seed=3))


@pytest.fixture(scope="module")
def hf_export(tiny_gguf, tmp_path_factory):
    target = tmp_path_factory.mktemp("export") / "hf"
    assert main(["convert", "--from", str(tiny_gguf), "--to", str(target), "--format", "hf"]) == 0
    model = transformers.AutoModelForCausalLM.from_pretrained(str(target), dtype=torch.float32).eval()
    return target, model, transformers.AutoTokenizer.from_pretrained(str(target))


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["generate", "score", "convert"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: orca-jax {command}" in capsys.readouterr().out


def test_convert_to_hf_reloads_in_transformers_with_same_logits(tiny_gguf, hf_export):
    _, reference, ref_tokenizer = hf_export
    ours = load_model(tiny_gguf)
    from orca_jax.model.decoder import apply

    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    ids = ours.tokenizer.encode_chat(messages, add_generation_prompt=True)
    ref_ids = ref_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ids == list(ref_ids["input_ids"] if hasattr(ref_ids, "keys") else ref_ids)
    tokens = np.array([ids], np.int32)
    logits = np.asarray(apply(ours.config, ours.params, tokens, np.arange(len(ids))[None], np.ones_like(tokens)))
    with torch.no_grad():
        ref_logits = reference(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    assert np.abs(logits - ref_logits).max() <= 1e-4


def _chat_ids(ref_tokenizer, messages, **kwargs):
    ids = ref_tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_score_matches_transformers(tiny_gguf, hf_export, capsys):
    _, reference, ref_tokenizer = hf_export
    user = {"role": "user", "content": "What is 2+3?"}
    reply = {"role": "assistant", "content": "2+3 = 5."}
    for extra, text in [((), "The cat sat on the mat."), (("--chat",), user["content"]),
                        (("--assistant", reply["content"]), user["content"])]:
        code, out, _ = _run(capsys, "score", "--model", tiny_gguf, "--text", text, *extra)
        assert code == 0
        result = json.loads(out)
        if not extra:
            expected_ids = ref_tokenizer(text)["input_ids"]
        else:
            expected_ids = _chat_ids(ref_tokenizer, [user] + ([reply] if "--assistant" in extra else []))
        assert result["token_ids"] == expected_ids
        assert result["tokens"] == [ref_tokenizer.decode([i]) for i in expected_ids]
        with torch.no_grad():
            logits = reference(torch.tensor([expected_ids])).logits[0].double()
        ref_logprobs = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(expected_ids[1:])[:, None])[:, 0]
        assert len(result["logprobs"]) == len(expected_ids) and result["logprobs"][0] is None  # nothing predicts token 0
        assert "no context" in result["note"]
        np.testing.assert_allclose(result["logprobs"][1:], ref_logprobs.numpy(), atol=1e-4)
        assert result["total_logprob"] == pytest.approx(float(ref_logprobs.sum()), abs=1e-3)
        if "--assistant" in extra:  # log p(reply | prompt): the tokens after the generation prompt
            start = len(_chat_ids(ref_tokenizer, [user], add_generation_prompt=True))
            assert result["assistant"]["first_token"] == start
            assert ref_tokenizer.decode(expected_ids[start:]).startswith(reply["content"])
            assert result["assistant"]["logprob"] == pytest.approx(float(ref_logprobs[start - 1:].sum()), abs=1e-3)


def test_generate_greedy_matches_transformers(tiny_gguf, hf_export, capsys):
    _, reference, ref_tokenizer = hf_export
    code, out, _ = _run(capsys, "generate", "--model", tiny_gguf, "--prompt", "Count to five.",
                        "--system", "Be brief.", "--max_new_tokens", 12, "--json")
    assert code == 0
    result = json.loads(out)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to five."}]
    prompt = ref_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    with torch.no_grad():
        out_ids = reference.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):]
    assert result["token_ids"] == out_ids.tolist()
    assert result["text"] == ref_tokenizer.decode(out_ids, skip_special_tokens=True)


def test_generate_sampling_is_seeded(tiny_gguf, capsys):
    argv = ["generate", "--model", tiny_gguf, "--prompt", "hi", "--max_new_tokens", 16, "--temperature", 1.0,
            "--top_p", 0.9, "--json"]
    outputs = [json.loads(_run(capsys, *argv, "--seed", seed)[1])["token_ids"] for seed in (1, 1, 2)]
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_convert_to_orbax_then_generate(tiny_gguf, tmp_path, capsys):
    target = tmp_path / "orbax"
    assert _run(capsys, "convert", "--from", tiny_gguf, "--to", target, "--format", "orbax")[0] == 0
    argv = ["--prompt", "hello", "--max_new_tokens", 6, "--json"]
    from_orbax = _run(capsys, "generate", "--model", target, *argv)[1]
    assert from_orbax == _run(capsys, "generate", "--model", tiny_gguf, *argv)[1]


def _assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_user_errors_are_one_line(tiny_gguf, tmp_path, capsys):
    missing = tmp_path / "missing.gguf"
    _assert_one_line_error(*_run(capsys, "generate", "--model", missing, "--prompt", "x")[::2],
                           str(missing), "no such file")

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    _assert_one_line_error(*_run(capsys, "score", "--model", bert, "--text", "x")[::2], "model_type 'bert'")

    hf = tiny_hf_model("llama")
    block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
    q81 = write_gguf(tmp_path / "q81.gguf", hf, raw_tensors={
        "blk.1.attn_v.weight": (np.zeros((32, 64 // block * block_bytes), np.uint8), gguf.GGMLQuantizationType.Q8_1)})
    _assert_one_line_error(*_run(capsys, "convert", "--from", q81, "--to", tmp_path / "out")[::2],
                           str(q81), "blk.1.attn_v.weight", "Q8_1")

    shape = write_gguf(tmp_path / "shape.gguf", hf, metadata_overrides={"embedding_length": 48})
    _assert_one_line_error(*_run(capsys, "score", "--model", shape, "--text", "x")[::2], str(shape), "has shape")

    # Byte-level vocabulary without merges: one token per character, context 64.
    _assert_one_line_error(*_run(capsys, "score", "--model", tiny_gguf, "--text", "y" * 100)[::2],
                           "100 tokens", "context of 64")
    _assert_one_line_error(*_run(capsys, "generate", "--model", tiny_gguf, "--prompt", "y" * 100)[::2],
                           "exceeds the model's context of 64")

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    _assert_one_line_error(*_run(capsys, "convert", "--from", tiny_gguf, "--to", occupied)[::2],
                           str(occupied), "not an empty folder")


def test_console_entry_point_prints_no_traceback(tmp_path):
    missing = tmp_path / "nope.gguf"
    proc = subprocess.run([sys.executable, "-m", "orca_jax.cli", "score", "--model", str(missing), "--text", "x"],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"orca-jax score: error: {missing}: no such file or directory"
