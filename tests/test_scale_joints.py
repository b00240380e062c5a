"""Joints that break only at scale, checked on 8 simulated CPU devices (each check in its own
process: the device count is fixed before JAX starts): gradient accumulation holds no more than
one extra sharded gradient buffer; the parameters' content hash, computed without gathering, is
the same on one device, on 8-device meshes and across 2 processes."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)


def _run(code: str, devices: int | None = None) -> dict:
    env = dict(ENV, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}") if devices else ENV
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The tiny model's parameters, deterministic on every process, placed on a (data, fsdp, tensor)
# mesh with the model's shardings; prints {mesh: params_sha256}.
HASH_ON_MESHES = """
    import json, sys
    import jax, numpy as np
    from orca_jax import partitioning
    PROCESSES = {processes}
    if PROCESSES > 1:
        partitioning.initialize_distributed(sys.argv[1], num_processes=PROCESSES, process_id=int(sys.argv[2]))
    from orca_jax.model.config import get_preset
    from orca_jax.model.decoder import init_params
    from orca_jax.train.summary import _leaf_lanes, params_sha256
    from orca_jax.train.trainer import param_shardings
    config = get_preset("tiny")
    host = jax.tree_util.tree_map(np.asarray, init_params(config, jax.random.key(3)))
    rules = partitioning.logical_axis_rules()
    out = {{}}
    for shape in {meshes}:
        mesh = partitioning.make_mesh(tuple(shape))
        shardings = param_shardings(config, mesh, rules)[1]
        placed = jax.tree_util.tree_map(lambda x, s: jax.make_array_from_callback(x.shape, s, lambda i: x[i]), host, shardings)
        out["x".join(map(str, shape))] = params_sha256(placed)
        compiled = _leaf_lanes.lower(jax.tree_util.tree_leaves(placed)).compile().as_text()
        out["gathers"] = out.get("gathers", 0) + compiled.count("all-gather")
    if PROCESSES == 1:
        out["host"] = params_sha256(host)
        np.savez(sys.argv[1], **{{jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(host)}})
    print(json.dumps(out))
"""


def _reference_sha256(leaves: dict[str, np.ndarray]) -> str:
    """The documented digest, computed on whole host arrays with NumPy: per leaf, 4 wrapping
    uint32 sums of fmix32(bits ^ fmix32(index * golden + seed))."""
    def fmix32(h):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))

    digest = hashlib.sha256()
    with np.errstate(over="ignore"):
        for path in sorted(leaves):
            x = leaves[path]
            bits = x.view(f"uint{x.dtype.itemsize * 8}").astype(np.uint32).ravel()
            index = np.arange(x.size, dtype=np.uint32)
            lanes = [np.sum(fmix32(bits ^ fmix32(index * np.uint32(0x9E3779B1) + np.uint32(seed))), dtype=np.uint32)
                     for seed in (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)]
            digest.update(f"{path}|{x.dtype.str}|{x.shape}|".encode() + np.asarray(lanes, "<u4").tobytes())
    return digest.hexdigest()


def test_content_hash_is_the_same_on_any_mesh_without_gathering(tmp_path):
    host_file = tmp_path / "params.npz"
    out = _run(HASH_ON_MESHES.format(processes=1, meshes=[(1, 8, 1), (2, 2, 2), (1, 4, 2)]).replace(
        "sys.argv[1]", repr(str(host_file))), devices=8)
    leaves = dict(np.load(host_file))
    assert out.pop("gathers") == 0  # each device digests its own shard; only 4 numbers per leaf are reduced
    assert set(out.values()) == {_reference_sha256(leaves)}, out
    # a one-ulp change anywhere changes it
    name = sorted(leaves)[1]
    leaves[name] = leaves[name].copy()
    leaves[name].flat[7] = np.nextafter(leaves[name].flat[7], np.float32(np.inf))
    assert _reference_sha256(leaves) != out["host"]


@pytest.mark.slow  # about 90 s: two processes joining and leaving jax.distributed
def test_content_hash_across_two_processes_equals_one_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    code = textwrap.dedent(HASH_ON_MESHES.format(processes=2, meshes=[(1, 8, 1), (2, 2, 2)]))
    env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    procs = [subprocess.Popen([sys.executable, "-c", code, address, str(i)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(err[-3000:] for _, err in results)
    hashes = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    single = _run(HASH_ON_MESHES.format(processes=1, meshes=[(1, 1, 1)]).replace("sys.argv[1]", repr(os.devnull + ".npz")))
    assert hashes[0] == hashes[1] and hashes[0].pop("gathers") == 0
    assert set(hashes[0].values()) == {single["host"]}


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
