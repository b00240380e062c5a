"""AdamW and learning-rate schedules from gin.

The optimizer returns update *directions* (clip -> Adam -> decoupled weight decay); the
trainer multiplies them by -schedule(stage_step). Together that is exactly optax.adamw,
but the learning rate follows the curriculum stage's own schedule even when a stage
carries the previous stage's Adam moments over.
"""

from __future__ import annotations

import gin
import jax
import optax

from orca_jax.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")


@gin.configurable
def learning_rate_schedule(total_steps: int, peak_lr: float = 3e-4, warmup_steps: int = 0,
                           decay: str = "cosine", final_lr_fraction: float = 0.1) -> optax.Schedule:
    """Linear warmup from 0 to `peak_lr`, then cosine / linear decay to
    `final_lr_fraction * peak_lr` at `total_steps`, or constant."""
    if decay not in SCHEDULES:
        raise UserError(f"learning_rate_schedule.decay = {decay!r}: expected one of {SCHEDULES}")
    warmup_steps = min(int(warmup_steps), int(total_steps))
    end = peak_lr * final_lr_fraction
    rest = max(int(total_steps) - warmup_steps, 1)
    if decay == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup_steps, warmup_steps + rest, end)
    after = (optax.linear_schedule(peak_lr, end, rest) if decay == "linear"
             else optax.constant_schedule(peak_lr))
    if warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup_steps), after], [warmup_steps])


def decay_mask(params) -> object:
    """Weight decay on matrices only: norm scales and biases (rank < 2) are excluded,
    as is anything whose path names a norm."""
    def decays(path, leaf):
        name = jax.tree_util.keystr(path).lower()
        return leaf.ndim >= 2 and "norm" not in name and "bias" not in name
    return jax.tree_util.tree_map_with_path(decays, params)


@gin.configurable
def adamw_direction(b1: float = 0.9, b2: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.0,
                    clip_norm: float | None = 1.0) -> optax.GradientTransformation:
    """Global-norm clipping, Adam scaling and decoupled weight decay (not yet times -lr)."""
    parts = []
    if clip_norm:
        parts.append(optax.clip_by_global_norm(clip_norm))
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    return optax.chain(*parts)


def apply_learning_rate(params, directions, lr) -> object:
    """params - lr * direction, leaf by leaf (optax.apply_updates keeps dtypes)."""
    return optax.apply_updates(params, jax.tree_util.tree_map(lambda d: -lr * d, directions))

