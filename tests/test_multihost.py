"""Two processes with two CPU devices each, joined by jax.distributed on 127.0.0.1 with gloo
collectives, compute the same step as one process on one device (done-means 1, multi-host)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import trainer_support as ts
from orca_jax import partitioning

WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from orca_jax import partitioning
    partitioning.initialize_distributed(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import jax
    import trainer_support as ts
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    metrics, params = ts.one_step(partitioning.make_mesh((2, 2, 1)), 1, steps=2,
                                  process_index=jax.process_index(), process_count=2)
    if jax.process_index() == 0:
        np.savez(sys.argv[3], losses=[m["loss"] for m in metrics], grad_norms=[m["grad_norm"] for m in metrics],
                 **params)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multihost
def test_two_processes_equal_one_process(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "multi.npz"
    env = dict(ts.cli_env(2), PYTHONPATH=os.pathsep.join([ts.REPO, os.path.join(ts.REPO, "tests")]))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, address, str(i), str(out)], env=env, cwd=ts.REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)

    ref_metrics, ref = ts.one_step(partitioning.make_mesh((1, 1, 1), jax.devices()[:1]), 1, steps=2)
    multi = np.load(out)
    np.testing.assert_allclose(multi["losses"], [m["loss"] for m in ref_metrics], rtol=1e-5)
    np.testing.assert_allclose(multi["grad_norms"], [m["grad_norm"] for m in ref_metrics], rtol=1e-5)
    assert ts.max_relative_difference({k: multi[k] for k in ref}, ref) <= 1e-5


@pytest.mark.slow
@pytest.mark.multihost
def test_train_command_across_two_processes(tmp_path):
    """The whole run through `orca-jax train --coordinator_address ...`: orbax writes one
    checkpoint from both processes, the summary's loss matches a single-process run."""
    gin_file = tmp_path / "run.gin"
    gin_file.write_text(ts.TINY_GIN + "mesh_shape.data = 2\nmesh_shape.fsdp = 2\n")
    address = f"127.0.0.1:{free_port()}"
    common = [f"--gin_file={gin_file}", "--gin.TRAIN_STEPS=3"]
    env = ts.cli_env(2)
    procs = [subprocess.Popen(
        [sys.executable, "-c", ts.cli_code(["train", *common, f"--gin.MODEL_DIR='{tmp_path / 'multi'}'",
                                            f"--coordinator_address={address}", "--num_processes=2",
                                            f"--process_id={i}"])],
        env=env, cwd=ts.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)

    single_gin = tmp_path / "single.gin"
    single_gin.write_text(ts.TINY_GIN)
    single = ts.run_cli(["train", f"--gin_file={single_gin}", "--gin.TRAIN_STEPS=3",
                         f"--gin.MODEL_DIR='{tmp_path / 'single'}'"])
    assert single.returncode == 0, single.stderr[-3000:]
    multi = json.loads((tmp_path / "multi" / "summary.json").read_text())
    ref = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert multi["final_step"] == 3 and multi["tokens_seen"] == ref["tokens_seen"]
    np.testing.assert_allclose(multi["final_loss"], ref["final_loss"], rtol=1e-5)
    assert (tmp_path / "multi" / "checkpoints" / "3" / "params").is_dir()
