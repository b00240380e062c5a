"""Run summaries: `summary.json` with a hash that identifies the trained parameters, computed
without gathering them."""

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


# The content hash is computed where the parameters are: each element contributes a mixed
# 32-bit term (its bits and its global position, through murmur3's finaliser) to wrapping
# integer sums, 4 lanes per leaf. Integer sums are exact in any order, so each device sums its
# shard and XLA adds the shards' partial sums: the same digest on any mesh and any number of
# processes, and no host ever holds more than 4 numbers per leaf.
_LANE_SEEDS = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)  # digits of pi: arbitrary, fixed
_GOLDEN = 0x9E3779B1


def _fmix32(h):
    """murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x):
    """The elements' bits as uint32 (16-bit and 8-bit types zero-extended)."""
    x = jax.numpy.asarray(x)
    width = x.dtype.itemsize * 8
    if width > 32:
        raise ValueError(f"content hash: {x.dtype} parameters are not supported (at most 32 bits per element)")
    return jax.lax.bitcast_convert_type(x, jax.numpy.dtype(f"uint{width}")).astype(jax.numpy.uint32)


def _global_index(shape):
    """Each element's C-order position in the whole array (mod 2**32), built per shard."""
    index = jax.numpy.zeros(shape, jax.numpy.uint32)
    stride = 1
    for d in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jax.numpy.uint32, shape, d) * np.uint32(stride % 2**32)
        stride *= shape[d]
    return index


@jax.jit
def _leaf_lanes(leaves):
    out = []
    for x in leaves:
        bits, index = _bits(x), _global_index(x.shape)
        out.append(jax.numpy.stack([jax.numpy.sum(_fmix32(bits ^ _fmix32(index * np.uint32(_GOLDEN) + np.uint32(seed))),
                                                  dtype=jax.numpy.uint32) for seed in _LANE_SEEDS]))
    return out


def _local_value(x) -> np.ndarray:
    """A replicated result's value on this process (a multi-process array is not fully addressable)."""
    return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


def params_sha256(params) -> str:
    """SHA-256 over each leaf's path, dtype, shape and 128-bit content digest (see above),
    leaves sorted by path. Computed on the devices holding the parameters, without gathering."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    lanes = _leaf_lanes([leaf for _, leaf in leaves])
    digest = hashlib.sha256()
    for (path, leaf), leaf_lanes in sorted(zip(leaves, lanes), key=lambda item: jax.tree_util.keystr(item[0][0])):
        header = f"{jax.tree_util.keystr(path)}|{np.dtype(leaf.dtype).str}|{tuple(leaf.shape)}|"
        digest.update(header.encode() + _local_value(leaf_lanes).astype("<u4").tobytes())
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
