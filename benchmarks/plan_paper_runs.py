"""Full-depth `orca-jax plan` for the paper runs on the target topologies: writes
benchmarks/results/plan_paper_runs.json and a markdown table (plan_paper_runs.md).

These are ahead-of-time compiled estimates on simulated CPU devices, not measured runs.
Each plan runs `orca-jax plan` in its own process (the device count is fixed at JAX start);
a full-depth 7B/13B step takes minutes to compile on a CPU.

    python benchmarks/plan_paper_runs.py [--only orca2_7b] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HEADER = """Ahead-of-time compiled estimates (`orca-jax plan`: the train step compiled by XLA:CPU for
simulated devices), not measured runs. Parameters and Adam moments are exact per-device shard
sizes. Temporaries are XLA:CPU's buffer assignment: attention is compiled as dense XLA
attention (the TPU splash / GPU cuDNN kernels do not compile for CPU), and XLA:CPU keeps each
layer's all-gathered weights from forward to backward, so they overstate what the TPU/GPU
compilers need. Step time = model FLOPs / (devices x peak x 40% MFU); stage hours from the gin
dataset sizes.
"""

# (run, partitioning preset, extra gin bindings)
PLANS = [
    ("orca1_13b", "gpu_4x8_h100", []),
    ("orca1_13b", "tpu_v4_128", []),
    ("orca2_7b", "gpu_1x8", []),
    ("orca2_7b", "tpu_v5p_128", []),
    ("orca2_13b", "gpu_4x8_h100", []),
    ("orca2_13b", "tpu_v5p_128", []),
    # one packed row per device per microbatch, where the whole batch at once does not fit
    ("orca1_13b", "gpu_4x8_h100", ["NUM_MICROBATCHES=4"]),
    ("orca1_13b", "tpu_v4_128", ["NUM_MICROBATCHES=2"]),
    ("orca2_7b", "gpu_1x8", ["NUM_MICROBATCHES=8"]),
    ("orca2_13b", "gpu_4x8_h100", ["NUM_MICROBATCHES=2"]),
]


def plan_one(run: str, preset: str, bindings: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.json")
        cmd = [sys.executable, "-m", "orca_jax.cli", "plan", f"--gin_file=runs/{run}.gin",
               f"--gin_file=partitioning/{preset}.gin", f"--json={out}"] + [f"--gin.{b}" for b in bindings]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
        result = {"run": run, "preset": preset, "bindings": bindings, "exit_code": proc.returncode,
                  "wall_seconds": time.perf_counter() - start, "report": proc.stdout}
        if os.path.exists(out):
            with open(out) as f:
                result["plan"] = json.load(f)
        if proc.returncode:
            result["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "(no message)"
        return result


def table(results: list[dict]) -> str:
    rows = ["| run | topology | mesh | batch | params + Adam / device | temporaries / device | total / HBM (GiB) "
            "| fits | step @ 40% MFU | tokens/s | stage hours | total hours |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        p = r.get("plan")
        if p is None:
            rows.append(f"| {r['run']} | {r['preset']} | | | | | | no: {r.get('error', '')} | | | | |")
            continue
        mesh = " x ".join(f"{k} {v}" for k, v in p["mesh"].items() if v > 1) or "1"
        stage_hours = [s["hours"] for s in p["stages"]]
        rows.append(
            f"| {r['run']} | {p['hardware']} | {mesh} | {p['batch_size']} x {p['sequence_length']}"
            f"{f' in {m} microbatches' if (m := p['num_microbatches']) > 1 else ''} "
            f"| {p['params_gib'] + p['optimizer_gib']:.1f} GiB | {p['temporaries_gib']:.1f} GiB "
            f"| {p['total_gib']:.1f} / {p['hbm_gib']:g} | {'yes' if p['fits'] else 'no'} "
            f"| {p['step_seconds']:.2f} s | {p['tokens_per_second']:,.0f} "
            f"| {' + '.join(f'{h:.0f}' for h in stage_hours)} | {sum(stage_hours):.0f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help="plan only this run (e.g. orca2_7b)")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "plan_paper_runs.json")
    done = {}
    if os.path.exists(json_path):  # resumable: keep plans already made
        with open(json_path) as f:
            done = {(r["run"], r["preset"], tuple(r["bindings"])): r for r in json.load(f)}
    results = []
    for run, preset, bindings in PLANS:
        key = (run, preset, tuple(bindings))
        if args.only and run != args.only:
            if key in done:
                results.append(done[key])
            continue
        result = done.get(key) or plan_one(run, preset, bindings)
        results.append(result)
        print(f"{run} on {preset}: exit {result['exit_code']} in {result['wall_seconds']:.0f} s", flush=True)
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "plan_paper_runs.md"), "w") as f:
        f.write(HEADER + "\n" + table(results) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
