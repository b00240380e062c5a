"""Parsing a run's gin files and bindings, t5x-style, with user errors for bad config.

Every gin error is one line, with the closest valid name where the user mistyped one; a
macro or binding from the command line that the run does not use is an error naming what
the run uses instead (gin itself accepts both silently)."""

from __future__ import annotations

import argparse
import difflib
import inspect
import logging
import os
import re
from typing import Sequence

import gin
from gin import config_parser

from orca_jax.errors import UserError

# The run files: installed inside the package (setup.py maps gin/ to orca_jax/gin_files), else
# the source tree's gin/ folder.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INSTALLED_GIN_DIR = os.path.join(_PACKAGE_DIR, "gin_files")
GIN_DIR = _INSTALLED_GIN_DIR if os.path.isdir(_INSTALLED_GIN_DIR) else os.path.join(os.path.dirname(_PACKAGE_DIR), "gin")
# train's single-run parameters; a curriculum (train.stages) reads each from its Stage instead
STAGED_RUN_IGNORES = ("mixture_or_task_name", "train_steps", "epochs")
GIN_PREFIX = "--gin."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gin flags every command that reads gin takes (train, plan, prepare): --gin_file
    (repeatable), --gin_search_paths, and a binding as --gin.NAME=VALUE (t5x), --gin_bindings
    NAME=VALUE (t5x's absl flag) or --gin NAME=VALUE."""
    parser.add_argument("--gin_file", action="append", default=[],
                        help="gin file (repeatable); found as given, under --gin_search_paths, or under gin/")
    parser.add_argument("--gin_search_paths", action="append", default=[], metavar="DIR[,DIR...]",
                        help="folders searched for gin files and their includes, before the working "
                             "directory and gin/ (repeatable, comma-separated)")
    parser.add_argument("--gin_bindings", "--gin", action="append", default=[], metavar="NAME=VALUE",
                        help="gin binding (repeatable); the t5x spelling --gin.NAME=VALUE works too")
    # argparse cannot declare the open-ended `--gin.NAME=VALUE` family: collect it from the
    # arguments this parser does not know.
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = parse_known(args, namespace)
        gin_args = [a for a in extras if a.startswith(GIN_PREFIX)]
        namespace.gin_bindings = list(namespace.gin_bindings) + [a[len(GIN_PREFIX):] for a in gin_args]
        return namespace, [a for a in extras if not a.startswith(GIN_PREFIX)]

    parser.parse_known_args = parse_known_args


def parse_flags(args: argparse.Namespace, *, require_files: bool = True) -> None:
    """`parse` with the flags `add_arguments` declared."""
    search_paths = [p for flag in args.gin_search_paths for p in flag.split(",") if p]
    parse(args.gin_file, args.gin_bindings, search_paths=search_paths, require_files=require_files)


def register_configurables() -> None:
    """Import every module whose functions gin files may name."""
    from orca_jax import partitioning  # noqa: F401
    from orca_jax.evaluation import periodic  # noqa: F401
    from orca_jax.train import checkpoints, curriculum, monitor, optimizer, trainer  # noqa: F401


def parse(gin_files: Sequence[str], bindings: Sequence[str], *, search_paths: Sequence[str] = (),
          require_files: bool = True) -> None:
    """Parse files (found as given, under `search_paths`, the working directory, or the repo's
    gin/ folder, first found wins) then `NAME=VALUE` bindings.

    Unknown names, bad syntax, missing files and bindings the run ignores surface as one-line
    UserErrors."""
    register_configurables()
    gin.clear_config()
    # gin only ever appends to its search path: set it whole, so one parse's paths do not
    # leak into the next in the same process
    gin.config._LOCATION_PREFIXES[:] = ["", *search_paths, os.getcwd(), GIN_DIR]
    if require_files and not gin_files:
        raise UserError("give at least one --gin_file (e.g. --gin_file=runs/tiny.gin)")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # gin logs every search-path miss before a hit as an error
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(bindings), finalize_config=True)
    except (ValueError, IOError, SyntaxError, KeyError) as e:
        raise UserError(f"gin config: {_explain(e)}") from None
    finally:
        root.setLevel(level)
    for binding in bindings:
        _check_used(binding)


def call(configurable, *args, **kwargs):
    """Call a gin configurable; a UserError from inside keeps its one line (gin appends
    "In call to configurable ..." lines to every exception passing through it), and a
    required parameter left unbound is one too."""
    try:
        return configurable(*args, **kwargs)
    except UserError as e:
        raise UserError(str(e).split("\n  In call to configurable")[0]) from None
    except RuntimeError as e:  # gin's "Required bindings for `train` not provided in config: [...]"
        if not str(e).startswith("Required bindings"):
            raise
        raise UserError(f"gin config: {str(e).splitlines()[0]}") from None


def bound_value(binding: str):
    """The value a parsed binding (e.g. "train.model_dir") holds, through the macros it names."""
    value = gin.query_parameter(binding)
    while isinstance(value, gin.config.ConfigurableReference) and value.configurable.wrapped is gin.config.macro:
        value = gin.query_parameter("%" + value.scoped_selector.rsplit("/", 1)[0])
    return value


def _explain(error: Exception) -> str:
    """gin's message on one line (without the whole parsed config it appends after "in config
    string:"), with the closest valid name for an unknown configurable, parameter or macro."""
    lines = str(error).split(" in config string:")[0].strip().splitlines()
    message = " ".join(line.strip() for line in lines)
    if m := re.match(r"No configurable matching (?:reference )?'@?([\w.]+)", message):
        return message + _did_you_mean(m.group(1), _configurable_names())
    if m := re.match(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'", message):
        return message + _did_you_mean(m.group(2), _parameter_names(m.group(1)))
    if m := re.match(r"No bindings specified for '([\w/]+)/gin\.macro'", message):
        name = m.group(1)
        return (f"macro {name} is used but never set: give --gin.{name}=VALUE"
                + _did_you_mean(name, _macros_set(), lead=", or "))
    return message


def _did_you_mean(name: str, candidates, lead: str = "; ") -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.7)
    return f"{lead}did you mean {close[0]}?" if close else ""


def _configurable_names() -> list[str]:
    return [gin.config._REGISTRY.minimal_selector(s) for s, _ in gin.config._REGISTRY.items()]


def _parameter_names(selector: str) -> list[str]:
    configurable = gin.config._REGISTRY.get_match(selector)
    return list(inspect.signature(configurable.wrapped).parameters) if configurable else []


def _macros_set() -> list[str]:
    return [scope for scope, selector in gin.config._CONFIG if selector == "gin.macro"]


def _macro_names(value) -> set[str]:
    """Macros a bound value refers to (%NAME), at any depth of lists and dicts."""
    return {ref.scoped_selector.rsplit("/", 1)[0] for ref in gin.config.iterate_references(value)
            if ref.configurable.wrapped is gin.config.macro}


def _binding_users() -> dict[str, set[tuple[str, str, str]]]:
    """macro -> the (scope, configurable, parameter) bindings that read it, through macros of macros."""
    direct: dict[str, set] = {}
    for (scope, selector), params in gin.config._CONFIG.items():
        for param, value in params.items():
            user = ("", "%" + scope, "") if selector == "gin.macro" else (scope, selector, param)
            for name in _macro_names(value):
                direct.setdefault(name, set()).add(user)

    def resolve(name, seen):
        users = set()
        for user in direct.get(name, ()):
            if user[1].startswith("%"):
                if user[1] not in seen:
                    users |= resolve(user[1][1:], seen | {user[1]})
            else:
                users.add(user)
        return users

    return {name: resolve(name, {"%" + name}) for name in direct}


def _ignored_by_run() -> dict[tuple[str, str, str], str]:
    """Bindings this run reads from somewhere else: (scope, configurable, parameter) -> what it reads instead."""
    from orca_jax.train import curriculum
    train, stage = f"{curriculum.__name__}.train", f"{curriculum.__name__}.Stage"
    if gin.config._CONFIG.get(("", train), {}).get("stages") is None:
        return {}
    ignored = {}
    for param in STAGED_RUN_IGNORES:
        used = []
        for (scope, selector), params in sorted(gin.config._CONFIG.items()):
            if selector == stage and param in params:
                used += sorted(_macro_names(params[param])) or [f"{scope}/Stage.{param}"]
        ignored[("", train, param)] = " / ".join(used) or f"Stage.{param} in each stage"
    return ignored


def _check_used(binding: str) -> None:
    """Fail for a command-line binding the parsed run never reads."""
    key = binding.split("=", 1)[0].strip()
    if not re.fullmatch(r"[\w/.]+", key):  # not NAME=VALUE (e.g. an include line)
        return
    ignored = _ignored_by_run()
    if "." in key:
        scope, selector, param = config_parser.parse_binding_key(key)
        read = {(scope, gin.config._REGISTRY.get_match(selector).selector, param)}
    else:  # a macro
        users = _binding_users()
        read = users.get(key, set())
        if not read:
            in_use = [name for name, used in users.items() if used and not used <= ignored.keys()]
            raise UserError(f"gin binding {binding.strip()!r}: no binding of this run uses macro {key}"
                            + _did_you_mean(key, in_use))
    if read <= ignored.keys():
        _, _, param = sorted(read)[0]
        raise UserError(f"gin binding {binding.strip()!r}: this run is a curriculum (train.stages), which ignores "
                        f"train.{param}; set {ignored[sorted(read)[0]]} instead")
