"""`pip install .` (not editable) installs the run files: from a fresh install, outside the source
tree, `orca-jax train --gin_file=runs/tiny.gin` finds the packaged file and trains."""

import json
import os
import shutil
import subprocess
import sys

import jax
import tokenizers

import trainer_support as ts
from orca_jax.data.cache import write_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _install(tmp_path) -> str:
    """A non-editable install of a copy of the source (the build leaves files in its source folder)
    into a fresh target folder; dependencies come from this environment."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("orca_jax", "tasks", "gin"):
        shutil.copytree(os.path.join(REPO, name), source / name, ignore=ignore)
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return str(target)


def test_installed_package_trains_from_a_packaged_gin_file(tmp_path):
    target = _install(tmp_path)
    packaged = {os.path.relpath(os.path.join(d, f), os.path.join(target, "orca_jax", "gin_files"))
                for d, _, files in os.walk(os.path.join(target, "orca_jax", "gin_files")) for f in files if f.endswith(".gin")}
    in_source = {os.path.relpath(os.path.join(d, f), os.path.join(REPO, "gin"))
                 for d, _, files in os.walk(os.path.join(REPO, "gin")) for f in files if f.endswith(".gin")}
    assert packaged == in_source

    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({f"t{i}": i for i in range(ts.VOCAB)}, unk_token="t0"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.save(str(tmp_path / "tokenizer.json"))
    record = {"path": str(tmp_path / "tokenizer.json"), "vocab_size": ts.VOCAB, "added_tokens": []}
    write_cache(str(tmp_path / "cache" / "toy_task"), ts.progression_examples(50, 0), {"tokenizer": record})
    elsewhere = tmp_path / "elsewhere"  # no gin/ folder here, and not the source tree
    elsewhere.mkdir()
    # the trainer tests' XLA cache (trainer_support) makes a repeat run's compilation a load
    env = dict(os.environ, PYTHONPATH=target, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    where = subprocess.run([sys.executable, "-c", "import orca_jax.train.gin_setup as g; print(g.__file__); print(g.GIN_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(target) for path in where), where
    model_dir = tmp_path / "model"
    proc = subprocess.run([sys.executable, "-m", "orca_jax.cli", "train", "--gin_file=runs/tiny.gin",
                           f"--gin.MODEL_DIR='{model_dir}'", "--gin.MIXTURE_OR_TASK_NAME='toy_task'",
                           f"--gin.data_loader.cache_root='{tmp_path / 'cache'}'", "--gin.TRAIN_STEPS=2",
                           "--gin.SEQUENCE_LENGTH=32", "--gin.BATCH_SIZE=4", f"--gin.model_config.vocab_size={ts.VOCAB}",
                           "--gin.Monitor.progress_bar=False"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["final_step"] == 2 and summary["tokens_seen"] > 0
