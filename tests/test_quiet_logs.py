"""Quiet logs on a CPU machine (issue 18 item 3): `prepare` (TensorFlow through seqio), a
trainer checkpoint saved and loaded back print no line at WARNING or ERROR level, while
TensorFlow's own output still reaches stderr."""

import subprocess
import sys
import textwrap

import pytest

from log_lines import loud_lines

pytest.importorskip("seqio")

SCRIPT = textwrap.dedent("""
    import dataclasses, json, os, sys
    import jax
    from orca_jax.cli import main
    from orca_jax.model import decoder, orbax_io
    from orca_jax.model.config import get_preset
    from orca_jax.model.loading import load_model
    from orca_jax.synthetic.tokenizer import train_tokenizer
    from orca_jax.train.checkpoints import Checkpointer

    tmp = sys.argv[1]
    tokenizer = train_tokenizer(["what is one plus one? two."] * 4, vocab_size=300)
    tokenizer.save(os.path.join(tmp, "tokenizer"))
    os.makedirs(os.path.join(tmp, "data"))
    with open(os.path.join(tmp, "data", "toy.jsonl"), "w") as f:
        for i in range(4):
            f.write(json.dumps({"id": str(i), "system_prompt": "", "question": "what is one plus one?",
                                "response": "two."}) + "\\n")
    assert main(["prepare", "--task", "traces_toy", "--data_dir", os.path.join(tmp, "data"),
                 "--cache_dir", os.path.join(tmp, "cache"), "--tokenizer", os.path.join(tmp, "tokenizer")]) == 0

    model_dir = os.path.join(tmp, "model")
    config = dataclasses.replace(get_preset("tiny"), vocab_size=tokenizer.vocab_size, num_layers=1)
    params = decoder.init_params(config, jax.random.key(0))
    os.makedirs(model_dir)
    orbax_io.write_model_metadata(model_dir, config, tokenizer)
    checkpointer = Checkpointer(model_dir, save_every_steps=1)
    checkpointer.save(3, params, {"adam": params}, {"stage": 0}, force=True)
    checkpointer.wait()
    checkpointer.close()
    loaded = load_model(model_dir)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), loaded.params, params))
    print("loaded", loaded.config.num_layers)
    import tensorflow as tf
    tf.print("tensorflow still prints", output_stream=sys.stderr)
""")


def test_prepare_and_checkpoint_load_print_no_warning_or_error(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "traces_toy: 4 examples" in proc.stdout and "loaded 1" in proc.stdout, proc.stdout
    assert loud_lines(proc.stderr) == [], proc.stderr[-3000:]
    assert "tensorflow still prints" in proc.stderr  # the filter drops known lines, not TensorFlow's output
