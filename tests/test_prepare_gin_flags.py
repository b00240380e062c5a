"""`prepare` reads gin as `train` and `plan` do (issue 15 item 6): the same flags, parsed by the
same function, the same search path and the same one-line errors."""

import gin
import pytest

from orca_jax.cli import _build_parser, main

# what each command needs besides gin flags to get as far as parsing gin
REQUIRED = {"train": [], "plan": ["--devices=1"], "prepare": ["--task=traces_none"]}


@pytest.fixture(autouse=True)
def _plan_device_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # plan sets its device flags for this process only


def gin_flags(command: str, argv: list[str]) -> dict:
    args = _build_parser(command).parse_args([command, *REQUIRED[command], *argv])
    return {k: getattr(args, k) for k in ("gin_file", "gin_search_paths", "gin_bindings")}


def error_of(capsys, command: str, argv: list[str]) -> str:
    rc = main([command, *REQUIRED[command], *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    prefix = f"orca-jax {command}: error: "
    assert err.startswith(prefix), err
    return err[len(prefix):]


def test_every_spelling_of_a_binding_reaches_gin_alike():
    argv = ["--gin_file=a.gin", "--gin_search_paths=x,y", "--gin.SEED=1", "--gin_bindings=train.seed=2",
            "--gin", "Monitor.log_every=3"]
    parsed = {command: gin_flags(command, argv) for command in REQUIRED}
    assert parsed["train"] == {"gin_file": ["a.gin"], "gin_search_paths": ["x,y"],
                               "gin_bindings": ["train.seed=2", "Monitor.log_every=3", "SEED=1"]}
    assert parsed["plan"] == parsed["prepare"] == parsed["train"]


@pytest.mark.parametrize("argv, expected", [
    (["--gin_file=no_such_run.gin"], "gin config: Unable to open file: no_such_run.gin."),
    (["--gin_file=runs/tiny.gin", "--gin.register_trace_task.template='plain'"],
     "gin config: No configurable matching 'register_trace_task'"),
])
def test_bad_gin_is_the_same_one_line_error_in_every_command(capsys, argv, expected):
    import tasks.traces  # noqa: F401  (registers prepare's configurables, so the suggestions match)

    errors = {command: error_of(capsys, command, argv) for command in REQUIRED}
    assert errors["prepare"] == errors["train"] == errors["plan"], errors
    assert errors["train"].startswith(expected), errors


def test_search_paths_find_files_and_their_includes_for_one_parse_only(tmp_path, capsys):
    runs = tmp_path / "my_runs"
    runs.mkdir()
    (runs / "data.gin").write_text("include 'common.gin'\nregister_trace_tasks.template = 'plain'\n")
    (runs / "common.gin").write_text("register_trace_tasks.on_bad_record = 'skip'\n")
    # comma-separated, first hit wins; the task then does not exist, after gin was read
    err = error_of(capsys, "prepare", [f"--gin_search_paths={tmp_path / 'empty'},{runs}", "--gin_file=data.gin"])
    assert err.startswith("--task traces_none: no such seqio Task"), err
    assert gin.query_parameter("register_trace_tasks.template") == "plain"
    assert gin.query_parameter("register_trace_tasks.on_bad_record") == "skip"
    # the next parse, without the flag, does not see the folder
    err = error_of(capsys, "prepare", ["--gin_file=data.gin"])
    assert err.startswith("gin config: Unable to open file: data.gin.") and str(runs) not in err, err
