"""Restore order: an initial checkpoint (a Hugging Face folder written by transformers) seeds the
weights, and the trained MODEL_DIR loads back with `load_model` (config, tokenizer, params)."""

import numpy as np
import pytest
import tokenizers

import trainer_support as ts
from orca_jax.errors import UserError
from orca_jax.model.config import get_preset
from orca_jax.model.loading import load_model
from orca_jax.train import curriculum
from orca_jax.train.summary import params_sha256
from orca_jax.train.trainer import LossConfig


@pytest.fixture
def hf_folder(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = get_preset("tiny").replace(vocab_size=ts.VOCAB).to_hf_config()
    config = transformers.AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    folder = tmp_path / "hf"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(ts.VOCAB)}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t0"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text('{"eos_token": "t1"}')
    return folder


def test_initial_checkpoint_seeds_the_run_and_model_dir_loads_back(tmp_path, hf_folder):
    # warmup from lr 0: the first step keeps the weights, so they must be the HF model's
    ts.parse_tiny_gin(tmp_path, "learning_rate_schedule.warmup_steps = 3\n")
    initial = load_model(str(hf_folder))
    seen = ts.SigtermAt(-1)
    summary = curriculum.train(model_dir=str(tmp_path / "run"), initial_checkpoint_path=str(hf_folder),
                               train_steps=3, eval_fn=seen, eval_every=1)
    assert seen.seen[0] == (1, params_sha256(initial.params))
    assert seen.seen[1][1] != params_sha256(initial.params)

    trained = load_model(str(tmp_path / "run"))
    assert trained.source == "orbax"
    assert trained.config.vocab_size == ts.VOCAB and trained.config.num_layers == 2
    assert params_sha256(trained.params) == summary["params_sha256"]
    assert trained.tokenizer.encode("t5 t7") == initial.tokenizer.encode("t5 t7")


def test_initial_checkpoint_of_another_shape_is_refused(tmp_path, hf_folder):
    ts.parse_tiny_gin(tmp_path, "model_config.num_layers = 3\n")
    with pytest.raises(UserError, match="num_layers 2 vs 3"):
        curriculum.train(model_dir=str(tmp_path / "run"), initial_checkpoint_path=str(hf_folder))


def test_initial_checkpoint_with_a_smaller_vocabulary_is_extended(tmp_path, hf_folder):
    # Orca adds [PAD] (and ChatML tokens) to LLaMA's vocabulary: the run grows embeddings and head
    ts.parse_tiny_gin(tmp_path, f"model_config.vocab_size = {ts.VOCAB + 3}\nlearning_rate_schedule.warmup_steps = 3\n")
    initial = load_model(str(hf_folder))
    curriculum.train(model_dir=str(tmp_path / "run"), initial_checkpoint_path=str(hf_folder), train_steps=1)
    trained = load_model(str(tmp_path / "run"))
    assert trained.config.vocab_size == ts.VOCAB + 3
    embedding = trained.params["embed_tokens"]["embedding"]
    assert embedding.shape[0] == ts.VOCAB + 3
    # warmup from lr 0: the first step keeps the weights, so the old rows are the HF model's own
    np.testing.assert_array_equal(embedding[:ts.VOCAB], initial.params["embed_tokens"]["embedding"])


def test_online_teacher_loaded_from_a_folder_distils(tmp_path, hf_folder):
    ts.parse_tiny_gin(tmp_path)
    summary = curriculum.train(model_dir=str(tmp_path / "run"), train_steps=2, teacher_path=str(hf_folder),
                               loss=LossConfig(kd_source="online", kd_kind="forward_kl", kd_alpha=1.0))
    # alpha 1: the loss is the KD term alone, which is > 0 between two different random models
    assert summary["final_loss"] > 0.01 and summary["final_step"] == 2
