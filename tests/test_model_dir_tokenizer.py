"""A run's MODEL_DIR carries the tokenizer and the chat template it trained with: a LLaMA-style
tokenizer without a chat template, ChatML data, a few training steps, then `orca-jax eval
--model MODEL_DIR` prompts exactly as training rendered, and `convert --format hf` hands the
same template to transformers."""

import json
import os

import pytest

pytest.importorskip("seqio")

from tokenizers import Tokenizer as BackendTokenizer  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

from orca_jax.cli import main  # noqa: E402
from orca_jax.data.chat import render  # noqa: E402
from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE  # noqa: E402
from orca_jax.data.tokenizer import Tokenizer, load_tokenizer  # noqa: E402
from orca_jax.data.traces import Trace  # noqa: E402

QUESTIONS = [f"If you take {i} steps forward and {i} steps back, are you at the start?" for i in range(1, 9)]


def _llama_style_tokenizer(folder):
    """Metaspace BPE with <unk>/<s>/</s>, BOS added, no chat template: LLaMA-2's conventions."""
    backend = BackendTokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    corpus = QUESTIONS + ["Yes. No. Options: Take step forward back turn around start", CAUTIOUS_SYSTEM_MESSAGE] * 3
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    Tokenizer(backend, bos_id=1, eos_id=2, add_bos=True).save(str(folder))
    return str(folder)


def test_eval_and_convert_work_on_the_model_dir_of_a_llama_style_run(tmp_path, capsys):
    tokenizer_path = _llama_style_tokenizer(tmp_path / "llama_tokenizer")
    assert load_tokenizer(tokenizer_path).chat_template is None
    base = load_tokenizer(tokenizer_path).vocab_size  # ChatML's tokens follow it, in the documented order
    data = tmp_path / "data"
    data.mkdir()
    (data / "steps.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "system", "content": CAUTIOUS_SYSTEM_MESSAGE}, {"role": "user", "content": q},
                      {"role": "assistant", "content": "Yes."}]}) + "\n" for q in QUESTIONS))
    cache, model_dir = tmp_path / "cache", tmp_path / "model"
    assert main(["prepare", "--data_dir", str(data), "--cache_dir", str(cache), "--tokenizer", tokenizer_path,
                 "--task", "traces_steps", "--template", "chatml"]) == 0
    assert main(["train", "--gin_file=runs/tiny.gin", f"--gin.MODEL_DIR='{model_dir}'", "--gin.MIXTURE_OR_TASK_NAME='traces_steps'",
                 f"--gin.data_loader.cache_root='{cache}'", "--gin.TRAIN_STEPS=2", "--gin.SEQUENCE_LENGTH=128",
                 "--gin.BATCH_SIZE=2", "--gin.Monitor.progress_bar=False"]) == 0, capsys.readouterr().err

    saved = load_tokenizer(model_dir / "tokenizer")
    assert [saved.token_to_id(t) for t in ("<s>", "</s>", "<|im_start|>", "<|im_end|>")] == [1, 2, base, base + 1]
    vocabulary = json.loads((model_dir / "vocabulary.json").read_text())
    assert (vocabulary["tokenizer_vocab_size"], vocabulary["model_vocab_size"]) == (base + 2, 512)  # the tiny model's rows
    assert (vocabulary["padding_rows"], vocabulary["padding_ids"]) == (512 - base - 2, [base + 2, 511])

    bbh = tmp_path / "bench" / "bbh"
    bbh.mkdir(parents=True)
    (bbh / "navigate.json").write_text(json.dumps({"examples": [
        {"input": f"{q}\nOptions:\n- Yes\n- No", "target": "Yes"} for q in QUESTIONS[:2]]}))
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_dir), "--benchmarks", "bbh", "--data_dir", str(tmp_path / "bench"),
                 "--out", str(out), "--system", "cautious", "--max_new_tokens", "4", "--batch_size", "2"]) == 0
    assert json.loads((out / "summary.json").read_text())["bbh"]["tasks"]["navigate"]["n"] == 2
    # the prompt is the training text up to the answer: same BOS, ChatML turns and system message
    training_tokenizer = load_tokenizer(tokenizer_path)
    training_tokenizer.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    for record in map(json.loads, open(out / "predictions.jsonl")):
        user = record["prompt"].split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        trace = Trace(id="x", system=CAUTIOUS_SYSTEM_MESSAGE, turns=[{"role": "user", "content": user},
                                                                     {"role": "assistant", "content": "Yes."}])
        training = render(trace, training_tokenizer, "chatml")
        assert record["prompt"] == training.text[:training.content_spans[-1][0]]

    # transformers reads the same template from the HF export
    transformers = pytest.importorskip("transformers")
    hf_dir = tmp_path / "hf"
    assert main(["convert", "--from", str(model_dir), "--to", str(hf_dir), "--format", "hf"]) == 0
    messages = [{"role": "system", "content": CAUTIOUS_SYSTEM_MESSAGE}, {"role": "user", "content": QUESTIONS[0]}]
    ids = transformers.AutoTokenizer.from_pretrained(str(hf_dir)).apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert ids == saved.encode_chat(messages, add_generation_prompt=True) and ids[0] == 1
