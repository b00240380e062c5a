"""Open-ended prompt sets for GPT-4-as-judge, and a model's answers to them.

Reads the layouts of the sets Orca was judged on (the files as their projects publish them):

- Vicuna-80: `{"question_id": 1, "text": "...", "category": "generic"}`
- Self-Instruct user-oriented 252: `{"id": "...", "instruction": "...",
  "instances": [{"input": "...", "output": "..."}]}` (the prompt is the instruction
  followed by the instance's input, when there is one)
- plain: `{"id": "...", "prompt": "..."}`

The set's name is the file's name. `answer_prompts` writes the judge's input format
(`orca_jax.evaluation.judge`): one `{"id", "prompt", "response", "set"}` per line.
"""

import json
import os

from orca_jax.data.jsonl import read_jsonl
from orca_jax.errors import UserError
from orca_jax.evaluation.judge import Answer
from orca_jax.evaluation.runner import generate_texts, place_params


def _prompt_of(path: str, line_no: int, row: dict) -> tuple[str, str]:
    if "question_id" in row and isinstance(row.get("text"), str):
        return str(row["question_id"]), row["text"]
    if isinstance(row.get("instruction"), str) and "id" in row:
        instances = row.get("instances") or [{}]
        extra = instances[0].get("input", "") if isinstance(instances[0], dict) else ""
        return str(row["id"]), row["instruction"] + ("\n\n" + extra if extra else "")
    if isinstance(row.get("prompt"), str) and "id" in row:
        return str(row["id"]), row["prompt"]
    raise UserError(f"{path}:{line_no}: expected 'question_id' + 'text' (Vicuna), 'id' + 'instruction' "
                    f"(Self-Instruct) or 'id' + 'prompt'")


def read_prompt_set(path: str) -> list[tuple[str, str, str]]:
    """[(id, prompt, set name)] in file order."""
    name = os.path.splitext(os.path.basename(path))[0]
    prompts, seen = [], set()
    for line_no, row in read_jsonl(path, "--prompts"):
        key, prompt = _prompt_of(path, line_no, row)
        if key in seen:
            raise UserError(f"{path}:{line_no}: duplicate id {key!r}")
        seen.add(key)
        prompts.append((key, prompt, name))
    return prompts


def answer_prompts(config, params, tokenizer, prompt_files: list[str], out_path: str, *, system: str | None = "",
                   batch_size: int = 8, max_new_tokens: int = 1024, progress: bool = True) -> list[Answer]:
    """The model's answers to every prompt of the files, written as the judge's candidates JSONL."""
    prompts = [p for path in prompt_files for p in read_prompt_set(path)]
    system_turn = [] if system is None else [{"role": "system", "content": system}]
    rendered = [tokenizer.apply_chat_template(system_turn + [{"role": "user", "content": prompt}], add_generation_prompt=True)
                for _, prompt, _ in prompts]
    texts = generate_texts(config, place_params(config, params), tokenizer, rendered, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           progress=progress)
    answers = [Answer(key, prompt, text, name) for (key, prompt, name), text in zip(prompts, texts)]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        for a in answers:
            f.write(json.dumps({"id": a.id, "prompt": a.prompt, "response": a.response, "set": a.set}, ensure_ascii=False) + "\n")
    return answers
