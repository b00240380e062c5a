"""`orca-jax reproduce --suite mini [--seeds 5] [--out DIR]`: the papers' ablations in
miniature on the synthetic world, each claim with a paired 95% interval over seeds."""


def add_arguments(parser):
    from orca_jax.pipelines.reproduce import SUITES

    parser.add_argument("--suite", choices=sorted(SUITES), default="mini",
                        help="mini: the README's table; ci: a reduced size for tests")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per condition (default 5)")
    parser.add_argument("--distill", action="store_true",
                        help="also train a larger local teacher per seed and a progressive student distilled "
                             "from its logits")
    parser.add_argument("--out", default="reproduce_out", help="output directory (default: ./reproduce_out)")


def run(args) -> int:
    from orca_jax.errors import UserError
    from orca_jax.pipelines.reproduce import run_reproduce

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    results = run_reproduce(args.out, args.suite, args.seeds, args.distill)
    print(f"wrote {args.out}/results.md, results.json, ablations.png ({results['seconds']} s)")
    return 0
