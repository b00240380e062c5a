"""Benchmark files fetched on first use: the official releases, pinned, cached, checksummed.

`eval` without `--data_dir` calls `ensure_benchmarks`: every file a benchmark needs is
taken from the cache folder or fetched from its official repository at a pinned commit
(`SOURCES`), written to the cache in the layout `benchmarks.py` reads, and recorded in
the cache's `SOURCES.jsonl` (a line per file) with its source URL, commit and sha256. A
cached file whose sha256 no longer matches that record is an error, not silently re-read;
a pin moved to a new commit fetches the file again. The pins name commits at which the
files exist; their sha256 is the one recorded at the first fetch (none could be fetched
where this was written).

Fetching goes through a file source: `GitHubSource` (raw.githubusercontent.com) by
default, or `MirrorSource`, a local folder laid out as `<owner>/<repo>/<commit>/<path>`
(an offline mirror, and what tests use instead of the network).
"""

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

from orca_jax.data.jsonl import read_jsonl
from orca_jax.errors import UserError
from orca_jax.evaluation.benchmarks import AGIEVAL_TASKS
from orca_jax.evaluation.protocols import BBH_FREE_FORM, BBH_MULTIPLE_CHOICE

MANIFEST = "SOURCES.jsonl"


@dataclass(frozen=True)
class Source:
    """One benchmark's official repository, pinned to a commit."""
    repo: str
    commit: str
    files: dict[str, str]  # file under the cache's layout -> path in the repository
    license: str


SOURCES = {
    "bbh": Source("suzgunmirac/BIG-Bench-Hard", "d36f314d7b39c6181c2e98cd43daa9fbb7e744e0",
                  {f"bbh/{t}.json": f"bbh/{t}.json" for t in sorted(BBH_MULTIPLE_CHOICE + BBH_FREE_FORM)}, "MIT"),
    "agieval": Source("ruixiangcui/AGIEval", "442e251e634599873644833b729c0ea83d77ce57",
                      {f"agieval/{t}.jsonl": f"data/v1/{t}.jsonl" for t in AGIEVAL_TASKS}, "MIT (data: see data/v1/LICENSE)"),
    "gsm8k": Source("openai/grade-school-math", "b52325ad96ea38979fdc222e881ff5d105f95295",
                    {"gsm8k/test.jsonl": "grade_school_math/data/test.jsonl"}, "MIT"),
}


class SourceUnavailable(Exception):
    """The file could not be fetched (offline, not mirrored, HTTP error)."""


class GitHubSource:
    base = "https://raw.githubusercontent.com"

    def url(self, repo: str, commit: str, path: str) -> str:
        return f"{self.base}/{repo}/{commit}/{path}"

    def fetch(self, repo: str, commit: str, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.url(repo, commit, path), timeout=60) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as e:
            raise SourceUnavailable(str(getattr(e, "reason", e))) from None


class MirrorSource(GitHubSource):
    """A local folder standing in for GitHub: `<root>/<owner>/<repo>/<commit>/<path>`."""

    def __init__(self, root: str):
        self.root = root

    def fetch(self, repo: str, commit: str, path: str) -> bytes:
        try:
            with open(os.path.join(self.root, repo, commit, path), "rb") as f:
                return f.read()
        except OSError as e:
            raise SourceUnavailable(f"not in mirror {self.root}: {e.strerror}") from None


def default_cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "orca-jax", "benchmarks")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(cache_dir: str) -> dict:
    """File name -> its record (source, repo, commit, sha256, license, fetched)."""
    path = os.path.join(cache_dir, MANIFEST)
    return {r["file"]: r for _, r in read_jsonl(path)} if os.path.exists(path) else {}


def _write_manifest(cache_dir: str, manifest: dict) -> None:
    path = os.path.join(cache_dir, MANIFEST)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(dict(record, file=name), sort_keys=True) + "\n" for name, record in sorted(manifest.items()))
    os.replace(path + ".tmp", path)


def _cached(cache_dir: str, name: str, manifest: dict, source: Source, url: str) -> bool:
    """Whether the cache holds `name` as pinned. A file put there by hand (as the offline
    error asks) is recorded with its sha256; a file changed since it was recorded is an error."""
    path, record = os.path.join(cache_dir, name), manifest.get(name)
    if not os.path.exists(path) or (record is not None and record["commit"] != source.commit):
        return False
    actual = sha256_of(path)
    if record is None:
        manifest[name] = {"source": url, "repo": source.repo, "commit": source.commit, "sha256": actual,
                          "license": source.license, "fetched": "placed by hand"}
        _write_manifest(cache_dir, manifest)
    elif actual != record["sha256"]:
        raise UserError(f"{path}: sha256 {actual} differs from {record['sha256']} recorded when it was fetched "
                        f"from {record['source']}; delete the file to fetch it again")
    return True


def ensure_benchmarks(benchmarks: list[str], cache_dir: str, source: GitHubSource | None = None) -> dict:
    """Makes `cache_dir` hold every file of `benchmarks` (fetching what is missing) and
    returns the provenance for the summary: {"dir", "files": {name: {source, commit, sha256}}}.
    Offline with files missing: one error listing each file, its URL and where it goes."""
    source = source or GitHubSource()
    unknown = [b for b in benchmarks if b not in SOURCES]
    if unknown:
        raise UserError(f"benchmark '{unknown[0]}' has no official files to fetch "
                        f"(fetched: {', '.join(SOURCES)}); give --data_dir with {unknown[0]}/ in it")
    os.makedirs(cache_dir, exist_ok=True)
    manifest = _read_manifest(cache_dir)
    missing = []
    for benchmark in benchmarks:
        pinned = SOURCES[benchmark]
        for name, repo_path in pinned.files.items():
            url = source.url(pinned.repo, pinned.commit, repo_path)
            if _cached(cache_dir, name, manifest, pinned, url):
                continue
            try:
                content = source.fetch(pinned.repo, pinned.commit, repo_path)
            except SourceUnavailable as e:
                missing.append((name, url, str(e)))
                continue
            path = os.path.join(cache_dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(content)
            os.replace(path + ".tmp", path)
            manifest[name] = {"source": url, "repo": pinned.repo,
                              "commit": pinned.commit, "sha256": hashlib.sha256(content).hexdigest(),
                              "license": pinned.license,
                              "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            _write_manifest(cache_dir, manifest)
    if missing:
        listing = "\n".join(f"  {os.path.join(cache_dir, name)}  <- {url}" for name, url, _ in missing)
        raise UserError(f"{len(missing)} benchmark file(s) are not cached and could not be fetched "
                        f"({missing[0][2]}). Download each to the path shown (or pass --data_dir with the "
                        f"official layouts):\n{listing}")
    names = [name for b in benchmarks for name in SOURCES[b].files]
    return {"dir": cache_dir, "files": {name: {k: manifest[name][k] for k in ("source", "commit", "sha256")}
                                        for name in names}}


def describe_local(data_dir: str, names: list[str]) -> dict:
    """Provenance of files read from a user's --data_dir: their sha256."""
    return {"dir": data_dir, "files": {name: {"sha256": sha256_of(os.path.join(data_dir, name))} for name in names
                                       if os.path.exists(os.path.join(data_dir, name))}}


def fetched_benchmarks(benchmarks: list[str], cache_dir: str | None = None, mirror: str | None = None) -> tuple[str, dict]:
    """`--data_cache` / `--data_mirror` as commands take them -> (the cache folder holding
    every file of `benchmarks`, their provenance)."""
    cache = cache_dir or default_cache_dir()
    return cache, ensure_benchmarks(benchmarks, cache, MirrorSource(mirror) if mirror else None)


def add_data_arguments(parser) -> None:
    """--data_dir, --data_cache and --data_mirror, as `eval` and `decontaminate` take them."""
    parser.add_argument("--data_dir", help="folder with bbh/, agieval/, gsm8k/, mc/ in their official layouts "
                                           "(default: the official files, fetched once into --data_cache)")
    parser.add_argument("--data_cache", default=None, help="where fetched benchmark files are kept "
                                                           "(default: $XDG_CACHE_HOME or ~/.cache, /orca-jax/benchmarks)")
    parser.add_argument("--data_mirror", default=None,
                        help="fetch from this local folder (<owner>/<repo>/<commit>/<path>) instead of GitHub")
