"""GPT-4-as-judge, as Orca evaluated open-ended answers (Vicuna's review protocol).

For every prompt the judge sees the question and two answers and gives each a score from
1 to 10 on the first line of its reply. Each pair is judged twice, candidate first and
reference first, so the judge's preference for a position cancels out. The result is the
candidate's total score relative to the reference's, in percent (Orca: "relative to
ChatGPT"), per prompt set and overall.

Input files are JSONL, one answer per line::

    {"id": "1", "prompt": "How can I improve my time management skills?",
     "response": "...", "set": "vicuna"}

`set` is optional (default: the candidates file's name); candidates and references are
joined on `id`. The judge is any OpenAI-compatible endpoint; its API key comes only from
an environment variable (`orca_jax.teacher.client.ChatClient`). Every judgment is appended
to `judgments.jsonl` in the output folder the moment it arrives and is keyed by the
request's content, so a killed run restarted with the same arguments asks nothing twice.
"""

import asyncio
import json
import os
from dataclasses import dataclass

from tqdm import tqdm

from orca_jax.data.jsonl import read_jsonl
from orca_jax.errors import UserError
from orca_jax.teacher.cache import request_key
from orca_jax.teacher.client import STATUS_OK, ChatClient, SamplingParams, TeacherUnavailable

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
JUDGE_TEMPLATE = """[Question]
{question}

[The Start of Assistant 1's Answer]
{answer_1}

[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{answer_2}

[The End of Assistant 2's Answer]

[System]
We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above.
Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.
Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment.
"""


@dataclass(frozen=True)
class Answer:
    id: str
    prompt: str
    response: str
    set: str


def read_answers(path: str, flag: str | None = None) -> dict[str, Answer]:
    """Answers by id; `flag` names the option that gave the path in an unreadable-file error."""
    default_set = os.path.splitext(os.path.basename(path))[0]
    answers = {}
    for line_no, row in read_jsonl(path, flag):
        for name in ("id", "prompt", "response"):
            if not isinstance(row.get(name), (str, int)) or isinstance(row.get(name), bool):
                raise UserError(f"{path}:{line_no}: field '{name}': expected a string, got {'missing' if name not in row else type(row[name]).__name__}")
        key = str(row["id"])
        if key in answers:
            raise UserError(f"{path}:{line_no}: field 'id': duplicate id {key!r}")
        answers[key] = Answer(key, str(row["prompt"]), str(row["response"]), str(row.get("set", default_set)))
    return answers


def parse_scores(review: str) -> tuple[float, float] | None:
    """The first line must be exactly two numbers ("8 7", "8, 7"), as Vicuna's review parser
    requires; anything else is unparsed (None)."""
    tokens = review.strip().split("\n")[0].replace(",", " ").split()
    if len(tokens) != 2:
        return None
    try:
        return float(tokens[0]), float(tokens[1])
    except ValueError:
        return None


def _load_done(path: str) -> dict[str, dict]:
    done = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line torn by a kill mid-write: judge it again
                    continue
                done[record["key"]] = record
    return done


async def _judge_all(jobs, done, judgments_path, *, judge_url, model, sampling, client_kwargs, progress):
    async with ChatClient(judge_url, **client_kwargs) as client:
        with open(judgments_path, "a", encoding="utf-8") as out:
            async def one(job):
                messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": job["content"]}]
                outcome = await client.complete(model, messages, sampling)
                review = outcome.text if outcome.status == STATUS_OK else None
                record = {k: v for k, v in job.items() if k != "content"}
                record.update(review=review, status=outcome.status, scores=parse_scores(review) if review else None)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())
                done[record["key"]] = record
                progress.update(1)

            await asyncio.gather(*(one(job) for job in jobs))


def run_judge(candidates_path: str, references_path: str, judge_url: str, out_dir: str, *, model: str = "gpt-4",
              temperature: float = 0.2, max_tokens: int = 1024, concurrency: int = 4,
              requests_per_minute: float | None = None, api_key_env: str = "OPENAI_API_KEY") -> dict:
    """Judges every candidate against its reference in both orders; returns (and writes) the summary."""
    candidates, references = read_answers(candidates_path, "--candidates"), read_answers(references_path, "--references")
    missing = sorted(set(candidates) - set(references))
    if missing:
        raise UserError(f"{references_path}: no reference for id(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    os.makedirs(out_dir, exist_ok=True)
    judgments_path = os.path.join(out_dir, "judgments.jsonl")
    sampling = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=max_tokens)
    jobs = []
    for cand in candidates.values():
        ref = references[cand.id]
        for order, (first, second) in (("candidate_first", (cand, ref)), ("reference_first", (ref, cand))):
            content = JUDGE_TEMPLATE.format(question=cand.prompt, answer_1=first.response, answer_2=second.response)
            key = request_key(teacher=judge_url, model=model, sampling=sampling.as_dict(),
                              system_message=JUDGE_SYSTEM, prompt=content)
            jobs.append({"key": key, "id": cand.id, "set": cand.set, "order": order, "content": content})
    done = _load_done(judgments_path)
    todo = [job for job in jobs if job["key"] not in done]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="judge", unit="review") as progress:
        try:
            asyncio.run(_judge_all(todo, done, judgments_path, judge_url=judge_url, model=model, sampling=sampling,
                                   client_kwargs=dict(api_key_env=api_key_env, concurrency=concurrency,
                                                      requests_per_minute=requests_per_minute), progress=progress))
        except TeacherUnavailable as e:
            raise UserError(f"judge {judge_url} unavailable ({e}); finished reviews are kept, rerun to resume") from None
    summary = summarize_judgments([done[job["key"]] for job in jobs])
    with open(os.path.join(out_dir, "judge_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


def summarize_judgments(judgments: list[dict]) -> dict:
    """Candidate score / reference score in percent, summed over both orders, per set and overall.

    Reviews without two scores on the first line are counted as `unparsed` and left out."""
    totals: dict[str, list[float]] = {}
    unparsed: dict[str, int] = {}
    for j in judgments:
        for group in (j["set"], "overall"):
            unparsed.setdefault(group, 0)
            totals.setdefault(group, [0.0, 0.0, 0])
            if j["scores"] is None:
                unparsed[group] += 1
                continue
            first, second = j["scores"]
            cand, ref = (first, second) if j["order"] == "candidate_first" else (second, first)
            totals[group][0] += cand
            totals[group][1] += ref
            totals[group][2] += 1
    return {
        group: {"relative_score": 100.0 * c / r if r else None, "candidate_score": c, "reference_score": r,
                "reviews": n, "unparsed": unparsed[group]}
        for group, (c, r, n) in totals.items()
    }


def judge_table(summary: dict) -> str:
    lines = ["| prompt set | candidate / reference (%) | reviews | unparsed |", "| --- | --- | --- | --- |"]
    for group, s in summary.items():
        score = "n/a" if s["relative_score"] is None else f"{s['relative_score']:.1f}"
        lines.append(f"| {group} | {score} | {s['reviews']} | {s['unparsed']} |")
    return "\n".join(lines) + "\n"
