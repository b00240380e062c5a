"""Small made-up input files, in the formats the paper runs read, for rehearsing them at CPU scale
(gin/rehearsal/). Nothing is fetched; every question and answer is invented arithmetic.

    python tests/rehearsal_data.py OUT

writes into OUT/data (one trace file per task of runs/orca1_data.gin and runs/orca2_data.gin):
  flan_v2.jsonl           FLAN-v2 submix records (inputs, targets, _task_source, _task_name,
                          _template_type), zero-shot and few-shot (exemplars inside `inputs`)
  flan5m_chatgpt.parquet  OpenOrca layout (id, system_prompt, question, response): the ChatGPT
                          traces, each under the Orca 1 system message its collection draws
  flan1m_gpt4.parquet     the same layout for the GPT-4 traces
  orca2_data.jsonl        OpenAI `messages` whose system message is an Orca 2 strategy
                          instruction (what prompt erasing replaces by the cautious message)
and OUT/tokenizer, a LLaMA-style BPE tokenizer (<unk>, <s>, </s>, BOS added) trained on them.
"""

from __future__ import annotations

import json
import os
import random
import sys

from orca_jax.data.system_messages import (CAUTIOUS_SYSTEM_MESSAGE, ORCA1_SYSTEM_MESSAGES, ORCA2_STRATEGIES,
                                           pick_orca1_system_message)

# FLAN-v2 sub-collections as submix files spell `_task_source`, and OpenOrca's id prefix for each
COLLECTIONS = {"CoT": "cot", "NIv2": "niv", "T0": "t0", "Flan2021": "flan"}
TEMPLATE_TYPES = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")


def _question(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    return f"A basket holds {a} apples and {b} pears. How many pieces of fruit are in the basket?", a + b


def _explanation(question_answer: tuple[str, int]) -> str:
    question, total = question_answer
    a, b = (int(w) for w in question.split() if w.isdigit())
    return f"The basket holds {a} apples. It also holds {b} pears. Adding them gives {a} + {b} = {total}. The answer is {total}."


def flan_records(n: int, seed: int) -> list[dict]:
    """FLAN-v2 submix rows cycling through the collections and template types; few-shot
    templates carry two solved exemplars before the query, `_opt` ones list answer options."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        source = list(COLLECTIONS)[i % len(COLLECTIONS)]
        template = TEMPLATE_TYPES[i % len(TEMPLATE_TYPES)]
        question, total = _question(rng)
        query = question + (f"\nOPTIONS:\n- {total}\n- {total + 3}" if template.endswith("_opt") else "")
        if template.startswith("fs"):
            shots = [_question(rng) for _ in range(2)]
            query = "".join(f"{q}\nAnswer: {t}\n\n" for q, t in shots) + query
        rows.append({"inputs": query, "targets": str(total), "_task_source": source,
                     "_task_name": f"fruit_count_{source.lower()}", "_template_type": template})
    return rows


def openorca_records(n: int, seed: int) -> list[dict]:
    """OpenOrca rows: ids name the collection (cot.3, niv.7, ...), the system prompt is drawn from
    the messages Orca 1 assigned to it (Figure 6), the response explains step by step."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        source, prefix = list(COLLECTIONS.items())[i % len(COLLECTIONS)]
        _, system = pick_orca1_system_message(source, multiple_choice=i % 2 == 0, rng=rng)
        qa = _question(rng)
        rows.append({"id": f"{prefix}.{seed}{i}", "system_prompt": system, "question": qa[0], "response": _explanation(qa)})
    return rows


def orca2_records(n: int, seed: int) -> list[dict]:
    """Orca 2 data as OpenAI chat: the teacher's strategy instruction as the system message."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        strategy = list(ORCA2_STRATEGIES)[i % len(ORCA2_STRATEGIES)]
        qa = _question(rng)
        answer = str(qa[1]) if strategy == "direct_answer" else _explanation(qa)
        rows.append({"id": f"orca2.{i}", "strategy": strategy, "messages": [
            {"role": "system", "content": ORCA2_STRATEGIES[strategy]},
            {"role": "user", "content": qa[0]},
            {"role": "assistant", "content": answer}]})
    return rows


def _write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _write_parquet(path: str, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _texts(row: dict) -> list[str]:
    """A record's strings, chat messages' contents included."""
    return [v for v in row.values() if isinstance(v, str)] + [m["content"] for m in row.get("messages", [])]


def _train_tokenizer(folder: str, corpus: list[str]) -> None:
    """Metaspace BPE with <unk>/<s>/</s> and BOS added: LLaMA's conventions, at a small vocabulary."""
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from orca_jax.data.tokenizer import Tokenizer

    backend = BackendTokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"]))
    Tokenizer(backend, bos_id=1, eos_id=2, add_bos=True).save(folder)


def write_rehearsal_data(out: str, examples_per_file: int = 24) -> dict[str, str]:
    """Write the trace files and the tokenizer under `out`; returns {"data_dir", "tokenizer"}."""
    data_dir, tokenizer = os.path.join(out, "data"), os.path.join(out, "tokenizer")
    os.makedirs(data_dir, exist_ok=True)
    files = {"flan_v2.jsonl": flan_records(examples_per_file, seed=1),
             "flan5m_chatgpt.parquet": openorca_records(examples_per_file, seed=2),
             "flan1m_gpt4.parquet": openorca_records(examples_per_file, seed=3),
             "orca2_data.jsonl": orca2_records(examples_per_file, seed=4)}
    for name, rows in files.items():
        (_write_parquet if name.endswith(".parquet") else _write_jsonl)(os.path.join(data_dir, name), rows)
    corpus = [text for rows in files.values() for row in rows for text in _texts(row)]
    _train_tokenizer(tokenizer, corpus + list(ORCA1_SYSTEM_MESSAGES.values()) + [CAUTIOUS_SYSTEM_MESSAGE])
    return {"data_dir": data_dir, "tokenizer": tokenizer}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/rehearsal_data.py OUT")
    print(json.dumps(write_rehearsal_data(sys.argv[1])))
