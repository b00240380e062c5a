"""orca-jax plan --gin_file=FILE [--gin.X=Y] --devices N [--hbm_gib G] [--peak_tflops T] [--mfu M] [--json OUT]"""

import argparse
import json

from orca_jax.train import gin_setup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gin_setup.add_arguments(parser)
    parser.add_argument("--devices", type=int, default=None,
                        help="devices in the mesh, simulated on CPU (default: Hardware.devices from a partitioning preset)")
    parser.add_argument("--hbm_gib", type=float, default=None, help="memory per device in GiB (default: Hardware.hbm_gib)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="dense bf16 TFLOP/s per device (default: Hardware.peak_tflops)")
    parser.add_argument("--mfu", type=float, default=None, help="assumed model-FLOPs utilisation (default: Hardware.mfu, 0.4)")
    parser.add_argument("--json", default=None, help="also write the plan as JSON to this file")


def run(args) -> int:
    from orca_jax import planning
    from orca_jax.errors import UserError

    gin_setup.parse_flags(args)
    devices = args.devices or planning.Hardware().devices
    if devices is None:
        raise UserError("give --devices N (or a partitioning preset that sets Hardware.devices)")
    planning.use_simulated_devices(devices)
    plan = planning.make_plan(hbm_gib=args.hbm_gib, peak_tflops=args.peak_tflops, mfu=args.mfu)
    print(planning.format_plan(plan))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(plan.to_dict(), f, indent=2)
    plan.check_fits()
    return 0
