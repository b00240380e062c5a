"""Run summaries: `summary.json` with a hash that identifies the trained parameters exactly."""

from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils


def host_params(params) -> dict[str, np.ndarray]:
    """All parameter leaves as host NumPy arrays keyed by their path (gathered across processes)."""
    if jax.process_count() > 1:
        params = multihost_utils.process_allgather(params, tiled=True)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def params_sha256(params) -> str:
    """SHA-256 over every leaf's bytes (C order, native dtype), leaves sorted by path."""
    digest = hashlib.sha256()
    for _, value in sorted(host_params(params).items()):
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def write_summary(directory: str, summary: dict) -> str:
    """Write `summary.json` (process 0 only) and return its path."""
    path = os.path.join(directory, "summary.json")
    if jax.process_index() == 0:
        os.makedirs(directory, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    return path
