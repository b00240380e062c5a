"""orca-jax train --gin_file=FILE [--gin_file=...] [--gin_search_paths=DIR] [--gin.NAME=VALUE ...] [multi-host flags]"""

import argparse
import os

from orca_jax.train import gin_setup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gin_setup.add_arguments(parser)
    parser.add_argument("--coordinator_address", help="host:port of process 0 (multi-host)")
    parser.add_argument("--num_processes", type=int, help="number of processes (multi-host)")
    parser.add_argument("--process_id", type=int, help="this process's index (multi-host)")
    parser.add_argument("--auto_distributed", action="store_true",
                        help="let JAX detect the cluster (SLURM, Open MPI, TPU pod) and join it")


def run(args) -> int:
    from orca_jax import partitioning
    from orca_jax.train import curriculum

    partitioning.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id,
                                        auto_detect=args.auto_distributed)
    gin_setup.parse_flags(args)
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
