"""Two processes with two CPU devices each, joined by jax.distributed on 127.0.0.1 with gloo
collectives, compute the same step as one process on one device (done-means 1, multi-host)."""

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
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
