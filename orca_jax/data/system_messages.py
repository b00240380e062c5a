"""System messages: Orca 1's sixteen, Orca 2's strategies and cautious message, prompt erasing.

Orca 1 (Mukherjee et al. 2023, Table 2) asked the teacher with one of 16 fixed system messages,
chosen per FLAN-v2 sub-collection (Figure 6); messages 8 and 10 are for multiple-choice only.
Orca 2 (Mitra et al. 2023) gives the teacher a task-specific *strategy* instruction and then
*erases* it at training time, replacing it by a generic system message, so the student learns
which strategy to use.
"""

from __future__ import annotations

import dataclasses
import random

import gin

from orca_jax.errors import UserError

# Orca 1, Table 2, verbatim (numbered as in the paper; message 1 is the empty system message).
ORCA1_SYSTEM_MESSAGES: dict[int, str] = {
    1: "",
    2: "You are an AI assistant. Provide a detailed answer so user don’t need to search outside to understand the answer.",
    3: "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    4: "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
    5: "You are an AI assistant that follows instruction extremely well. Help as much as you can.",
    6: "You are an AI assistant that helps people find information. Provide a detailed answer so user don’t need to search outside to understand the answer.",
    7: "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as you can. While performing the task think step-by-step and justify your steps.",
    8: "You should describe the task and explain your answer. While answering a multiple choice question, first output the correct answer(s). Then explain why other answers are wrong. Think like you are answering to a five year old.",
    9: "Explain how you used the definition to come up with the answer.",
    10: "You are an AI assistant. You should describe the task and explain your answer. While answering a multiple choice question, first output the correct answer(s). Then explain why other answers are wrong. You might need to use additional knowledge to answer the question.",
    11: "You are an AI assistant that helps people find information. User will you give you a question. Your task is to answer as faithfully as you can. While answering think step-by-step and justify your answer.",
    12: "User will you give you a task with some instruction. Your job is follow the instructions as faithfully as you can. While answering think step-by-step and justify your answer.",
    13: "You are a teacher. Given a task, you explain in simple steps what the task is asking, any guidelines it provides and how to use those guidelines to find the answer.",
    14: "You are an AI assistant, who knows every language and how to translate one language to another. Given a task, you explain in simple steps what the task is asking, any guidelines that it provides. You solve the task and show how you used the guidelines to solve the task.",
    15: "Given a definition of a task and a sample input, break the definition into small parts.\nEach of those parts will have some instruction. Explain their meaning by showing an example that meets the criteria in the instruction. Use the following format:\nPart #: a key part of the definition.\nUsage: Sample response that meets the criteria from the key part. Explain why you think it meets the criteria.",
    16: "You are an AI assistant that helps people find information.",
}

# Orca 1, Figure 6: which messages each FLAN-v2 sub-collection samples from.
ORCA1_ASSIGNMENT: dict[str, tuple[int, ...]] = {
    "cot": (6, 11, 16),
    "niv2": (1, 2, 5, 7, 9, 12, 13, 14, 15),
    "t0": (1, 2, 3, 5, 7),
    "flan2021": (3, 4, 7, 8, 10),
}
ORCA1_MULTIPLE_CHOICE_ONLY = frozenset({8, 10})

# FLAN submix files name their sub-collection in `_task_source` with various spellings.
_COLLECTION_ALIASES = {"cot": "cot", "niv2": "niv2", "niv": "niv2", "t0": "t0", "p3": "t0", "flan": "flan2021", "flan2021": "flan2021"}

# Orca 2's released system message for evaluation and erased training prompts.
CAUTIOUS_SYSTEM_MESSAGE = (
    "You are Orca, an AI language model created by Microsoft. You are a cautious assistant. You carefully follow "
    "instructions. You are helpful and harmless and you follow ethical guidelines and promote positive behavior."
)

# Orca 2's five strategies. The paper names them but does not publish the teacher's exact
# instructions; these are this project's wording of each strategy.
ORCA2_STRATEGIES: dict[str, str] = {
    "step_by_step": "Solve the problem step by step. Explain each step and how it follows from the previous ones, then state the final answer.",
    "recall_then_generate": "First recall the facts and knowledge relevant to the question, then use them to generate the answer.",
    "recall_reason_generate": "First recall the relevant facts and knowledge, then reason over them step by step, then generate the final answer.",
    "extract_generate": "First extract the information from the given text that is needed to answer, then generate the answer from what you extracted.",
    "direct_answer": "Answer directly and concisely, without an explanation.",
}


def collection_name(task_source: str) -> str:
    """Canonical sub-collection ("cot", "niv2", "t0", "flan2021") for a FLAN `_task_source` value."""
    key = task_source.strip().lower().replace("-", "").replace("_", "")
    if key not in _COLLECTION_ALIASES:
        raise UserError(f"_task_source: expected a FLAN sub-collection ({', '.join(ORCA1_ASSIGNMENT)}), got {task_source!r}")
    return _COLLECTION_ALIASES[key]


def orca1_choices(collection: str, multiple_choice: bool) -> tuple[int, ...]:
    """Message numbers a query of this sub-collection may get."""
    ids = ORCA1_ASSIGNMENT[collection_name(collection)]
    return ids if multiple_choice else tuple(i for i in ids if i not in ORCA1_MULTIPLE_CHOICE_ONLY)


def pick_orca1_system_message(collection: str, multiple_choice: bool, rng: random.Random) -> tuple[int, str]:
    """(message number, text) drawn uniformly from the sub-collection's allowed messages."""
    number = rng.choice(orca1_choices(collection, multiple_choice))
    return number, ORCA1_SYSTEM_MESSAGES[number]


def flan_is_multiple_choice(template_type: str) -> bool:
    """FLAN's `_template_type` marks templates that list the answer options with `opt`
    (zs_opt, fs_opt); those are the multiple-choice prompts messages 8 and 10 are meant for."""
    return template_type.endswith("_opt")


def orca1_system_message_for(prompt, rng: random.Random) -> tuple[int, str]:
    """(number, text) for a FLAN prompt Trace as read by the `flan` reader (collection in
    `category`, template type in metadata)."""
    return pick_orca1_system_message(prompt.category, flan_is_multiple_choice(prompt.metadata.get("template_type", "")), rng)


def strategy_instruction(name: str) -> str:
    if name not in ORCA2_STRATEGIES:
        raise UserError(f"strategy: expected one of {', '.join(ORCA2_STRATEGIES)}, got {name!r}")
    return ORCA2_STRATEGIES[name]


# ---------------------------------------------------------------------------- prompt erasing

ERASE_PRESETS = {"empty": "", "cautious": CAUTIOUS_SYSTEM_MESSAGE}


@gin.configurable
def erasing_policy(task_name: str, per_task: dict[str, str] | None = None, default: str | None = None) -> str | None:
    """The erasing policy for a trace task (one source: a trace file or shard folder): None
    (keep the teacher's prompt), "empty", "cautious", or any literal system message. Set in gin
    per source, never per mixture, so that a mixture's other sources keep their system
    messages (Orca 2 erased its strategy-prompted data; Orca 1's traces in the same mixture kept
    theirs), e.g. `erasing_policy.per_task = {"traces_orca2_data": "cautious"}`."""
    return (per_task or {}).get(task_name, default)


def erased_task_names() -> list[str]:
    """The task names `erasing_policy.per_task` is bound to in gin (none when unbound)."""
    try:
        return list(gin.query_parameter("erasing_policy.per_task") or {})
    except ValueError:
        return []


def erased_system_message(policy: str) -> str:
    """The system message a policy puts in place of the teacher's."""
    return ERASE_PRESETS.get(policy, policy)


def erase_prompt(trace, policy: str | None):
    """A copy of `trace` whose system message is replaced by the policy's; the teacher's original
    system message and strategy stay in metadata (`erased_system`, `erased_strategy`)."""
    if policy is None:
        return trace
    metadata = dict(trace.metadata, erased_system=trace.system, erased_strategy=trace.strategy)
    return dataclasses.replace(trace, system=erased_system_message(policy), metadata=metadata)
