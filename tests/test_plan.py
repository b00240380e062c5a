"""`orca-jax plan`: compiled per-device memory against a measured step, the paper runs' gin
files, reduced-depth plans of each, and a clear shortfall when a mesh cannot hold a model.

Plans need N simulated CPU devices, fixed before JAX starts, so each check runs in its own
process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1024 ** 3
PAPER_RUNS = ("runs/orca1_13b.gin", "runs/orca2_7b.gin", "runs/orca2_13b.gin")
# every test in this file is CPU-only, whatever the machine has
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)


def run_python(code: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def last_json_line(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Plans the tiny step, then runs the same step on 8 CPU devices and measures what each device
# holds: live arrays after the step (state, batch, metrics) plus the step's peak transient
# memory, sampled as the process's resident-set growth while the step runs (XLA:CPU allocates
# each device's temporaries with malloc, so they show up there) divided over the 8 devices.
MEASURE = """
import gc, json, math, os, threading, time
from orca_jax import planning
planning.use_simulated_devices(8)
import jax, jax.numpy as jnp, numpy as np
# the measured step is the planned one: its second compile is a cache hit
jax.config.update("jax_compilation_cache_dir", os.path.join({tmp!r}, "xla_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
from orca_jax import partitioning
from orca_jax.errors import UserError
from orca_jax.model import decoder
from orca_jax.train import curriculum, gin_setup, trainer
from orca_jax.train.optimizer import adamw_direction

B, S = 8, 128
gin_setup.parse(["runs/base.gin", "models/tiny.gin", "partitioning/fsdp.gin"], [
    "MODEL_DIR='/unused'", "MIXTURE_OR_TASK_NAME='toy'", f"SEQUENCE_LENGTH={{S}}", f"BATCH_SIZE={{B}}",
    "TRAIN_STEPS=1", "model_config.hidden_size=256", "model_config.intermediate_size=688",
    "model_config.num_heads=4", "model_config.num_kv_heads=2", "model_config.vocab_size=2048"])
plan = planning.make_plan()

model = curriculum.RunConfig().model
mesh, rules = partitioning.make_mesh(), partitioning.logical_axis_rules()
optimizer = adamw_direction()
_, sh = trainer.state_shardings(model, optimizer, mesh, rules)
params = jax.jit(decoder.init_params, static_argnums=0, out_shardings=sh.params)(model, jax.random.key(0))
state = trainer.TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), sh.step), params=params,
                           opt_state=jax.jit(optimizer.init, out_shardings=sh.opt_state)(params))
del params
rng = np.random.default_rng(0)
host = {{k: rng.integers(1, 2000, (B, S)).astype(np.int32) for k in ("inputs", "targets", "positions")}}
host["segment_ids"] = np.ones((B, S), np.int32)
host["loss_weights"] = np.ones((B, S), np.float32)
batch = partitioning.global_batch(host, mesh, rules)
step = trainer.ShardedStep(trainer.make_train_step(model, optimizer, lambda s: 1e-3, trainer.LossConfig(),
                                                   mesh=mesh, rules=rules), sh, trainer.BATCH_KEYS, mesh, rules)
compiled = step.lower(state, batch).compile()

def per_device_live():
    out = {{}}
    for a in jax.live_arrays():
        n = math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize
        for d in a.sharding.addressable_devices:
            out[d] = out.get(d, 0) + n
    return max(out.values())

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

state_bytes = sum(math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize  # one device's shards
                  for a in jax.tree_util.tree_leaves((state.params, state.opt_state)))
gc.collect()
base, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
sampler = threading.Thread(target=sample)
sampler.start()
with jax.set_mesh(mesh):
    new_state, metrics = compiled(state, batch, None)
    jax.block_until_ready((new_state, metrics))
done.set()
sampler.join()
del state
gc.collect()
live = per_device_live()
transient = max(peak[0] - base, 0) / len(jax.devices())

# a budget above parameters + optimizer + batch but below the compiled total
budget = plan.params_gib + plan.optimizer_gib + plan.batch_gib + plan.temporaries_gib / 2
try:
    planning.make_plan(hbm_gib=budget).check_fits()
    short = None
except UserError as e:
    short = str(e)
print(json.dumps({{"plan": plan.to_dict(), "live": live, "transient": transient,
                  "state_bytes_per_device": state_bytes, "short": short}}))
"""


def test_planned_memory_matches_measured_step(tmp_path):
    out = last_json_line(run_python(MEASURE.format(tmp=str(tmp_path))))
    plan = out["plan"]
    # parameters + Adam moments: the plan's per-device arithmetic vs one shard of each placed array
    assert (plan["params_gib"] + plan["optimizer_gib"]) * GIB == pytest.approx(out["state_bytes_per_device"], rel=0.02)
    assert plan["temporaries_gib"] > 0
    planned = plan["total_gib"] * GIB
    measured = out["live"] + out["transient"]
    assert abs(planned - measured) <= 0.25 * measured, (planned, out)
    # the compiled total (not only the static state) decides whether a plan fits
    assert out["short"] is not None and "temporaries" in out["short"] and "short by" in out["short"]


def test_stage_estimates_from_dataset_sizes():
    from orca_jax import planning
    from orca_jax.train.curriculum import Stage

    sizes = planning.DatasetSizes(examples={"a": 1000}, mean_tokens={"a": 100}, packing_efficiency=1.0)
    stages = [Stage("s1", "a", epochs=2), Stage("s2", "b", train_steps=7), Stage("s3", "b", epochs=1)]
    # 1000 x 100 tokens fill 1000 rows of 100; 10 rows per step -> 100 steps per epoch
    s1, s2, s3 = planning.stage_estimates(stages, sizes, batch_size=10, seq_len=100, step_seconds=36.0)
    assert (s1.steps, s1.tokens, s1.hours) == (200, 200 * 10 * 100, 2.0)
    assert (s2.steps, s2.tokens) == (7, 7000)
    assert s3.steps is None and s3.hours is None  # no size for mixture "b": unknown, not guessed


def test_paper_gin_files_parse():
    """The runs as the papers describe them (model shape, vocabulary, length, stages, epochs)."""
    import gin

    from orca_jax import planning
    from orca_jax.train import curriculum, gin_setup

    expected = {
        "runs/orca1_13b.gin": dict(layers=40, d=5120, ffn=13824, vocab=32001, seq=2048,
                                   stages=[("orca1_chatgpt", 4), ("orca1_gpt4", 4)]),
        "runs/orca2_7b.gin": dict(layers=32, d=4096, ffn=11008, vocab=32003, seq=4096,
                                  stages=[("orca2_flan_v2", 1), ("orca2_chatgpt", 3), ("orca2_gpt4", 4)]),
        "runs/orca2_13b.gin": dict(layers=40, d=5120, ffn=13824, vocab=32003, seq=4096,
                                   stages=[("orca2_flan_v2", 1), ("orca2_chatgpt", 3), ("orca2_gpt4", 4)]),
    }
    try:
        for path, want in expected.items():
            gin_setup.parse([path], [])
            run = curriculum.RunConfig()
            m = run.model
            assert (m.num_layers, m.hidden_size, m.intermediate_size, m.vocab_size) == (
                want["layers"], want["d"], want["ffn"], want["vocab"]), path
            assert m.num_kv_heads == m.num_heads  # LLaMA / LLaMA-2 7B and 13B: no GQA
            assert run.sequence_length == want["seq"]
            assert [(s.mixture_or_task_name, s.epochs) for s in run.stages] == want["stages"]
            sizes = planning.DatasetSizes()
            assert set(sizes.examples) == {name for name, _ in want["stages"]} == set(sizes.mean_tokens)
            for preset in ("cpu_single_host", "gpu_1x8", "gpu_4x8_h100", "tpu_v4_128", "tpu_v5p_128"):
                gin_setup.parse([path, f"partitioning/{preset}.gin"], [])
                assert planning.Hardware().devices
    finally:
        gin.clear_config()


def test_paper_data_gin_files_parse():
    """Preparation config: Orca 2 erases its own data's strategy prompts to the cautious message."""
    out = last_json_line(run_python("""
        import json, gin
        import tasks.traces
        from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE, erased_system_message, erasing_policy
        result = {}
        for name in ("orca1", "orca2"):
            gin.clear_config()
            gin.parse_config_files_and_bindings([f"gin/runs/{name}_data.gin"], [])
            result[name] = {
                "template": gin.query_parameter("register_trace_tasks.template"),
                "mixtures": sorted(gin.query_parameter("register_trace_mixtures.mixtures")),
                "erased": {t: erasing_policy(t) for t in ("traces_flan_v2", "traces_flan5m_chatgpt", "traces_flan1m_gpt4",
                                                        "traces_orca2_data", "orca2_gpt4")},
            }
        result["cautious"] = erased_system_message(result["orca2"]["erased"]["traces_orca2_data"]) == CAUTIOUS_SYSTEM_MESSAGE
        print(json.dumps(result))
    """))
    assert out["orca1"]["template"] == "plain" and out["orca2"]["template"] == "chatml"
    assert out["orca1"]["mixtures"] == ["orca1_chatgpt", "orca1_gpt4"]
    assert out["orca2"]["mixtures"] == ["orca2_chatgpt", "orca2_flan_v2", "orca2_gpt4"]
    assert set(out["orca1"]["erased"].values()) == {None}
    # per source: Orca 2's strategy-prompted data only, not Orca 1's traces in the same mixture
    assert out["orca2"]["erased"] == {"traces_flan_v2": None, "traces_flan5m_chatgpt": None, "traces_flan1m_gpt4": None,
                                      "traces_orca2_data": "cautious", "orca2_gpt4": None}
    assert out["cautious"]


def test_reduced_depth_plans_of_paper_runs():
    """Each paper run, 1 layer deep and narrow but with its real vocabulary, batch layout and
    curriculum, plans on 8 devices with the FSDP preset."""
    out = last_json_line(run_python("""
        import json
        from orca_jax import planning
        planning.use_simulated_devices(8)
        from orca_jax.train import gin_setup
        plans = {}
        for path in %r:
            gin_setup.parse([path, "partitioning/cpu_single_host.gin"], [
                "model_config.num_layers=1", "model_config.hidden_size=128", "model_config.intermediate_size=344",
                "model_config.num_heads=2", "model_config.num_kv_heads=2", "model_config.head_dim=64",
                "SEQUENCE_LENGTH=256", "BATCH_SIZE=8"])
            plans[path] = planning.make_plan(hbm_gib=80, peak_tflops=989, mfu=0.4).to_dict()
        print(json.dumps(plans))
    """ % (PAPER_RUNS,)))
    for path, plan in out.items():
        vocab = 32001 if "orca1" in path else 32003
        assert plan["model"]["vocab_size"] == vocab and plan["devices"] == 8 and plan["fits"]
        assert plan["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
        # an independent count of the 1-layer model: embedding + head, 4 attention + 3 MLP matrices, norms
        # (matrices split 8 ways over fsdp, norm scales replicated)
        matrices, norms = 2 * vocab * 128 + 4 * 128 * 128 + 3 * 128 * 344, 3 * 128
        assert plan["params_gib"] * GIB == pytest.approx(4 * (matrices / 8 + norms), rel=1e-6)
        assert plan["optimizer_gib"] == pytest.approx(2 * plan["params_gib"], rel=0.01)  # Adam mu, nu
        assert plan["arguments_gib"] >= plan["params_gib"] + plan["optimizer_gib"]
        # XLA's count of the compiled step (8 devices) covers at least the 6ND model FLOPs
        assert plan["xla_flops_per_device"] * 8 >= 0.9 * plan["six_nd_flops_per_step"]
        assert plan["step_seconds"] == pytest.approx(plan["model_flops_per_step"] / (8 * 989e12 * 0.4))
        assert len(plan["stages"]) == (2 if "orca1" in path else 3)
        for stage in plan["stages"]:
            assert stage["steps"] > 0 and stage["tokens"] == stage["steps"] * 8 * 256
        assert not any("instead of" in note for note in plan["notes"])  # the CPU preset asks for xla


def test_mesh_too_small_names_the_shortfall():
    """Full Orca-2-13B on 4 devices of 16 GiB: fp32 weights and two Adam moments alone need
    12 bytes per parameter / 4 devices; the command says so and by how much, before compiling."""
    proc = subprocess.run([sys.executable, "-m", "orca_jax.cli", "plan", "--gin_file=runs/orca2_13b.gin",
                           "--gin_file=partitioning/tpu_v4_128.gin", "--devices", "4", "--hbm_gib", "16"],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    d, ffn, layers, vocab = 5120, 13824, 40, 32003
    matrices, norms = 2 * vocab * d + layers * (4 * d * d + 3 * d * ffn), (2 * layers + 1) * d
    params_gib = 4 * (matrices / 4 + norms) / GIB  # fp32; norm scales are replicated
    need = 3 * params_gib + 64 * 4096 * 4 * 5 / 4 / GIB  # + the batch: 64 x 4096, five 4-byte arrays
    assert f"parameters {params_gib:.2f}" in message and f"optimizer state {2 * params_gib:.2f}" in message
    assert f"short by {need - 16:.2f} GiB" in message and "4 devices" in message
