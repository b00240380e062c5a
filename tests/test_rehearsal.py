"""Rehearsals of the paper runs (gin/rehearsal/orca1.gin, orca2.gin): each paper's data prepared
from real-format files through `orca-jax prepare`, every stage trained through `orca-jax train`
on 8 simulated CPU devices (data x fsdp x tensor = 2 x 2 x 2, 2 microbatches), a second run
SIGKILLed inside a later stage and restarted to the uninterrupted run's parameters, then
`orca-jax eval --model MODEL_DIR` on BBH, AGIEval and GSM8K samples under the cautious system
message. The same training on 2 processes x 4 devices joined by jax.distributed ends with the
same parameters as on 1 process x 8."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest

pytest.importorskip("seqio")

import benchmark_fixtures  # noqa: E402
import trainer_support as ts  # noqa: E402
from rehearsal_data import write_rehearsal_data  # noqa: E402
from test_multihost import free_port  # noqa: E402

from orca_jax.cli import main  # noqa: E402
from orca_jax.data.cache import ExampleCache  # noqa: E402
from orca_jax.data.loader import make_loader  # noqa: E402
from orca_jax.data.system_messages import CAUTIOUS_SYSTEM_MESSAGE, ORCA2_STRATEGIES  # noqa: E402
from orca_jax.data.traces import read_traces  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.rehearsal]
RUN_TIMEOUT = 1800  # seconds for one training run: a few minutes on quiet cores, far more on shared ones


@dataclasses.dataclass(frozen=True)
class Paper:
    gin_file: str  # the rehearsal, which includes the paper run
    data_gin_file: str
    mixtures: tuple[str, ...]  # one per stage, in order
    kill_in_stage: int  # the stage a killed run is killed inside (not the first)
    erased_tasks: tuple[str, ...] = ()  # whose system messages prompt erasing replaces


PAPERS = {
    "orca1": Paper("rehearsal/orca1.gin", "runs/orca1_data.gin", ("orca1_chatgpt", "orca1_gpt4"), kill_in_stage=1),
    "orca2": Paper("rehearsal/orca2.gin", "runs/orca2_data.gin", ("orca2_flan_v2", "orca2_chatgpt", "orca2_gpt4"),
                   kill_in_stage=2, erased_tasks=("traces_orca2_data",)),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The rehearsal's trace files and tokenizer, and the benchmark sample files."""
    root = tmp_path_factory.mktemp("rehearsal")
    paths = write_rehearsal_data(str(root))
    paths["benchmarks"] = benchmark_fixtures.write_layout(root / "benchmarks")
    return paths


@pytest.fixture(scope="module", params=sorted(PAPERS))
def paper(request, inputs, tmp_path_factory):
    """A paper's stages prepared with its data gin file: (paper, cache root, folder for its runs)."""
    spec = PAPERS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    cache = str(root / "cache")
    for mixture in spec.mixtures:
        assert main(["prepare", f"--gin_file={spec.data_gin_file}", f"--data_dir={inputs['data_dir']}",
                     f"--tokenizer={inputs['tokenizer']}", f"--cache_dir={cache}", f"--task={mixture}"]) == 0
    return spec, cache, root


@pytest.fixture(scope="module")
def uninterrupted(paper):
    """MODEL_DIR of the paper's rehearsal run on 1 process x 8 devices, never interrupted."""
    spec, cache, root = paper
    model_dir = root / "uninterrupted"
    done = ts.run_cli(_train_args(spec, cache, model_dir), devices=8, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return model_dir


def _train_args(spec: Paper, cache: str, model_dir, *extra: str) -> list[str]:
    return ["train", f"--gin_file={spec.gin_file}", f"--gin.MODEL_DIR='{model_dir}'",
            f"--gin.data_loader.cache_root='{cache}'", "--gin.Monitor.progress_bar=False", *extra]


def _summary(model_dir) -> dict:
    return json.loads((model_dir / "summary.json").read_text())


def _launch(commands: list[list[str]], devices: int, logs: str) -> list[subprocess.Popen]:
    """The commands' processes, each writing its output to `logs`-<i>.log (a pipe nobody reads
    while the test waits for a checkpoint would fill and stop the run)."""
    procs = []
    for i, args in enumerate(commands):
        with open(f"{logs}-{i}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-c", ts.cli_code(args)], cwd=ts.REPO,
                                          env=ts.cli_env(devices), stdout=log, stderr=subprocess.STDOUT))
    return procs


def _log_tails(logs: str, count: int) -> str:
    return "\n".join(open(f"{logs}-{i}.log").read()[-3000:] for i in range(count))


def _process_commands(spec: Paper, cache: str, model_dir) -> list[list[str]]:
    """`orca-jax train` for each of 2 processes, joined at a fresh coordinator port."""
    address = f"127.0.0.1:{free_port()}"
    return [_train_args(spec, cache, model_dir, f"--coordinator_address={address}", "--num_processes=2",
                        f"--process_id={i}") for i in range(2)]


def _finish(procs: list[subprocess.Popen], logs: str) -> None:
    for p in procs:
        p.wait(timeout=RUN_TIMEOUT)
    assert all(p.returncode == 0 for p in procs), _log_tails(logs, len(procs))


def _kill_inside_stage_then_restart(commands: Callable[[], list[list[str]]], devices: int, model_dir, stage: int,
                                    first_step: int, last_step: int) -> None:
    """Start the run's processes (`commands()`), SIGKILL all of them once a checkpoint of a step
    inside stage `stage` (first_step, last_step) is committed, and run `commands()` again to
    the end, which must resume there: the earlier stages' summaries stay as the killed run wrote them."""
    logs = f"{model_dir}-killed"
    procs = _launch(commands(), devices, logs)
    checkpoints = model_dir / "checkpoints"
    inside = [str(s) for s in range(first_step + 1, last_step)]
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (checkpoints.is_dir() and any(name in inside for name in os.listdir(checkpoints))):
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, \
            "no checkpoint inside the stage to kill the run in:\n" + _log_tails(logs, len(procs))
        time.sleep(0.05)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait()
    assert not (model_dir / "summary.json").exists()
    finished = {path: path.stat().st_mtime_ns for path in model_dir.glob("stages/*/summary.json")}
    assert len(finished) == stage
    _finish(_launch(commands(), devices, f"{model_dir}-restarted"), f"{model_dir}-restarted")
    assert {path: path.stat().st_mtime_ns for path in finished} == finished


def _stage_bounds(summary: dict, k: int) -> tuple[int, int, int]:
    """(k, the step before stage k's first, stage k's last step) from a run summary."""
    stage = summary["stages"][k]
    return k, stage["final_step"] - stage["stage_steps"], stage["final_step"]


def _planned(spec: Paper, cache: str) -> list[dict]:
    """Per stage, what the rehearsal file asks for: its epochs, the steps they take with the
    stage's loader (the trainer's seed + stage index) and the tokens of one pass over its data."""
    import gin

    from orca_jax.train import gin_setup

    gin_setup.parse([spec.gin_file], [f"data_loader.cache_root='{cache}'"])
    plans = []
    for k, ref in enumerate(gin.query_parameter("train.stages")):
        stage = ref.scoped_configurable_fn()
        loader = make_loader(stage.mixture_or_task_name, cache_root=gin_setup.bound_value("data_loader.cache_root"),
                             seq_len=gin_setup.bound_value("train.sequence_length"),
                             global_batch_size=gin_setup.bound_value("train.batch_size"),
                             seed=gin_setup.bound_value("train.seed") + k, process_index=0, process_count=1)
        plans.append({"mixture": stage.mixture_or_task_name, "epochs": stage.epochs,
                      "steps": max(1, round(stage.epochs * loader.steps_per_epoch)),
                      "tokens": sum(int(p.store.lengths.sum()) for p in loader.pieces),
                      "batch_tokens": loader.global_batch_size * loader.seq_len})
    return plans


def _task_caches(cache: str, mixture: str) -> dict[str, ExampleCache]:
    """The prepared caches of a mixture's tasks, by task name."""
    tasks = os.path.join(cache, mixture, "tasks")
    return {name: ExampleCache(os.path.join(tasks, name)) for name in sorted(os.listdir(tasks))}


def _source_systems(data_dir: str, task: str) -> list[str]:
    """The system message of each record of a trace task's file, in file order."""
    path = next(os.path.join(data_dir, f) for f in os.listdir(data_dir) if f.rsplit(".", 1)[0] == task[len("traces_"):])
    return [trace.system for trace in read_traces(path)]


def test_prepared_caches_keep_orca1_system_messages_and_erase_orca2_strategies(paper, inputs):
    spec, cache, _ = paper
    prepared = {task: store for mixture in spec.mixtures for task, store in _task_caches(cache, mixture).items()}
    assert set(spec.erased_tasks) <= set(prepared)
    for task, store in prepared.items():
        systems = [store.system(i) for i in range(len(store))]
        teacher = _source_systems(inputs["data_dir"], task)
        assert len(systems) == len(teacher) > 0
        if task in spec.erased_tasks:  # the strategy instruction gone, the cautious message in its place
            assert set(teacher) == set(ORCA2_STRATEGIES.values())
            assert systems == [CAUTIOUS_SYSTEM_MESSAGE] * len(teacher)
        else:  # Orca 1's messages (and FLAN-v2's none) as the teacher was given them
            assert systems == teacher
            assert not set(systems) & set(ORCA2_STRATEGIES.values())


def test_every_stage_runs_its_planned_epochs(paper, uninterrupted):
    spec, cache, _ = paper
    summary = _summary(uninterrupted)
    plans = _planned(spec, cache)
    assert [s["stage_index"] for s in summary["stages"]] == list(range(len(spec.mixtures)))
    assert [p["mixture"] for p in plans] == list(spec.mixtures)
    for stage, plan in zip(summary["stages"], plans):
        assert stage["stage_steps"] == plan["steps"], stage
        # the planned epochs' tokens: at most one batch per epoch more, as repeating data fills
        # the rows a single pass leaves empty in its last batch
        assert 0 < plan["epochs"] * plan["tokens"] <= stage["tokens_seen"], stage
        assert stage["tokens_seen"] < plan["epochs"] * (plan["tokens"] + plan["batch_tokens"]), stage
    assert summary["final_step"] == sum(p["steps"] for p in plans)


def test_killed_inside_a_later_stage_resumes_to_the_uninterrupted_run(paper, uninterrupted):
    spec, cache, root = paper
    reference = _summary(uninterrupted)
    model_dir = root / "killed"
    _kill_inside_stage_then_restart(lambda: [_train_args(spec, cache, model_dir)], 8, model_dir,
                                    *_stage_bounds(reference, spec.kill_in_stage))
    resumed = _summary(model_dir)
    assert [s["tokens_seen"] for s in resumed["stages"]] == [s["tokens_seen"] for s in reference["stages"]]
    assert resumed["params_sha256"] == reference["params_sha256"]


def test_eval_of_the_model_dir_writes_its_summary(paper, uninterrupted, inputs):
    out = uninterrupted / "eval"
    assert main(["eval", "--model", str(uninterrupted), "--benchmarks", "bbh,agieval,gsm8k",
                 "--data_dir", inputs["benchmarks"], "--system", "cautious", "--limit", "1",
                 "--max_new_tokens", "4", "--batch_size", "8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"bbh", "agieval", "gsm8k"} <= set(summary)
    assert summary["protocol"]["system"] == "cautious"
    prompts = [json.loads(line)["prompt"] for line in open(out / "predictions.jsonl")]
    assert prompts and all(CAUTIOUS_SYSTEM_MESSAGE in p for p in prompts)


@pytest.mark.multihost
def test_two_processes_killed_and_resumed_equal_one_process(paper, uninterrupted):
    """2 processes x 4 devices, the same 2 x 2 x 2 mesh: killed (both processes, as a pod losing
    its hosts) inside a later stage, restarted, and ending with the 8-device run's parameters."""
    spec, cache, root = paper
    reference = _summary(uninterrupted)
    model_dir = root / "two_processes"
    _kill_inside_stage_then_restart(lambda: _process_commands(spec, cache, model_dir), 4, model_dir,
                                    *_stage_bounds(reference, spec.kill_in_stage))
    resumed = _summary(model_dir)
    assert [s["tokens_seen"] for s in resumed["stages"]] == [s["tokens_seen"] for s in reference["stages"]]
    assert resumed["params_sha256"] == reference["params_sha256"]
