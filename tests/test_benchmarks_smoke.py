"""Benchmarks run: the single-GPU check script works end to end on CPU (--tiny), imports nothing
of TensorFlow or seqio, and its packing check catches a kernel that ignores segment ids.

(That every selectable attention implementation honours segment ids on packed input is
tests/test_attention_packing.py's job.)"""

import ast
import importlib.util
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import gpu_check  # noqa: E402
from orca_jax.model import attention  # noqa: E402
from orca_jax.model.config import get_preset  # noqa: E402


def _run_python(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def _project_imports(script: str) -> set[str]:
    """orca_jax / benchmarks modules a script imports anywhere, function bodies included."""
    with open(os.path.join(ROOT, script), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {n for n in names if n.split(".")[0] in ("orca_jax", "benchmarks") and _is_module(n)}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a function or class imported from a module
        return False


def test_gpu_check_imports_neither_tensorflow_nor_seqio():
    modules = _project_imports("benchmarks/gpu_check.py") | _project_imports("benchmarks/train_step_setup.py")
    assert {"orca_jax.model.decoder", "orca_jax.train.trainer", "benchmarks.train_step_setup"} <= modules
    # A fresh interpreter: this test session has seqio loaded already through other tests.
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {sorted(modules)!r}]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'seqio')))")
    result = _run_python(["-c", code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = _run_python(["benchmarks/gpu_check.py", "--tiny", "--steps", "1", "--out", str(out)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    record = json.loads(out.read_text())
    check = record["kernels"]["xla"]["packing_check"]
    assert check["ok"] and check["max_abs_error"] < 1e-2 * check["leak_if_segments_ignored"]
    runs = record["kernels"]["xla"]
    for run in (runs["packed"], runs["packed_chunked_ce"], runs["unpacked"], record["transformers_eager"]):
        assert run["tokens_per_s"] > 0 and run["mfu"] is None, run  # no peak known for a CPU: no invented MFU
    assert runs["packed_chunked_ce"]["temp_bytes"] > 0
    assert record["tensorflow_or_seqio_imported"] == []


def test_packing_check_catches_a_kernel_that_ignores_segments(monkeypatch):
    config = get_preset("tiny").replace(dtype="bfloat16")
    honest = gpu_check.packing_check(config, 128)
    segment_mask = attention.attention_mask
    causal_only = lambda q_seg, kv_seg, *rest: segment_mask(jnp.ones_like(q_seg), jnp.ones_like(kv_seg), *rest)
    monkeypatch.setattr(attention, "attention_mask", causal_only)
    leaking = gpu_check.packing_check(config, 128)
    assert honest["ok"] and not leaking["ok"]
    assert leaking["max_abs_error"] == pytest.approx(honest["leak_if_segments_ignored"], rel=1e-3)


def test_decode_benchmark_contenders_generate_the_same_tokens(tmp_path):
    # The decoding benchmark times equal work: same left-padded batch, same greedy ids, no early stop.
    pytest.importorskip("gguf")
    from benchmarks import decode_cpu
    from orca_jax.model.loading import load_model
    from tiny_gguf import tiny_hf_model, write_gguf

    path = str(write_gguf(tmp_path / "tiny.gguf", tiny_hf_model("llama", seed=5)))
    model = load_model(path)
    prompts = [[256, 72, 105], [256, 84, 104, 101, 32, 99, 97, 116, 32, 115, 97, 116], [256, 65]]
    ours = decode_cpu.orca_jax_generator(model, prompts, 12)()
    theirs = decode_cpu.transformers_generator(path, prompts, 12, pad_id=259)()
    assert [len(row) for row in ours] == [12, 12, 12]
    assert ours == theirs
