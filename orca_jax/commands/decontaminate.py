"""`orca-jax decontaminate --traces DIR --benchmarks bbh,agieval,gsm8k`: which benchmark test
items teacher traces contain (13-gram overlap, `orca_jax.evaluation.decontamination`), per
benchmark with examples, and optionally the trace files again without the contaminated traces.
Exit status 1 when any item is contaminated, so scripts can stop on it."""

import json
import os

from orca_jax.data.traces import FORMATS
from orca_jax.errors import UserError
from orca_jax.evaluation.data_sources import add_data_arguments

TRACE_SUFFIXES = (".jsonl", ".parquet")


def add_arguments(parser):
    parser.add_argument("--traces", required=True, action="append",
                        help="trace file, or folder of .jsonl/.parquet trace files; repeatable")
    parser.add_argument("--benchmarks", default="bbh,agieval,gsm8k",
                        help="comma-separated: bbh, agieval, gsm8k, mc, or one task as bbh:navigate")
    add_data_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default=None, help="trace format (default: detected per file)")
    parser.add_argument("--examples", type=int, default=5, help="contaminated items listed per benchmark")
    parser.add_argument("--out", default=None, help="write the report here as JSON")
    parser.add_argument("--write_filtered", default=None,
                        help="folder: each trace file again (orca-jax JSONL), without its contaminated traces")


def trace_files(paths: list[str]) -> list[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(TRACE_SUFFIXES))
            if not found:
                raise UserError(f"--traces {path}: no {' or '.join(TRACE_SUFFIXES)} files in this folder")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"--traces {path}: no such file or folder")
    return files


def _filtered_path(folder: str, path: str, taken: set[str]) -> str:
    out = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".jsonl")
    if out in taken or os.path.abspath(out) == os.path.abspath(path):
        raise UserError(f"--write_filtered {folder}: {path} would overwrite {out}; choose another folder")
    taken.add(out)
    return out


def benchmark_scan(benchmarks: str, data_dir: str | None, data_cache: str | None = None,
                   data_mirror: str | None = None):
    """(Scan over the items of `benchmarks`, comma-separated as --benchmarks takes them; the
    folder they were read from: `data_dir`, else the official files fetched once)."""
    from orca_jax.evaluation import data_sources
    from orca_jax.evaluation.benchmarks import load_examples
    from orca_jax.evaluation.decontamination import BenchmarkIndex, Scan

    specs = [s for s in benchmarks.split(",") if s.strip()]
    if not data_dir:
        names = list(dict.fromkeys(spec.strip().partition(":")[0] for spec in specs))
        data_dir, _ = data_sources.fetched_benchmarks(names, data_cache, data_mirror)
    return Scan(BenchmarkIndex.build(load_examples(data_dir, specs))), data_dir


def run(args) -> int:
    from orca_jax.data.traces import read_traces, write_traces
    from orca_jax.evaluation.decontamination import NGRAM

    files = trace_files(args.traces)
    scan, data_dir = benchmark_scan(args.benchmarks, args.data_dir, args.data_cache, args.data_mirror)
    per_file, taken = {}, set()
    if args.write_filtered:
        os.makedirs(args.write_filtered, exist_ok=True)
    for path in files:
        counts = {"traces": 0, "contaminated": 0}
        clean = _clean_traces(read_traces(path, format=args.format, require_response=False), path, scan, counts)
        if args.write_filtered:
            counts["written"] = write_traces(_filtered_path(args.write_filtered, path, taken), clean)
        else:
            for _ in clean:
                pass
        per_file[path] = counts
    result = {"ngram": NGRAM, "data_dir": data_dir, "benchmarks": scan.report(args.examples), "trace_files": per_file}
    _print(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, ensure_ascii=False)
    return 1 if any(b["contaminated"] for b in result["benchmarks"].values()) else 0


def _clean_traces(traces, path: str, scan, counts: dict):
    """The traces that share nothing with a benchmark item; counts all and the contaminated."""
    for trace in traces:
        dirty = scan.check(path, trace)
        counts["traces"] += 1
        counts["contaminated"] += dirty
        if not dirty:
            yield trace


def print_benchmarks(benchmarks: dict[str, dict], ngram: int) -> None:
    """`Scan.report` as a table per benchmark, then the contaminated items it lists."""
    print(f"| benchmark | items | checked ({ngram}-grams) | too short | contaminated |")
    print("| --- | --- | --- | --- | --- |")
    for name, b in benchmarks.items():
        print(f"| {name} | {b['items']} | {b['checked']} | {b['too_short']} | {b['contaminated']} |")
    for name, b in benchmarks.items():
        for e in b["examples"]:
            print(f"{name} {e['item']} in {e['trace_file']} trace {e['trace_id']}: \"{e['overlap']}\"")


def _print(result: dict) -> None:
    print_benchmarks(result["benchmarks"], result["ngram"])
    for path, counts in result["trace_files"].items():
        print(f"{path}: {counts['contaminated']} of {counts['traces']} traces contaminated"
              + (f", {counts['written']} written" if "written" in counts else ""))
