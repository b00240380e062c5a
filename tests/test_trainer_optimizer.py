"""The optimizer pieces equal optax's own AdamW and schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from orca_jax.errors import UserError
from orca_jax.train.optimizer import adamw_direction, apply_learning_rate, decay_mask, learning_rate_schedule


def test_direction_times_schedule_equals_optax_adamw():
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=(3,)), jnp.float32)},
              "norm": {"scale": jnp.ones((3,), jnp.float32) * 1.5},
              "q_proj_bias": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}
    schedule = learning_rate_schedule(20, peak_lr=1e-2, warmup_steps=3, decay="cosine")
    ours_tx = adamw_direction(weight_decay=0.1, clip_norm=0.5)
    ref_tx = optax.chain(optax.clip_by_global_norm(0.5),
                         optax.adamw(schedule, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, mask=decay_mask))
    ours, ref = params, params
    ours_state, ref_state = ours_tx.init(ours), ref_tx.init(ref)
    for step in range(5):
        grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        directions, ours_state = ours_tx.update(grads, ours_state, ours)
        ours = apply_learning_rate(ours, directions, schedule(step))
        updates, ref_state = ref_tx.update(grads, ref_state, ref)
        ref = optax.apply_updates(ref, updates)
        for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours["dense"]["kernel"], params["dense"]["kernel"])


def test_decay_mask_spares_norms_and_biases():
    params = {"mlp": {"up_proj": jnp.zeros((4, 8))}, "input_layernorm": {"scale": jnp.zeros((4,))},
              "self_attn": {"q_proj_bias": jnp.zeros((2, 4)), "q_proj": jnp.zeros((4, 2, 2))}}
    assert decay_mask(params) == {"mlp": {"up_proj": True}, "input_layernorm": {"scale": False},
                                  "self_attn": {"q_proj_bias": False, "q_proj": True}}


@pytest.mark.parametrize("decay, at_end", [("cosine", 1e-3), ("linear", 1e-3), ("constant", 1e-2)])
def test_schedules_warm_up_then_decay(decay, at_end):
    schedule = learning_rate_schedule(100, peak_lr=1e-2, warmup_steps=10, decay=decay, final_lr_fraction=0.1)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0.0, 5e-3, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(schedule(100), at_end, rtol=1e-5)


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(UserError, match="decay = 'exp'"):
        learning_rate_schedule(10, decay="exp")
