"""Packing: examples packed in one row give the same logits (and gradients) as each alone, for every
attention implementation that runs here; implementations that cannot honour the mask refuse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orca_jax.errors import UserError
from orca_jax.model import decoder
from orca_jax.model.attention import kernel_module
from orca_jax.model.config import get_preset

ROW = 128  # splash attention tiles are 128 long
LENGTHS = (37, 50, 21)  # 20 padding slots at the end



def _available(impl):
    try:
        kernel_module(impl)
        return True
    except UserError:
        return False


# Pallas kernels run everywhere (interpret mode off their accelerator) while jax still ships them.
IMPLS = ["xla"] + [i for i in ("pallas_gpu", "splash") if _available(i)] + (
    ["cudnn"] if jax.default_backend() == "gpu" else [])
BASE = get_preset("tiny").replace(vocab_size=61)

jit_apply = jax.jit(decoder.apply, static_argnums=0)


def _packed_row(lengths, seed=0):
    rs = np.random.RandomState(seed)
    examples = [rs.randint(1, 61, n) for n in lengths]
    tokens, positions, segments = (np.zeros((1, ROW), np.int32) for _ in range(3))
    start = 0
    for seg, ex in enumerate(examples, 1):
        tokens[0, start:start + len(ex)] = ex
        positions[0, start:start + len(ex)] = np.arange(len(ex))
        segments[0, start:start + len(ex)] = seg
        start += len(ex)
    tokens[0, start:] = rs.randint(1, 61, ROW - start)  # padding content must not matter
    return examples, tokens, positions, segments


@pytest.fixture(scope="module")
def params():
    return decoder.init_params(BASE, jax.random.key(0))


@pytest.mark.parametrize("sliding_window", [None, 16])
@pytest.mark.parametrize("impl", IMPLS)
def test_packed_equals_alone(impl, sliding_window, params):
    config = BASE.replace(attention_impl=impl, sliding_window=sliding_window)
    if impl == "cudnn":
        config = config.replace(dtype="bfloat16")
    examples, tokens, positions, segments = _packed_row(LENGTHS)
    if impl == "pallas_gpu" and sliding_window is not None:
        with pytest.raises(UserError, match="sliding window"):
            jit_apply(config, params, tokens, positions, segments)
        return
    packed = np.asarray(jit_apply(config, params, tokens, positions, segments))
    reference = BASE.replace(sliding_window=sliding_window, dtype=config.dtype)
    tol = 5e-2 if impl == "cudnn" else 1e-5
    start = 0
    for ex in examples:
        alone = np.asarray(jit_apply(reference, params, ex[None], np.arange(len(ex))[None], np.ones((1, len(ex)), np.int32)))
        np.testing.assert_allclose(packed[0, start:start + len(ex)], alone[0], atol=tol, rtol=0)
        start += len(ex)


def _loss_and_grads(config, params):
    """A weighted sum of packed logits (padding weighted 0), and its gradients."""
    _, tokens, positions, segments = _packed_row(LENGTHS, seed=1)
    weights = np.random.RandomState(2).randn(1, ROW, BASE.vocab_size).astype(np.float32) * (segments[..., None] > 0)
    loss = lambda p: jnp.sum(decoder.apply(config, p, tokens, positions, segments) * weights)
    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.fixture(scope="module")
def reference_loss_and_grads(params):
    return _loss_and_grads(BASE, params)


@pytest.mark.parametrize("config_change", [{"attention_impl": i} for i in IMPLS if i not in ("xla", "cudnn")]
                         + [{"remat_policy": "full"}, {"remat_policy": "dots_saveable"}], ids=str)
def test_kernels_and_remat_keep_loss_and_gradients(config_change, params, reference_loss_and_grads):
    expected_loss, expected = reference_loss_and_grads
    loss, got = _loss_and_grads(BASE.replace(**config_change), params)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for e, g in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(got)):
        np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the refusal off GPU")
def test_cudnn_refuses_without_gpu(params):
    _, tokens, positions, segments = _packed_row(LENGTHS)
    with pytest.raises(UserError, match="needs a GPU"):
        jit_apply(BASE.replace(attention_impl="cudnn"), params, tokens, positions, segments)


def test_splash_refuses_unaligned_length(params):
    with pytest.raises(UserError, match="multiple of 128"):
        ones = np.ones((1, 100), np.int32)
        jit_apply(BASE.replace(attention_impl="splash"), params, ones, np.arange(100)[None], ones)


def test_unknown_remat_policy_is_a_user_error(params):
    ones = np.ones((1, 4), np.int32)
    with pytest.raises(UserError, match="remat_policy"):
        decoder.apply(BASE.replace(remat_policy="sometimes"), params, ones, np.arange(4)[None], ones)


def test_every_param_has_logical_axes():
    config = BASE.replace(attention_bias=True)
    axes = decoder.param_logical_axes(config)
    shapes = jax.eval_shape(lambda key: decoder.init_params(config, key), jax.random.key(0))
    flat_axes = jax.tree_util.tree_leaves_with_path(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    flat_shapes = dict(jax.tree_util.tree_leaves_with_path(shapes))
    assert len(flat_axes) == len(flat_shapes)
    allowed = {"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "norm"}
    for path, spec in flat_axes:
        assert len(spec) == flat_shapes[path].ndim and set(spec) <= allowed, (path, spec)


@pytest.mark.parametrize("impl", IMPLS)
def test_init_params_does_not_depend_on_the_kernel(impl):
    # init runs a 1-token dummy row, which block-tiled kernels (splash) cannot take
    with_kernel = decoder.init_params(BASE.replace(attention_impl=impl), jax.random.key(3))
    reference = decoder.init_params(BASE, jax.random.key(3))
    jax.tree_util.tree_map(np.testing.assert_array_equal, with_kernel, reference)
