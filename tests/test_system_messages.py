"""Orca 1 system messages and their FLAN assignment, Orca 2 strategies, prompt erasing."""

import random

import pytest

from orca_jax.data.system_messages import (
    CAUTIOUS_SYSTEM_MESSAGE, ORCA1_SYSTEM_MESSAGES, ORCA2_STRATEGIES, erase_prompt, erasing_policy, orca1_choices,
    orca1_system_message_for, pick_orca1_system_message, strategy_instruction,
)
from orca_jax.data.traces import Trace
from orca_jax.errors import UserError


def test_sixteen_messages_numbered_with_the_first_empty():
    assert sorted(ORCA1_SYSTEM_MESSAGES) == list(range(1, 17))
    assert ORCA1_SYSTEM_MESSAGES[1] == ""
    assert all(ORCA1_SYSTEM_MESSAGES[i] for i in range(2, 17))
    assert len(set(ORCA1_SYSTEM_MESSAGES.values())) == 16
    # Spot checks against the paper's Table 2 wording.
    assert ORCA1_SYSTEM_MESSAGES[7].endswith("think step-by-step and justify your steps.")
    assert ORCA1_SYSTEM_MESSAGES[4].endswith("Think like you are answering to a five year old.")
    assert ORCA1_SYSTEM_MESSAGES[16] == "You are an AI assistant that helps people find information."


@pytest.mark.parametrize("source, multiple_choice, expected", [
    ("CoT", False, {6, 11, 16}),
    ("NIv2", False, {1, 2, 5, 7, 9, 12, 13, 14, 15}),
    ("T0", False, {1, 2, 3, 5, 7}),
    ("Flan2021", True, {3, 4, 7, 8, 10}),
    ("Flan2021", False, {3, 4, 7}),  # 8 and 10 only for multiple-choice questions
])
def test_assignment_per_sub_collection(source, multiple_choice, expected):
    assert set(orca1_choices(source, multiple_choice)) == expected
    rng = random.Random(0)
    drawn = {pick_orca1_system_message(source, multiple_choice, rng)[0] for _ in range(500)}
    assert drawn == expected  # uniform draw reaches every allowed message and nothing else


def test_flan_prompts_get_messages_of_their_collection():
    rng = random.Random(1)
    with_options = Trace(id="1", turns=[{"role": "user", "content": "q"}], category="Flan2021", metadata={"template_type": "zs_opt"})
    without = Trace(id="2", turns=[{"role": "user", "content": "q"}], category="Flan2021", metadata={"template_type": "zs_noopt"})
    assert {orca1_system_message_for(with_options, rng)[0] for _ in range(300)} == {3, 4, 7, 8, 10}
    assert {orca1_system_message_for(without, rng)[0] for _ in range(300)} == {3, 4, 7}


def test_unknown_collection_and_strategy_are_user_errors():
    with pytest.raises(UserError, match="_task_source"):
        orca1_choices("dialog", False)
    with pytest.raises(UserError, match="strategy"):
        strategy_instruction("guess")


def test_orca2_strategies_and_cautious_message():
    assert set(ORCA2_STRATEGIES) == {"step_by_step", "recall_then_generate", "recall_reason_generate", "extract_generate", "direct_answer"}
    assert CAUTIOUS_SYSTEM_MESSAGE.startswith("You are Orca, an AI language model created by Microsoft. You are a cautious assistant.")


def test_erasing_replaces_only_the_system_message_and_records_the_original():
    trace = Trace(id="1", system=ORCA2_STRATEGIES["extract_generate"], strategy="extract_generate",
                  turns=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], metadata={"k": 1})
    assert erase_prompt(trace, None) is trace
    erased = erase_prompt(trace, "cautious")
    assert erased.system == CAUTIOUS_SYSTEM_MESSAGE and erased.turns == trace.turns and erased.strategy == trace.strategy
    assert erased.metadata == {"k": 1, "erased_system": trace.system, "erased_strategy": "extract_generate"}
    assert erase_prompt(trace, "empty").system == ""
    assert erase_prompt(trace, "Be brief.").system == "Be brief."
    assert trace.system == ORCA2_STRATEGIES["extract_generate"]  # the original is untouched


def test_erasing_policy_is_chosen_per_task_in_gin():
    import gin

    with gin.unlock_config():
        gin.parse_config(["erasing_policy.per_task = {'orca2_gpt4': 'cautious'}", "erasing_policy.default = 'empty'"])
    try:
        assert erasing_policy("orca2_gpt4") == "cautious" and erasing_policy("other") == "empty"
    finally:
        gin.clear_config()
    assert erasing_policy("orca2_gpt4") is None
