"""Mesh shapes, logical-axis rules and shardings."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from orca_jax import partitioning
from orca_jax.errors import UserError
from orca_jax.model.config import get_preset
from orca_jax.train.trainer import param_shardings


@pytest.mark.parametrize("shape, devices, expected", [
    ((-1, 1, 1), 8, (8, 1, 1)), ((2, -1, 2), 8, (2, 2, 2)), ((1, 4, -1), 8, (1, 4, 2)), ((1, 1, 1), 1, (1, 1, 1))])
def test_mesh_shape_fills_minus_one(shape, devices, expected):
    assert partitioning.resolve_mesh_shape(shape, devices) == expected


@pytest.mark.parametrize("shape, message", [
    ((3, 1, 1), "needs 3 devices, but 8"), ((-1, 3, 1), "do not divide the 8"), ((-1, -1, 1), "at most one -1"),
    ((8, 1), "expected 3 sizes")])
def test_bad_mesh_shapes_are_user_errors(shape, message):
    with pytest.raises(UserError, match=message):
        partitioning.resolve_mesh_shape(shape, 8)


def test_rules_map_model_params_to_mesh_axes():
    # A (1, 1, 1) mesh still carries the axis names, so the specs show where each
    # parameter dimension would be split on a bigger mesh.
    mesh = partitioning.make_mesh((1, 1, 1), jax.devices()[:1])
    _, shardings = param_shardings(get_preset("tiny"), mesh, partitioning.logical_axis_rules())
    assert shardings["embed_tokens"]["embedding"].spec == P("tensor", "fsdp")
    assert shardings["layers_0"]["self_attn"]["q_proj"].spec == P("fsdp", "tensor", None)
    assert shardings["layers_0"]["mlp"]["down_proj"].spec == P("tensor", "fsdp")
    assert shardings["layers_0"]["input_layernorm"]["scale"].spec == P(None)
    assert partitioning.batch_sharding(mesh, partitioning.logical_axis_rules()).spec == P(("data", "fsdp"), None)


def test_undividable_parameter_names_itself():
    mesh = partitioning.make_mesh((1, 1, 1), jax.devices()[:1])
    three_way = AbstractMesh((1, 3, 1), partitioning.MESH_AXES)  # 64 rows do not split in 3
    boxed = {"w": nn.LogicallyPartitioned(jax.ShapeDtypeStruct((64, 8), np.float32), ("embed", "mlp"))}
    shardings = partitioning.tree_shardings(boxed, mesh, partitioning.logical_axis_rules())
    assert shardings["w"].spec == P("fsdp", "tensor")
    with pytest.raises(UserError, match=r"\['w'\] has shape \(64, 8\): dimension 64 cannot be split"):
        partitioning.tree_shardings(boxed, three_way, partitioning.logical_axis_rules())
