"""Training checkpoints in MODEL_DIR with orbax: periodic, asynchronous, kept N, exact resume.

Layout (one step per directory, written atomically by orbax):
    MODEL_DIR/checkpoints/<step>/params      the parameter pytree (what `load_model` reads)
    MODEL_DIR/checkpoints/<step>/opt_state   optimizer state
    MODEL_DIR/checkpoints/<step>/progress    JSON: curriculum stage, data-loader state
Steps count across curriculum stages, so "the latest checkpoint" is always well defined.
"""

from __future__ import annotations

import os

import gin
import jax
import orbax.checkpoint as ocp


def abstract_like(tree, shardings):
    """ShapeDtypeStructs carrying the target shardings: orbax restores straight into them."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


@gin.configurable
class Checkpointer:
    """Wraps an orbax CheckpointManager for (params, opt_state, progress) triples."""

    def __init__(self, model_dir: str, save_every_steps: int = 1000, keep: int | None = 3,
                 async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(model_dir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_every_steps, max_to_keep=keep,
            enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._saved_step = self.manager.latest_step()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def due(self, step: int) -> bool:
        """Whether the periodic policy saves at `step` (checked before gathering what to save)."""
        return step != self._saved_step and self.manager.should_save(step)

    def save(self, step: int, params, opt_state, progress: dict, force: bool = False) -> bool:
        """Save if `step` is due (or `force`) and not saved yet; returns whether a save started."""
        if step == self._saved_step:
            return False
        saved = self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            progress=ocp.args.JsonSave(progress)), force=force)
        if saved:
            self._saved_step = step
        return saved

    def restore(self, step: int, abstract_params, abstract_opt_state):
        """(params, opt_state, progress) of `step`, placed with the abstract trees' shardings."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            opt_state=ocp.args.StandardRestore(abstract_opt_state),
            progress=ocp.args.JsonRestore()))
        return restored["params"], restored["opt_state"], restored["progress"]

    def restore_progress(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))["progress"]

    def wait(self) -> None:
        """Block until asynchronous saves have been committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
