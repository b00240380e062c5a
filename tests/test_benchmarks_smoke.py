"""Benchmarks run: the single-GPU check script works end to end on CPU (--tiny), imports nothing
of TensorFlow or seqio, and its packing check catches a kernel that ignores segment ids.

(That every selectable attention implementation honours segment ids on packed input is
tests/test_attention_packing.py's job.)"""

import json
import math
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


def _run_python(code_or_args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *code_or_args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def test_gpu_check_imports_neither_tensorflow_nor_seqio():
    # A fresh interpreter: this test session has seqio loaded already through other tests.
    result = _run_python(["-c", "import sys; import benchmarks.gpu_check; "
                                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'seqio')))"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = _run_python(["benchmarks/gpu_check.py", "--tiny", "--steps", "1", "--out", str(out)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    record = json.loads(out.read_text())
    check = record["kernels"]["xla"]["packing_check"]
    assert check["ok"] and check["max_abs_error"] < 1e-2 * check["leak_if_segments_ignored"]
    # Both trainers start from a random init: next-token loss near ln(vocab) for the same objective.
    uniform = math.log(get_preset("tiny").vocab_size)
    for run in (record["kernels"]["xla"]["packed"], record["kernels"]["xla"]["unpacked"], record["transformers"]):
        assert run["tokens_per_s"] > 0 and abs(run["loss"] - uniform) < 0.3, run
    assert record["tensorflow_or_seqio_imported"] == []
    assert record["peak_tflops"] is None and record["transformers"]["mfu"] is None  # no CPU peak: no invented MFU


def test_packing_check_catches_a_kernel_that_ignores_segments(monkeypatch):
    config = get_preset("tiny").replace(dtype="bfloat16")
    honest = gpu_check.packing_check(config, 128)
    segment_mask = attention.attention_mask
    causal_only = lambda q_seg, kv_seg, *rest: segment_mask(jnp.ones_like(q_seg), jnp.ones_like(kv_seg), *rest)
    monkeypatch.setattr(attention, "attention_mask", causal_only)
    leaking = gpu_check.packing_check(config, 128)
    assert honest["ok"] and not leaking["ok"]
    assert leaking["max_abs_error"] == pytest.approx(honest["leak_if_segments_ignored"], rel=1e-3)


def test_mfu_counts_match_the_design_anchor():
    # DESIGN.md: TinyLlama-1.1B 8 x 2048 on an H200, 69.9k tokens/s is 50.5% MFU of 989 TFLOP/s.
    flops = gpu_check.train_flops_per_token(get_preset("tinyllama-1.1b"), 2048)
    assert 69.9e3 * flops / 989e12 == pytest.approx(0.505, abs=0.001)
