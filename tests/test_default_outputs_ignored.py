"""What the commands write into the repository by default is ignored by git (issue 18 item 5):
each default output path, read from the command's own parser or constant, and the folders the
README's examples write."""

import argparse
import os
import re
import shutil
import subprocess

import pytest

from orca_jax.commands import quickstart, reproduce
from orca_jax.data.loader import DEFAULT_CACHE_ROOT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _default_out(command) -> str:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.get_default("out")


def _readme_outputs() -> set[str]:
    """Folders the README's commands write with --out / --to (relative paths only)."""
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    return {m for m in re.findall(r"orca-jax \w[\w-]* [^\n]*?--(?:out|to) ([\w.-]+)", readme)} - {"DIR", "OUT"}


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO).returncode == 0


@pytest.mark.skipif(shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")),
                    reason="needs a git checkout")
def test_default_outputs_are_ignored():
    defaults = {DEFAULT_CACHE_ROOT, _default_out(quickstart), _default_out(reproduce)}
    written = defaults | _readme_outputs()
    assert {"orca_jax_cache", "quickstart_out", "reproduce_out", "eval_out"} <= written
    assert [p for p in sorted(written) if not _ignored(f"{p}/some_file")] == []
    assert _ignored("answers_judge/judgments.jsonl") and _ignored("traces.cache.sqlite")
    assert not _ignored("orca_jax/cli.py") and not _ignored("gin/runs/tiny.gin")
