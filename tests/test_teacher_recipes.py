"""Orca 1 stratified FLAN sampling and system-message assignment; Orca 2 strategy tables."""

import collections
import json

import pytest

from orca_jax.data import system_messages as sm
from orca_jax.data.traces import Trace
from orca_jax.errors import UserError
from orca_jax.teacher import recipes


def _flan(collection, task, i, template="zs_noopt"):
    return Trace(id=f"{collection}/{task}/{i}", turns=[{"role": "user", "content": f"{task} query {i}"}],
                 task=task, category=collection, metadata={"template_type": template})


def _collection(collection, sizes, template="zs_noopt"):
    return [_flan(collection, task, i, template) for task, n in sizes.items() for i in range(n)]


PROMPTS = (_collection("NIv2", {"big": 500, "small_a": 10, "small_b": 10})
           + _collection("CoT", {"gsm": 30, "strategyqa": 30})
           + _collection("T0", {"qa": 5}))


def test_tasks_are_picked_uniformly_not_in_proportion_to_size():
    per_task = collections.Counter()
    seeds = 400
    for seed in range(seeds):
        sample = recipes.orca1_stratified_sample(PROMPTS, {"niv2": 15}, seed)
        assert len(sample) == 15 and len({p.id for p in sample}) == 15  # without replacement
        per_task.update(p.task for p in sample)
    # Uniform over the 3 tasks: 5 each on average (sampling by size would give ~14.4 from "big").
    for task in ("big", "small_a", "small_b"):
        assert abs(per_task[task] / seeds - 5.0) < 0.4, per_task


def test_exhausted_tasks_drop_out_and_collections_are_kept_apart():
    sample = recipes.orca1_stratified_sample(PROMPTS, {"niv2": 100, "cot": 1000}, seed=3)
    counts = collections.Counter((p.category, p.task) for p in sample)
    # Each small task is drawn until empty; the rest comes from the big one.
    assert counts[("NIv2", "small_a")] == 10 and counts[("NIv2", "small_b")] == 10 and counts[("NIv2", "big")] == 80
    # Asking for more than a collection holds gives all of it; T0 (not asked for) gives none.
    assert counts[("CoT", "gsm")] == 30 and counts[("CoT", "strategyqa")] == 30
    assert not any(p.category == "T0" for p in sample)
    assert len({p.id for p in sample}) == len(sample)


def test_sampling_is_reproducible_by_seed():
    a = [p.id for p in recipes.orca1_stratified_sample(PROMPTS, {"niv2": 30, "t0": 3}, seed=7)]
    b = [p.id for p in recipes.orca1_stratified_sample(PROMPTS, {"niv2": 30, "t0": 3}, seed=7)]
    c = [p.id for p in recipes.orca1_stratified_sample(PROMPTS, {"niv2": 30, "t0": 3}, seed=8)]
    assert a == b and a != c


def test_system_messages_come_from_the_sub_collection_set():
    prompts = (_collection("Flan2021", {"mc": 200}, template="zs_opt") + _collection("Flan2021", {"open": 200})
               + _collection("NIv2", {"x": 200}) + _collection("CoT", {"y": 100}) + _collection("T0", {"z": 100}))
    requests = recipes.orca1_requests(prompts, seed=0)
    used = collections.defaultdict(set)
    for r in requests:
        collection = sm.collection_name(r.prompt.category)
        used[(collection, r.prompt.task)].add(r.system_message_id)
        assert r.system_message == sm.ORCA1_SYSTEM_MESSAGES[r.system_message_id]
    # Each set used in full, nothing from outside it; 8 and 10 only for multiple choice.
    assert used[("flan2021", "mc")] == {3, 4, 7, 8, 10}
    assert used[("flan2021", "open")] == {3, 4, 7}
    assert used[("niv2", "x")] == {1, 2, 5, 7, 9, 12, 13, 14, 15}
    assert used[("cot", "y")] == {6, 11, 16}
    assert used[("t0", "z")] == {1, 2, 3, 5, 7}


def test_two_passes_strong_teacher_gets_a_subset_with_the_same_messages():
    assistant, strong = recipes.orca1_passes(PROMPTS, {"niv2": 40, "cot": 20}, strong_count=15, seed=1)
    assert len(assistant) == 60 and len(strong) == 15
    by_id = {r.prompt.id: r for r in assistant}
    assert all(by_id[r.prompt.id] == r for r in strong)
    order = [r.prompt.id for r in assistant]
    assert [r.prompt.id for r in strong] == sorted((r.prompt.id for r in strong), key=order.index)
    with pytest.raises(UserError, match="--subset"):
        recipes.orca1_passes(PROMPTS, {"t0": 5}, strong_count=6, seed=1)


def test_orca2_strategy_table_task_then_category_then_default():
    prompts = [_flan("CoT", "gsm", 0), _flan("CoT", "date", 0), _flan("NIv2", "extract", 0), _flan("T0", "qa", 0)]
    table = {"gsm": "step_by_step", "CoT": "recall_reason_generate", "NIv2": "extract_generate", "*": "direct_answer"}
    requests = recipes.orca2_requests(prompts, table)
    assert [r.strategy for r in requests] == ["step_by_step", "recall_reason_generate", "extract_generate", "direct_answer"]
    assert all(r.system_message == sm.ORCA2_STRATEGIES[r.strategy] for r in requests)
    with pytest.raises(UserError, match="no strategy"):
        recipes.orca2_requests(prompts, {"gsm": "step_by_step"})


def test_plan_from_a_message_file_and_clear_errors(tmp_path):
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps(["You are a helpful assistant.", "Explain like I'm five."]))
    requests = recipes.plan_requests(PROMPTS, system_messages=str(messages), seed=0, limit=40)
    assert len(requests) == 40
    assert {r.system_message_id for r in requests} == {1, 2}
    assert all(r.system_message == ["You are a helpful assistant.", "Explain like I'm five."][r.system_message_id - 1]
               for r in requests)
    messages.write_text("[\"unclosed")
    with pytest.raises(UserError, match="messages.json:1: system messages: broken JSON"):
        recipes.plan_requests(PROMPTS, system_messages=str(messages), seed=0)
    with pytest.raises(UserError, match="--strategies"):
        recipes.plan_requests(PROMPTS, system_messages="orca2", seed=0)
    with pytest.raises(UserError, match="--sample"):
        recipes.plan_requests(PROMPTS, system_messages="orca1", seed=0, sample="niv2=lots")


def test_command_line_plan_gives_the_same_two_passes():
    assistant, strong = recipes.orca1_passes(PROMPTS, {"niv2": 40, "cot": 20}, strong_count=15, seed=1)
    plan = dict(system_messages="orca1", seed=1, sample="niv2=40,cot=20")
    assert recipes.plan_requests(PROMPTS, **plan) == assistant
    assert recipes.plan_requests(PROMPTS, **plan, subset=15) == strong
