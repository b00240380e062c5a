"""`orca-jax train` as a user runs it: a run file from gin/runs, t5x-style overrides, the data
layer's prepared-cache loader, and what lands in MODEL_DIR."""

import json

import trainer_support as ts
from orca_jax.cli import main
from orca_jax.data.cache import write_cache
from orca_jax.model.config import DecoderConfig


def test_train_command_on_a_prepared_cache(tmp_path, capsys):
    write_cache(str(tmp_path / "cache" / "toy_task"), ts.progression_examples(100, 0), {"tokenizer": "none"})
    model_dir = tmp_path / "model"
    rc = main(["train", "--gin_file=runs/tiny.gin", f"--gin.MODEL_DIR='{model_dir}'",
               "--gin.MIXTURE_OR_TASK_NAME='toy_task'", f"--gin.data_loader.cache_root='{tmp_path / 'cache'}'",
               "--gin.TRAIN_STEPS=3", "--gin.SEQUENCE_LENGTH=32", "--gin.BATCH_SIZE=8",
               "--gin_bindings=model_config.vocab_size = 256", "--gin.Monitor.progress_bar=False"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["final_step"] == 3 and summary["tokens_seen"] > 0
    assert len(summary["params_sha256"]) == 64
    operative = (model_dir / "config.gin").read_text()
    assert "MIXTURE_OR_TASK_NAME = 'toy_task'" in operative and "TRAIN_STEPS = 3" in operative
    config = DecoderConfig.from_hf_config(json.loads((model_dir / "model_config.json").read_text()))
    assert (config.vocab_size, config.num_layers, config.hidden_size) == (256, 2, 64)
    assert sorted(p.name for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())[-1] == "3"
    assert list((model_dir / "tensorboard").glob("events.out.tfevents.*"))
