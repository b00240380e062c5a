"""How Orca 1 and Orca 2 chose what to ask their teachers.

Orca 1 (Mukherjee et al. 2023, section 3.2): from each FLAN-v2 sub-collection (CoT, NIV2, T0,
Flan2021) draw queries by picking a task uniformly at random, then a query of that task
without replacement, until the sub-collection's count is reached; each query gets a system
message drawn from its sub-collection's set. ChatGPT (the teacher assistant) answers all of
them, GPT-4 a random subset: two trace files for the two curriculum stages.

Orca 2 (Mitra et al. 2023): each task category has a strategy; the teacher is given that
strategy's instruction and the trace records the strategy so training can erase it.

Random choices per prompt are seeded by (seed, prompt id), so a prompt gets the same system
message in both passes and whatever subset or order it is asked in.
"""

import collections
import json
import random
from typing import Sequence

from orca_jax.data import system_messages as sm
from orca_jax.data.traces import Trace
from orca_jax.errors import UserError
from orca_jax.teacher.jobs import TraceRequest


def _prompt_rng(seed: int, prompt: Trace) -> random.Random:
    return random.Random(f"{seed}:{prompt.id}")


def is_multiple_choice(prompt: Trace) -> bool:
    """FLAN template types ending in `_opt` (zs_opt, fs_opt) list answer options; `_noopt` do not."""
    template = str(prompt.metadata.get("template_type", ""))
    return template.endswith("_opt") and not template.endswith("_noopt")


def orca1_stratified_sample(prompts: Sequence[Trace], counts: dict[str, int], seed: int) -> list[Trace]:
    """Per sub-collection: repeatedly pick a task uniformly among those with queries left, then
    one of its queries without replacement; stops at the count or when the collection runs out.
    Sub-collections not in `counts` are left out."""
    counts = {sm.collection_name(k): v for k, v in counts.items()}
    by_collection: dict[str, dict[str, list[Trace]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for prompt in prompts:
        collection = sm.collection_name(prompt.category)
        if collection in counts:
            by_collection[collection][prompt.task].append(prompt)
    rng = random.Random(seed)
    sample = []
    for collection in sorted(counts):
        tasks = by_collection.get(collection, {})
        remaining = {task: rng.sample(queries, len(queries)) for task, queries in sorted(tasks.items())}
        names = sorted(remaining)
        for _ in range(counts[collection]):
            if not names:
                break
            task = names[rng.randrange(len(names))]
            sample.append(remaining[task].pop())
            if not remaining[task]:
                names.remove(task)
    return sample


def orca1_requests(prompts: Sequence[Trace], seed: int) -> list[TraceRequest]:
    """Each FLAN prompt with a system message from its sub-collection's set (8 and 10 only for multiple choice)."""
    requests = []
    for prompt in prompts:
        number, text = sm.pick_orca1_system_message(prompt.category, is_multiple_choice(prompt),
                                                    _prompt_rng(seed, prompt))
        requests.append(TraceRequest(prompt=prompt, system_message=text, system_message_id=number))
    return requests


def orca1_passes(prompts: Sequence[Trace], counts: dict[str, int], strong_count: int,
                 seed: int) -> tuple[list[TraceRequest], list[TraceRequest]]:
    """(teacher-assistant requests over the whole stratified sample, strong-teacher requests over
    a random subset of `strong_count` of them, in sample order, with the same system messages)."""
    assistant = orca1_requests(orca1_stratified_sample(prompts, counts, seed), seed)
    return assistant, random_subset(assistant, strong_count, seed)


def random_subset(requests: Sequence[TraceRequest], size: int, seed: int) -> list[TraceRequest]:
    """`size` requests drawn without replacement, kept in their original order."""
    if size > len(requests):
        raise UserError(f"--subset: {size} requested but there are only {len(requests)} prompts")
    chosen = set(random.Random(f"{seed}:strong").sample(range(len(requests)), size))
    return [r for i, r in enumerate(requests) if i in chosen]


def orca2_requests(prompts: Sequence[Trace], strategy_table: dict[str, str]) -> list[TraceRequest]:
    """Each prompt with its strategy's instruction as the system message. The table maps a task
    name or a category to a strategy name (task first); "*" is the default."""
    requests = []
    for prompt in prompts:
        strategy = strategy_table.get(prompt.task) or strategy_table.get(prompt.category) or strategy_table.get("*")
        if strategy is None:
            raise UserError(f"prompt {prompt.id!r}: no strategy for task {prompt.task!r} or category "
                            f"{prompt.category!r} in the strategy table, and no '*' default")
        requests.append(TraceRequest(prompt=prompt, system_message=sm.strategy_instruction(strategy),
                                     strategy=strategy))
    return requests


def fixed_message_requests(prompts: Sequence[Trace], messages: Sequence[str], seed: int) -> list[TraceRequest]:
    """Each prompt with one of `messages` drawn uniformly (its 1-based number recorded)."""
    requests = []
    for prompt in prompts:
        index = _prompt_rng(seed, prompt).randrange(len(messages))
        requests.append(TraceRequest(prompt=prompt, system_message=messages[index], system_message_id=index + 1))
    return requests


def load_json_file(path: str, expected_type: type, what: str):
    """A JSON file of the given top-level type, or a UserError naming the file and what was expected."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read {what}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: {what}: broken JSON ({e.msg})") from None
    if not isinstance(value, expected_type):
        raise UserError(f"{path}: {what}: expected a JSON {expected_type.__name__}, got {type(value).__name__}")
    return value


def parse_counts(text: str) -> dict[str, int]:
    """`cot=150000,niv2=440000` -> {"cot": 150000, "niv2": 440000}."""
    counts = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not value.strip().isdigit():
            raise UserError(f"--sample: expected SUBCOLLECTION=COUNT[,...], got {part!r}")
        counts[sm.collection_name(name)] = int(value)
    return counts


def plan_requests(prompts: Sequence[Trace], *, system_messages: str, seed: int, strategies_path: str | None = None,
                  sample: str | None = None, subset: int | None = None, limit: int | None = None) -> list[TraceRequest]:
    """The requests `generate-traces` sends: optional Orca 1 stratified sample, system messages by
    recipe (`orca1`, `orca2` with a strategy table, or a JSON list of messages), optional random
    strong-teacher subset, then the first `limit`."""
    if sample:
        prompts = orca1_stratified_sample(prompts, parse_counts(sample), seed)
    if system_messages == "orca1":
        requests = orca1_requests(prompts, seed)
    elif system_messages == "orca2":
        if not strategies_path:
            raise UserError("--system-messages orca2 needs --strategies FILE (JSON: task or category -> strategy)")
        requests = orca2_requests(prompts, load_json_file(strategies_path, dict, "strategy table"))
    else:
        messages = load_json_file(system_messages, list, "system messages")
        if not messages or not all(isinstance(m, str) for m in messages):
            raise UserError(f"{system_messages}: system messages: expected a non-empty JSON list of strings")
        requests = fixed_message_requests(prompts, messages, seed)
    if subset is not None:
        requests = random_subset(requests, subset, seed)
    return requests[:limit] if limit is not None else requests
