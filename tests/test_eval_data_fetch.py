"""Benchmark files fetched on first use, from a local mirror standing in for GitHub (these
tests never touch the network): checksums recorded and verified, a clear list when offline."""

import hashlib
import json
import os

import pytest

from benchmark_fixtures import official_files, write_mirror
from orca_jax.cli import main
from orca_jax.errors import UserError
from orca_jax.evaluation.data_sources import SOURCES, MirrorSource, ensure_benchmarks


def test_fetch_records_and_verifies_checksums(tmp_path):
    mirror, cache = MirrorSource(write_mirror(tmp_path / "mirror")), str(tmp_path / "cache")
    provenance = ensure_benchmarks(["bbh", "gsm8k"], cache, mirror)
    expected = official_files()
    assert set(provenance["files"]) == {n for n in expected if n.startswith(("bbh/", "gsm8k/"))}
    for name, record in provenance["files"].items():
        assert open(os.path.join(cache, name), "rb").read() == expected[name]
        assert record["sha256"] == hashlib.sha256(expected[name]).hexdigest()
        source = SOURCES[name.split("/")[0]]
        assert record["commit"] == source.commit and f"/{source.repo}/{source.commit}/" in record["source"]
    # Cached: a later run needs no source at all.
    assert ensure_benchmarks(["bbh", "gsm8k"], cache, MirrorSource(str(tmp_path / "empty"))) == provenance
    # A cached file that changed since it was fetched is an error naming it, not data silently read.
    with open(os.path.join(cache, "gsm8k", "test.jsonl"), "ab") as f:
        f.write(b"\n")
    with pytest.raises(UserError, match=r"gsm8k/test.jsonl: sha256 [0-9a-f]{64} differs from"):
        ensure_benchmarks(["gsm8k"], cache, mirror)


def test_offline_error_lists_every_file_and_where_it_goes(tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["eval", "--model", "unused", "--benchmarks", "agieval,gsm8k", "--data_mirror", str(tmp_path / "empty"),
            "--data_cache", str(cache), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    agieval = SOURCES["agieval"]
    expected = {**agieval.files, **SOURCES["gsm8k"].files}
    assert f"{len(expected)} benchmark file(s) are not cached and could not be fetched" in err
    for name, repo_path in expected.items():
        source = SOURCES[name.split("/")[0]]
        url = f"https://raw.githubusercontent.com/{source.repo}/{source.commit}/{repo_path}"
        assert f"{os.path.join(str(cache), name)}  <- {url}" in err
    # The files put where the error says are used (and recorded) without fetching.
    files = official_files()
    for name in expected:
        os.makedirs(os.path.dirname(cache / name), exist_ok=True)
        (cache / name).write_bytes(files[name])
    provenance = ensure_benchmarks(["agieval", "gsm8k"], str(cache), MirrorSource(str(tmp_path / "empty")))
    assert provenance["files"]["gsm8k/test.jsonl"]["sha256"] == hashlib.sha256(files["gsm8k/test.jsonl"]).hexdigest()
    manifest = {r["file"]: r for r in map(json.loads, (cache / "SOURCES.jsonl").read_text().splitlines())}
    assert manifest["gsm8k/test.jsonl"]["fetched"] == "placed by hand"


def test_mc_cannot_be_fetched(tmp_path):
    with pytest.raises(UserError, match="benchmark 'mc' has no official files to fetch"):
        ensure_benchmarks(["mc"], str(tmp_path), MirrorSource(str(tmp_path)))
