"""Joints that break only at scale, checked on 8 simulated CPU devices (each check in its own
process: the device count is fixed before JAX starts): gradient accumulation holds no more than
one extra sharded gradient buffer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_microbatching_adds_at_most_one_sharded_gradient_buffer():
    """`plan`'s compiled temporaries per device, fsdp over 8 devices: 2 microbatches may add the
    accumulator (a gradient shard per device, the size of the fp32 parameter shard) and nothing
    else; the weights each layer gathers must not be held for the whole accumulation loop."""
    out = _run("""
        import json
        from orca_jax import planning
        planning.use_simulated_devices(8)
        from orca_jax.train import gin_setup
        plans = {}
        for microbatches in (1, 2):
            gin_setup.parse(["runs/tiny.gin", "partitioning/cpu_single_host.gin"], [
                "MODEL_DIR='/tmp/unused'", "MIXTURE_OR_TASK_NAME='unused'", "model_config.vocab_size=8192",
                "model_config.hidden_size=512", "model_config.intermediate_size=1376", "model_config.num_layers=2",
                "model_config.num_heads=4", "model_config.num_kv_heads=4", "model_config.head_dim=128",
                "SEQUENCE_LENGTH=128", "BATCH_SIZE=16", f"train.num_microbatches={microbatches}"])
            plans[microbatches] = planning.make_plan(hbm_gib=80).to_dict()
        print(json.dumps(plans))
    """)
    one, two = out["1"], out["2"]
    assert one["mesh"] == two["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    gradient_buffer = one["params_gib"]  # fp32 gradients sharded like the fp32 parameters
    assert two["temporaries_gib"] <= one["temporaries_gib"] + 1.1 * gradient_buffer, (one["temporaries_gib"], two["temporaries_gib"], gradient_buffer)
