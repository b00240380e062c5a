"""`orca-jax reproduce --suite mini [--seeds 5] [--only_seeds K,...] [--out DIR]`: the papers'
ablations in miniature on the synthetic world, each claim with a paired 95% interval over
seeds; resumable, and splittable by seed across machines."""


def add_arguments(parser):
    from orca_jax.pipelines.reproduce import SUITES

    parser.add_argument("--suite", choices=sorted(SUITES), default="mini",
                        help="mini: the README's table; ci: a reduced size for tests")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per condition (default 5)")
    parser.add_argument("--distill", action="store_true",
                        help="also train a larger local teacher per seed and a progressive student distilled "
                             "from its logits")
    parser.add_argument("--only_seeds", type=_seed_list, default=None, metavar="K[,K...]",
                        help="run only these of the seeds (e.g. one per machine); the claims are judged by a "
                             "later run once every seed's folder is in --out. Finished conditions are never "
                             "rerun: a stopped run resumes where it stopped")
    parser.add_argument("--out", default="reproduce_out", help="output directory (default: ./reproduce_out)")


def _seed_list(text: str) -> list[int]:
    import argparse

    try:
        return sorted({int(k) for k in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds as integers separated by commas (e.g. 0,3), got {text!r}")


def run(args) -> int:
    from orca_jax.errors import UserError
    from orca_jax.pipelines.reproduce import run_reproduce

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    results = run_reproduce(args.out, args.suite, args.seeds, args.distill, only_seeds=args.only_seeds)
    if results is not None:
        print(f"wrote {args.out}/results.md, results.json, ablations.png ({results['seconds']} s)")
    return 0
