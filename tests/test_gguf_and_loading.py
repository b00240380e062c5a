"""GGUF reading against transformers' GGUF loader, load_model's formats, and orbax model folders."""

import json

import jax
import numpy as np
import pytest

from orca_jax.data.tokenizer import load_tokenizer
from orca_jax.errors import UserError
from orca_jax.model.decoder import apply
from orca_jax.model.gguf_convert import read_gguf
from orca_jax.model.hf_convert import params_to_hf
from orca_jax.model.loading import load_model
from orca_jax.model.orbax_io import save_model, write_model_metadata

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
from tiny_gguf import tiny_hf_model, write_gguf  # noqa: E402  (needs torch/transformers)

Q = gguf.GGMLQuantizationType


def _transformers_from_gguf(path):
    pytest.importorskip("accelerate")  # transformers needs it for GGUF
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def _assert_tensors_equal(ours: dict, reference: dict):
    assert sorted(ours) == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(ours[name], np.asarray(value), err_msg=name)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_tiny_gguf_tensors_equal_transformers_loader(tmp_path, model_type):
    hf = tiny_hf_model(model_type)
    # Quantize two matrices so dequantization is exercised next to plain F32 tensors.
    qtypes = {"model.layers.0.self_attn.q_proj.weight": Q.Q8_0, "model.layers.1.mlp.up_proj.weight": Q.Q5_1}
    path = write_gguf(tmp_path / "tiny.gguf", hf, qtypes=qtypes)
    ours = read_gguf(path)
    reference = _transformers_from_gguf(path)
    _assert_tensors_equal(ours.tensors, {k: v.numpy() for k, v in reference.state_dict().items()})
    # F32 tensors come back exactly as the model that was written (q/k permutation undone).
    original = hf.state_dict()
    for name in ours.tensors:
        if name not in qtypes:
            np.testing.assert_array_equal(ours.tensors[name], original[name].numpy(), err_msg=name)
    assert ours.config["model_type"] == model_type
    assert ours.config["attention_bias"] is True if model_type == "qwen2" else "attention_bias" not in ours.config


def test_load_gguf_logits_match_transformers(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf", tiny_hf_model("llama"), qtypes={
        "model.layers.1.self_attn.k_proj.weight": Q.Q4_1})
    model = load_model(path)
    assert (model.source, model.path) == ("gguf", str(path))
    tokens = np.array([model.tokenizer.encode("Packing must not leak across examples.")], np.int32)
    positions = np.arange(tokens.shape[1])[None]
    logits = np.asarray(apply(model.config, model.params, tokens, positions, np.ones_like(tokens)))
    with torch.no_grad():
        ref = _transformers_from_gguf(path)(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    assert np.abs(logits - ref).max() <= 1e-4


def test_load_hf_folder(tmp_path):
    hf = tiny_hf_model("llama", seed=1)
    hf.save_pretrained(tmp_path)
    load_tokenizer(write_gguf(tmp_path / "tok.gguf", hf)).save(tmp_path)
    model = load_model(tmp_path, dtype="bfloat16")
    assert (model.source, model.config.dtype) == ("hf", "bfloat16")
    ours = params_to_hf(model.config, model.params)
    _assert_tensors_equal(ours, {k: v.numpy() for k, v in hf.state_dict().items()})
    assert model.tokenizer.chat_template and model.tokenizer.eos_id == 258


@pytest.fixture(scope="module")
def gguf_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return load_model(write_gguf(path, tiny_hf_model("llama", seed=2)))


def _assert_same_model(a, b):
    assert a.config == b.config
    flat_a, tree_a = jax.tree_util.tree_flatten(a.params)
    flat_b, tree_b = jax.tree_util.tree_flatten(b.params)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b):
        assert x.dtype == y.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    text = "<|im_start|>user\nhi<|im_end|>"
    assert a.tokenizer.encode(text) == b.tokenizer.encode(text)
    assert a.tokenizer.chat_template == b.tokenizer.chat_template


def test_orbax_model_folder_round_trip(tmp_path, gguf_model):
    save_model(tmp_path / "exported", gguf_model.config, gguf_model.params, gguf_model.tokenizer)
    reloaded = load_model(tmp_path / "exported")
    assert reloaded.source == "orbax"
    _assert_same_model(gguf_model, reloaded)


def test_trainer_model_dir_loads_latest_step(tmp_path, gguf_model):
    import orbax.checkpoint as ocp

    model_dir = tmp_path / "run"
    model_dir.mkdir()
    write_model_metadata(model_dir, gguf_model.config, gguf_model.tokenizer)
    manager = ocp.CheckpointManager(model_dir / "checkpoints")
    older = jax.tree_util.tree_map(lambda x: x + 1.0, gguf_model.params)
    for step, params in [(10, older), (20, gguf_model.params)]:
        manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                                   progress=ocp.args.JsonSave({"step": step})))
    manager.wait_until_finished()
    reloaded = load_model(model_dir)
    assert reloaded.path.endswith("checkpoints/20/params")
    _assert_same_model(gguf_model, reloaded)


def test_orbax_folder_with_wrong_config_is_user_error(tmp_path, gguf_model):
    folder = tmp_path / "exported"
    save_model(folder, gguf_model.config, gguf_model.params, gguf_model.tokenizer)
    config = json.loads((folder / "model_config.json").read_text())
    config["intermediate_size"] = 96
    (folder / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"params: parameter 'layers_0/mlp/\w+' has shape \[(128, 64|64, 128)\], expected \[(96, 64|64, 96)\]"):
        load_model(folder)


def test_gguf_errors_name_file_and_problem(tmp_path):
    hf = tiny_hf_model("llama")
    block, block_bytes = gguf.GGML_QUANT_SIZES[Q.Q8_1]
    bad_quant = write_gguf(tmp_path / "q81.gguf", hf, raw_tensors={
        "blk.0.ffn_up.weight": (np.zeros((128, 64 // block * block_bytes), np.uint8), Q.Q8_1)})
    with pytest.raises(UserError, match=r"q81\.gguf: tensor 'blk\.0\.ffn_up\.weight' uses quantization Q8_1"):
        load_model(bad_quant)
    wrong_shape = write_gguf(tmp_path / "shape.gguf", hf, metadata_overrides={"feed_forward_length": 96})
    with pytest.raises(UserError, match=r"shape\.gguf: tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"):
        load_model(wrong_shape)
    unknown_arch = write_gguf(tmp_path / "arch.gguf", hf, arch="falcon")
    with pytest.raises(UserError, match=r"arch\.gguf: GGUF architecture 'falcon' is not supported"):
        load_model(unknown_arch)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match=r"junk\.gguf: not a readable GGUF file"):
        load_model(tmp_path / "junk.gguf")


def test_load_model_rejects_unknown_paths(tmp_path):
    with pytest.raises(UserError, match=r"missing: no such file or directory"):
        load_model(tmp_path / "missing")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(UserError, match=r"weights\.bin: expected a \.gguf file or a model folder"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(UserError, match=r"not a model folder"):
        load_model(tmp_path)
