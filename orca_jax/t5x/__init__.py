"""t5x interoperability: orca-jax's trace tasks, decoder and checkpoints inside t5x pipelines.

    vocabulary.py   a seqio Vocabulary over the run's tokenizer (ids, decode, EOS, size)
    features.py     trace examples as t5x task features, and the feature converter for
                    per-token loss weights (multi-turn traces)
    model.py        the decoder as the module of `t5x.models.DecoderOnlyModel`; logical axis rules
    checkpoints.py  t5x checkpoints <-> orca-jax model folders (`orca-jax convert`)

t5x itself is optional: install it as the README's "t5x interop" section says. Modules here
that need it import it on use and raise `UserError` with that instruction when it is missing.
"""

from __future__ import annotations

import importlib

from orca_jax.errors import UserError

PARAMS_ROOT = "decoder"  # t5x's params["decoder"] is an orca-jax parameter tree
INSTALL_HINT = ("t5x is not installed; install it from its repository: "
                "pip install 'git+https://github.com/google-research/t5x' (see README, 't5x interop')")


def import_t5x(module: str = "t5x"):
    """Import `module` (e.g. "t5x.models") or raise UserError saying how to install t5x."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{INSTALL_HINT} ({e})") from None
