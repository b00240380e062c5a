"""Parsing a run's gin files and bindings, t5x-style, with user errors for bad config."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import gin

from orca_jax.errors import UserError

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "gin")


def register_configurables() -> None:
    """Import every module whose functions gin files may name."""
    from orca_jax import partitioning  # noqa: F401
    from orca_jax.evaluation import periodic  # noqa: F401
    from orca_jax.train import checkpoints, curriculum, monitor, optimizer, trainer  # noqa: F401


def parse(gin_files: Sequence[str], bindings: Sequence[str]) -> None:
    """Parse files (found as given, or under the repo's gin/ folder) then `NAME=VALUE` bindings.

    Unknown names, bad syntax and missing files surface as one-line UserErrors."""
    register_configurables()
    gin.clear_config()
    for path in (os.getcwd(), GIN_DIR):
        gin.add_config_file_search_path(path)
    if not gin_files:
        raise UserError("give at least one --gin_file (e.g. --gin_file=runs/tiny.gin)")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # gin logs every search-path miss before a hit as an error
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(bindings), finalize_config=True)
    except (ValueError, IOError, SyntaxError, KeyError) as e:
        # gin appends the whole parsed config after "in config string:"; the first part names the problem
        message = str(e).split(" in config string:")[0].strip().splitlines()
        raise UserError(f"gin config: {' '.join(line.strip() for line in message)}") from None
    finally:
        root.setLevel(level)


def call(configurable, *args, **kwargs):
    """Call a gin configurable; a UserError from inside keeps its one line (gin appends
    "In call to configurable ..." lines to every exception passing through it)."""
    try:
        return configurable(*args, **kwargs)
    except UserError as e:
        raise UserError(str(e).split("\n  In call to configurable")[0]) from None
