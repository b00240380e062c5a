"""Accumulation, device meshes and processes change nothing but rounding (done-means 1).

Each comparison runs the real path: gin defaults, logical-axis shardings, the jitted train
step with donated state, batches assembled from the PackedLoader's process rows."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

import trainer_support as ts
from orca_jax import partitioning

TOL = 1e-5


def test_two_microbatches_of_four_equal_one_batch_of_eight():
    mesh = partitioning.make_mesh((1, 1, 1), jax.devices()[:1])
    full_metrics, full = ts.one_step(mesh, num_microbatches=1, steps=2)
    micro_metrics, micro = ts.one_step(mesh, num_microbatches=2, steps=2)
    for a, b in zip(micro_metrics, full_metrics):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=TOL)
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=TOL)
    assert ts.max_relative_difference(micro, full) <= TOL
    # the comparison has teeth: the two steps did move the parameters
    _, start = ts.one_step(mesh, num_microbatches=1, steps=0)
    assert ts.max_relative_difference(full, start) > 1e-3


MESH_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import trainer_support as ts
    from orca_jax import partitioning

    ref_metrics, ref = ts.one_step(partitioning.make_mesh((1, 1, 1), jax.devices()[:1]), 1, steps=2)
    out = {}
    for shape, micro in [((8, 1, 1), 1), ((2, 2, 2), 2), ((1, 4, 2), 1)]:
        mesh = partitioning.make_mesh(shape)
        metrics, params = ts.one_step(mesh, micro, steps=2)
        out[f"{shape}x{micro}"] = {
            "params": ts.max_relative_difference(params, ref),
            "loss": max(abs(m["loss"] - r["loss"]) / abs(r["loss"]) for m, r in zip(metrics, ref_metrics)),
            "grad_norm": max(abs(m["grad_norm"] - r["grad_norm"]) / r["grad_norm"]
                             for m, r in zip(metrics, ref_metrics)),
        }
    # the state really is split by the rules: params and Adam moments alike
    from orca_jax.train import trainer
    from orca_jax.train.optimizer import adamw_direction
    from orca_jax.model.config import get_preset
    optimizer = adamw_direction()
    _, sh = trainer.state_shardings(get_preset("tiny").replace(vocab_size=256), optimizer,
                                    partitioning.make_mesh((2, 2, 2)), partitioning.logical_axis_rules())
    adam = [s for s in sh.opt_state if hasattr(s, "mu")][0]
    out["shards"] = {"up_proj": sh.params["layers_0"]["mlp"]["up_proj"].shard_shape((64, 176)),
                     "up_proj_mu": adam.mu["layers_0"]["mlp"]["up_proj"].shard_shape((64, 176)),
                     "adam_count": adam.count.shard_shape(())}
    print(json.dumps(out))
""")


def test_meshes_of_eight_devices_equal_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([ts.REPO, os.path.join(ts.REPO, "tests")]))
    proc = subprocess.run([sys.executable, "-c", MESH_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ts.REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # embed over fsdp (2), mlp over tensor (2); Adam's moments follow, its counter is replicated
    assert result.pop("shards") == {"up_proj": [32, 88], "up_proj_mu": [32, 88], "adam_count": []}
    assert len(result) == 3
    for name, diffs in result.items():
        for what, value in diffs.items():
            assert value <= TOL, f"mesh {name}: {what} differs by {value}"
