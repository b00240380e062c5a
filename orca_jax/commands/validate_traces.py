"""`orca-jax validate-traces FILE`: read a trace file as training would and report what is in it."""

from orca_jax.data.traces import FORMATS, ON_BAD_RECORD, ReadReport, read_traces


def add_arguments(parser):
    parser.add_argument("file", help="trace file (.jsonl or .parquet)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="trace format (default: detected)")
    parser.add_argument("--on_bad_record", choices=ON_BAD_RECORD, default="skip",
                        help="skip: report every bad record (default); raise: stop at the first")
    parser.add_argument("--prompts", action="store_true", help="records are prompts for generation: no response required")


def _print_counts(title, counter):
    print(f"{title}:")
    for key, n in counter.most_common():
        label = repr(key[:100] + ("..." if len(key) > 100 else "")) if key else "(empty)"
        print(f"  {n:8d}  {label}")


def run(args) -> int:
    report = ReadReport()
    for _ in read_traces(args.file, format=args.format, on_bad_record=args.on_bad_record, report=report,
                          require_response=not args.prompts):
        pass
    print(f"{args.file}: {report.records} good records, {len(report.bad)} bad")
    _print_counts("per source", report.per_source)
    _print_counts("per system message", report.per_system)
    _print_counts("per strategy", report.per_strategy)
    for bad in report.bad:
        print(bad)
    if report.bad:
        print("bad records per reason:")
        for reason, n in sorted(report.skipped_per_reason.items(), key=lambda kv: -kv[1]):
            print(f"  {n:8d}  {reason}")
    return 1 if report.bad else 0
