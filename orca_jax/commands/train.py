"""orca-jax train --gin_file=FILE [--gin_file=...] [--gin.NAME=VALUE ...] [multi-host flags]"""

import argparse
import os

GIN_PREFIX = "--gin."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gin_arguments(parser)
    parser.add_argument("--coordinator_address", help="host:port of process 0 (multi-host)")
    parser.add_argument("--num_processes", type=int, help="number of processes (multi-host)")
    parser.add_argument("--process_id", type=int, help="this process's index (multi-host)")
    parser.add_argument("--auto_distributed", action="store_true",
                        help="let JAX detect the cluster (SLURM, Open MPI, TPU pod) and join it")


def add_gin_arguments(parser: argparse.ArgumentParser) -> None:
    """--gin_file (repeatable), --gin_bindings and the t5x-style --gin.NAME=VALUE family."""
    parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable; found as given or under gin/)")
    parser.add_argument("--gin_bindings", action="append", default=[], metavar="NAME=VALUE",
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


def run(args) -> int:
    from orca_jax import partitioning
    from orca_jax.train import curriculum, gin_setup

    partitioning.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id,
                                        auto_detect=args.auto_distributed)
    gin_setup.parse(args.gin_file, args.gin_bindings)
    summary = gin_setup.call(curriculum.train)
    model_dir = os.path.abspath(gin_setup.bound_value("train.model_dir"))
    # every stage ends with a checkpoint at its last step, and a preempted run saves where it stopped
    checkpoint = os.path.join(model_dir, "checkpoints", str(summary["final_step"]))
    if summary.get("preempted"):
        print(f"stopped at step {summary['final_step']} (preempted); checkpoint {checkpoint}: "
              f"run the same command to resume")
        return 143
    print(f"done: MODEL_DIR {model_dir}; last checkpoint {checkpoint}; summary {os.path.join(model_dir, 'summary.json')}")
    return 0
