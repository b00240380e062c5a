"""`orca-jax train` as a user runs it: a run file from gin/runs, t5x-style overrides, the data
layer's prepared-cache loader, and what lands in MODEL_DIR."""

import json

import pytest
import tokenizers

import trainer_support as ts
from orca_jax.cli import main
from orca_jax.data.cache import write_cache
from orca_jax.model.config import DecoderConfig
from orca_jax.model.loading import load_model
from orca_jax.model import decoder


def _word_level_tokenizer(path, vocab_size):
    vocab = {f"t{i}": i for i in range(vocab_size)}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t0"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.save(str(path))
    return {"path": str(path), "vocab_size": vocab_size, "added_tokens": []}


def test_train_command_on_a_prepared_cache(tmp_path, capsys):
    record = _word_level_tokenizer(tmp_path / "tokenizer.json", ts.VOCAB)
    write_cache(str(tmp_path / "cache" / "toy_task"), ts.progression_examples(100, 0), {"tokenizer": record})
    model_dir = tmp_path / "model"
    rc = main(["train", "--gin_file=runs/tiny.gin", f"--gin.MODEL_DIR='{model_dir}'",
               "--gin.MIXTURE_OR_TASK_NAME='toy_task'", f"--gin.data_loader.cache_root='{tmp_path / 'cache'}'",
               "--gin.TRAIN_STEPS=3", "--gin.SEQUENCE_LENGTH=32", "--gin.BATCH_SIZE=8",
               "--gin_bindings=model_config.vocab_size = 256", "--gin.Monitor.progress_bar=False"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    # the last line names where everything is: each path it names exists
    assert out.strip().splitlines()[-1] == (f"done: MODEL_DIR {model_dir}; last checkpoint {model_dir}/checkpoints/3; "
                                            f"summary {model_dir}/summary.json")
    assert (model_dir / "checkpoints" / "3" / "params").is_dir()
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["final_step"] == 3 and summary["tokens_seen"] > 0
    assert len(summary["params_sha256"]) == 64
    operative = (model_dir / "config.gin").read_text()
    assert "MIXTURE_OR_TASK_NAME = 'toy_task'" in operative and "TRAIN_STEPS = 3" in operative
    config = DecoderConfig.from_hf_config(json.loads((model_dir / "model_config.json").read_text()))
    assert (config.vocab_size, config.num_layers, config.hidden_size) == (256, 2, 64)
    assert sorted(p.name for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())[-1] == "3"
    assert list((model_dir / "tensorboard").glob("events.out.tfevents.*"))
    # the data's tokenizer is saved with the model, so the run loads back as a whole
    assert load_model(str(model_dir)).tokenizer.encode("t5 t7") == [5, 7]


def test_data_tokenized_with_a_larger_vocabulary_fails_before_compiling(tmp_path, capsys, monkeypatch):
    # token ids past the embedding table would silently read NaN rows: refuse at start-up
    monkeypatch.setattr(decoder, "init_params", lambda *a, **k: pytest.fail("reached model init"))
    record = _word_level_tokenizer(tmp_path / "tokenizer.json", 1000)
    write_cache(str(tmp_path / "cache" / "toy_task"), ts.progression_examples(20, 0), {"tokenizer": record})
    rc = main(["train", "--gin_file=runs/tiny.gin", f"--gin.MODEL_DIR='{tmp_path / 'model'}'",
               "--gin.MIXTURE_OR_TASK_NAME='toy_task'", f"--gin.data_loader.cache_root='{tmp_path / 'cache'}'",
               "--gin.TRAIN_STEPS=3", "--gin.SEQUENCE_LENGTH=32", "--gin.BATCH_SIZE=8",
               "--gin.model_config.vocab_size=256", "--gin.Monitor.progress_bar=False"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "(1000 tokens) but the model has 256 rows: set model_config.vocab_size = 1000" in err
