"""TensorFlow, which this project uses only for seqio's data pipelines, on the CPU and quiet.

Importing TensorFlow prints native log lines straight to file descriptor 2 (so neither Python
logging nor TF_CPP_MIN_LOG_LEVEL stops them all), and its first use probes CUDA, which on a
machine without a GPU logs `E... failed call to cuInit: ... UNKNOWN ERROR (303)`. They read as
failures and ask nothing of the user. `install()` (run by `import orca_jax`) wraps the first
import of `tensorflow`: it hides GPUs from TensorFlow (which would otherwise also reserve GPU
memory that JAX needs) and drops exactly those lines, passing every other line through.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|cuda_executor\.cc:\d+\] failed call to cuInit"
    r"|cuda_diagnostics\.cc:\d+\]")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern = STARTUP_NOISE):
    """Capture what anything (native code included) writes to fd 2; replay the lines `noise` misses."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not noise.search(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _CpuTensorFlowLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)
            module.config.set_visible_devices([], "GPU")  # probes CUDA here, inside the filter


class _CpuTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: find the real spec, then wrap its loader
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _CpuTensorFlowLoader(spec.loader)
        return spec


def install() -> None:
    if "tensorflow" not in sys.modules and not any(isinstance(f, _CpuTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CpuTensorFlowFinder())
