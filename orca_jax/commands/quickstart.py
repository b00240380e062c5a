"""`orca-jax quickstart [--out DIR]`: the whole Orca pipeline on the synthetic world, on a CPU."""


def add_arguments(parser):
    from orca_jax.pipelines.quickstart import PRESETS

    parser.add_argument("--out", default="quickstart_out", help="output directory (default: ./quickstart_out)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full",
                        help="full: the README's run (minutes); ci: a reduced size for tests")
    parser.add_argument("--seed", type=int, default=None, help="seed for data, teachers and initialisation")


def run(args) -> int:
    import dataclasses

    from orca_jax.pipelines.quickstart import PRESETS, run_quickstart

    config = PRESETS[args.preset]
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    results = run_quickstart(args.out, config)
    print(f"wrote {args.out}/results.md, results.json, training_curves.png ({results['seconds']['total']} s)")
    return 0
