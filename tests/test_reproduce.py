"""The mini reproduction at its reduced (CI) size, run as the CLI runs it: the table has
every condition and task, and its means, deviations and verdicts follow from the
per-seed numbers, which follow from the predictions."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from orca_jax.evaluation.runner import rescore
from orca_jax.pipelines.reproduce import SUITES, claims, conditions
from orca_jax.synthetic.families import FAMILIES

SEEDS = 2
CONDITIONS = conditions(distill=True)
CLAIMS = claims(distill=True)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reproduce"))
    proc = subprocess.run([sys.executable, "-m", "orca_jax.cli", "reproduce", "--suite", "ci", "--seeds", str(SEEDS),
                           "--distill", "--out", out], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_summary_follows_from_per_seed_predictions(out_dir):
    results = json.load(open(os.path.join(out_dir, "results.json")))
    tasks = set(FAMILIES) | {"average"}
    for split in ("in_distribution", "held_out"):
        summary = results["summary"][split]
        assert set(summary) == set(CONDITIONS)
        for condition in CONDITIONS:
            per_seed = [results["per_seed"][str(s)][condition][split] for s in range(SEEDS)]
            for seed, accuracies in enumerate(per_seed):
                predictions = os.path.join(out_dir, f"seed_{seed}", "eval", condition, split, "predictions.jsonl")
                rescored = rescore(predictions)["bbh"]
                assert set(accuracies) == tasks
                for task in FAMILIES:
                    assert accuracies[task] == pytest.approx(rescored["tasks"][task]["accuracy"])
            for task in tasks:
                values = [a[task] for a in per_seed]
                assert summary[condition][task]["mean"] == pytest.approx(statistics.fmean(values))
                assert summary[condition][task]["std"] == pytest.approx(statistics.stdev(values))


def test_claims_are_paired_over_seeds(out_dir):
    from scipy import stats

    results = json.load(open(os.path.join(out_dir, "results.json")))
    assert [c["claim"] for c in results["claims"]] == [c[0] for c in CLAIMS]
    for claim in results["claims"]:
        differences = [results["per_seed"][str(s)][claim["better"]]["in_distribution"]["average"]
                       - results["per_seed"][str(s)][claim["worse"]]["in_distribution"]["average"] for s in range(SEEDS)]
        assert claim["per_seed"] == pytest.approx(differences)
        assert claim["difference"] == pytest.approx(statistics.fmean(differences))
        mean, sem = statistics.fmean(differences), stats.sem(differences)
        low, high = stats.t.interval(0.95, SEEDS - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
        assert claim["ci95"] == pytest.approx([low, high])
        assert claim["verdict"] == ("appears" if low > 0 else "reversed" if high < 0 else "inconclusive")
        assert {"better", "worse", "difference", "ci95"} <= set(claim)


def test_conditions_trained_as_specified(out_dir):
    seed_dir = os.path.join(out_dir, "seed_0")
    stages = {c: sorted(os.listdir(os.path.join(seed_dir, "runs", c, "stages"))) for c in CONDITIONS}
    progressive = ["0-assistant", "1-strong"]
    assert stages == {"shallow": ["0-answers_only"], "progressive": progressive, "strong_only": ["0-strong"],
                      "mixed": ["0-mixed"], "prompts_kept": ["0-assistant", "1-strong_kept"],
                      "large_teacher": progressive, "distilled": progressive}
    steps = {json.load(open(os.path.join(seed_dir, "runs", c, "summary.json")))["final_step"] for c in CONDITIONS}
    assert len(steps) == 1  # every condition gets the same number of steps
    kept = json.load(open(os.path.join(seed_dir, "cache", "traces_strong_orca2_kept", "metadata.json")))
    erased = json.load(open(os.path.join(seed_dir, "cache", "traces_strong_orca2", "metadata.json")))
    assert (kept["erasing_policy"], erased["erasing_policy"]) == (None, "cautious")
    mixture = json.load(open(os.path.join(seed_dir, "cache", "mixed_assistant_strong", "mixture.json")))["tasks"]
    assert len(mixture) == 2


def test_distilled_student_learns_from_the_larger_teacher(out_dir):
    """The distilled run sees progressive's batches from progressive's initialisation, so
    its parameters can differ from progressive's only through the teacher's logits."""
    runs = os.path.join(out_dir, "seed_0", "runs")
    model = {r: json.load(open(os.path.join(runs, r, "model_config.json")))
             for r in ("large_teacher", "distilled", "progressive")}
    ci = SUITES["ci"]
    assert (model["large_teacher"]["hidden_size"], model["large_teacher"]["num_hidden_layers"]) == (
        ci.teacher_hidden_size, ci.teacher_num_layers)
    assert model["distilled"] == model["progressive"]
    summary = {r: json.load(open(os.path.join(runs, r, "summary.json"))) for r in ("progressive", "distilled")}
    assert summary["distilled"]["tokens_seen"] == summary["progressive"]["tokens_seen"]
    assert summary["distilled"]["params_sha256"] != summary["progressive"]["params_sha256"]


def test_report_files(out_dir):
    markdown = open(os.path.join(out_dir, "results.md")).read()
    assert all(c in markdown for c in CONDITIONS) and all(c[0] in markdown for c in CLAIMS)
    assert "±" in markdown
    import matplotlib.image

    assert matplotlib.image.imread(os.path.join(out_dir, "ablations.png")).ndim == 3


def _reproduce(out, *extra):
    return subprocess.run([sys.executable, "-m", "orca_jax.cli", "reproduce", "--suite", "ci", "--seeds", str(SEEDS),
                           "--distill", "--out", out, *extra], capture_output=True, text=True, timeout=600)


def test_rerun_reuses_every_finished_condition(out_dir):
    """A second run on the same folder trains nothing (no checkpoint is touched) and
    judges the same claims from the per-seed results it finds."""
    before = json.load(open(os.path.join(out_dir, "results.json")))
    checkpoints = os.path.join(out_dir, "seed_0", "runs", "progressive", "checkpoints")
    stamps = {name: os.stat(os.path.join(checkpoints, name)).st_mtime_ns for name in os.listdir(checkpoints)}
    proc = _reproduce(out_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "every condition already in" in proc.stdout
    after = json.load(open(os.path.join(out_dir, "results.json")))
    assert after["per_seed"] == before["per_seed"] and after["claims"] == before["claims"]
    assert {name: os.stat(os.path.join(checkpoints, name)).st_mtime_ns for name in os.listdir(checkpoints)} == stamps
    assert set(after["condition_seconds"]["0"]) == set(CONDITIONS)


def test_seeds_split_across_runs(out_dir, tmp_path):
    """--only_seeds: a folder holding only seed 1's results judges nothing and says which
    seed is missing; once seed 0's folder is copied in, the claims equal the full run's."""
    import shutil

    out = str(tmp_path / "split")
    os.makedirs(out)
    shutil.copytree(os.path.join(out_dir, "seed_1"), os.path.join(out, "seed_1"))
    proc = _reproduce(out, "--only_seeds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not yet: [0]" in proc.stdout and not os.path.exists(os.path.join(out, "results.json"))
    shutil.copytree(os.path.join(out_dir, "seed_0"), os.path.join(out, "seed_0"))
    proc = _reproduce(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = json.load(open(os.path.join(out_dir, "results.json")))
    assert json.load(open(os.path.join(out, "results.json")))["claims"] == expected["claims"]


def test_results_of_another_configuration_are_refused(out_dir, tmp_path):
    import shutil

    out = str(tmp_path / "other")
    shutil.copytree(os.path.join(out_dir, "seed_0"), os.path.join(out, "seed_0"))
    path = os.path.join(out, "seed_0", "seed_results.json")
    saved = json.load(open(path))
    saved["config"]["peak_lr"] *= 2
    json.dump(saved, open(path, "w"))
    proc = _reproduce(out, "--only_seeds", "0")
    assert proc.returncode != 0
    assert "seed_results.json: written by a run with another configuration (differs in peak_lr)" in proc.stderr
    proc = _reproduce(out, "--only_seeds", "2")
    assert proc.returncode != 0 and "--only_seeds [2]: the reproduction's seeds are 0..1" in proc.stderr
