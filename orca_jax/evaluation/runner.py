"""Evaluation runs: examples -> batched KV-cache generation -> scored predictions -> summary.

`evaluate(...)` serves the `eval` command and, through `make_eval_fn`, the trainer's
periodic hook: it takes a model already in memory (config, params, tokenizer), so a
trainer can call it with its current parameters. `rescore(...)` scores an existing
predictions file without a model.

Prompts are sorted by length into batches of `batch_size` (the last batch is topped up
with copies, so batches differ only in padded prompt length and compile few times), generated greedily until the
model's end-of-turn token or `max_new_tokens`, and written back in the benchmark's order.
With several devices the parameters are placed with the training mesh and logical-axis
rules (`orca_jax.partitioning`, from gin), so a model that needs sharding to fit is
evaluated the way it was trained.
"""

import os

import flax.linen as nn
import jax
from tqdm import tqdm

from orca_jax import partitioning
from orca_jax.decoding import generate
from orca_jax.errors import UserError
from orca_jax.evaluation.benchmarks import Example
from orca_jax.evaluation.extraction import bbh_options
from orca_jax.evaluation.prompts import chat_messages
from orca_jax.evaluation.scoring import read_predictions, score_record, summarize
from orca_jax.evaluation.tables import benchmark_entries, write_predictions, write_summary
from orca_jax.model.config import DecoderConfig
from orca_jax.model.decoder import param_logical_axes


def place_params(config: DecoderConfig, params):
    """Params sharded over the training mesh (gin's mesh shape and rules); unchanged on one device."""
    if jax.device_count() == 1:
        return params
    mesh = partitioning.make_mesh()
    shardings = nn.logical_to_mesh_sharding(param_logical_axes(config), mesh, partitioning.logical_axis_rules())
    return jax.device_put(params, shardings)


def render_prompts(tokenizer, examples: list[Example], system: str | None, variant: str) -> list[str]:
    return [tokenizer.apply_chat_template(chat_messages(e, system, variant), add_generation_prompt=True) for e in examples]


def generate_texts(config: DecoderConfig, params, tokenizer, prompts: list[str], *, batch_size: int = 8,
                   max_new_tokens: int = 512, progress: bool = True) -> list[str]:
    """Greedy completions of already-rendered prompts, in the prompts' order."""
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    # The chat template writes any BOS itself, so none is added (as transformers does).
    ids = [tokenizer.encode(p, add_bos=False) for p in prompts]
    context = config.max_position_embeddings
    too_long = [i for i, x in enumerate(ids) if len(x) >= context]
    if too_long:
        raise UserError(f"prompt {too_long[0]} has {len(ids[too_long[0]])} tokens, at or over the model's context of {context}")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batch_size = min(batch_size, len(ids) or 1)  # no rows of padding copies for a short run
    texts = [""] * len(ids)
    eos = tokenizer.stop_ids  # EOS and the chat template's end-of-turn token, never a text pattern
    with tqdm(total=len(ids), desc="generate", unit="ex", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = [ids[i] for i in rows]
            batch += [batch[-1]] * (batch_size - len(batch))  # same shape as the other batches
            budget = min(max_new_tokens, context - max(len(x) for x in batch))
            outputs = generate(config, params, batch, budget, eos_ids=eos)
            for row, out in zip(rows, outputs):
                texts[row] = tokenizer.decode([t for t in out if t not in eos])
            bar.update(len(rows))
    return texts


def predict(config: DecoderConfig, params, tokenizer, examples: list[Example], *, system: str | None = "",
            variant: str = "zero_shot", batch_size: int = 8, max_new_tokens: int = 512, progress: bool = True) -> list[dict]:
    """One scored prediction record per example (the predictions.jsonl lines)."""
    prompts = render_prompts(tokenizer, examples, system, variant)
    texts = generate_texts(config, place_params(config, params), tokenizer, prompts, batch_size=batch_size,
                           max_new_tokens=max_new_tokens, progress=progress)
    records = []
    for example, prompt, text in zip(examples, prompts, texts):
        record = {"benchmark": example.benchmark, "task": example.task, "id": example.id, "prompt": prompt,
                  "prediction": text, "target": example.target}
        if example.benchmark == "mc":
            record["num_choices"] = len(example.options)
        if example.benchmark == "bbh" and bbh_options(example.question):
            record["options"] = bbh_options(example.question)  # lets the lenient rule read an option's text
        records.append(score_record(record))
    return records


def _finish(records: list[dict], out_dir: str | None, meta: dict | None = None) -> dict:
    summary = dict(meta or {}, **summarize(records))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_predictions(os.path.join(out_dir, "predictions.jsonl"), records)
        write_summary(out_dir, summary)
    return summary


def evaluate(config: DecoderConfig, params, tokenizer, examples: list[Example], *, out_dir: str | None = None,
             system: str | None = "", variant: str = "zero_shot", batch_size: int = 8, max_new_tokens: int = 512,
             progress: bool = True, meta: dict | None = None) -> dict:
    """Generates, scores and (with `out_dir`) writes predictions and summaries; returns the summary.

    `examples` come from `benchmarks.load_examples`; a trainer reads them once and calls this
    with its current parameters at every evaluation step. `meta` (`tables.META_KEYS`: the
    protocol, the data's provenance) is written into the summary beside the benchmarks."""
    records = predict(config, params, tokenizer, examples, system=system, variant=variant, batch_size=batch_size,
                      max_new_tokens=max_new_tokens, progress=progress)
    return _finish(records, out_dir, meta)


def summary_scalars(summary: dict) -> dict[str, float]:
    """Flat `{"<benchmark>/average": ..., "<benchmark>/<task>": accuracy}` for metric writers."""
    scalars = {}
    for benchmark, entry in benchmark_entries(summary).items():
        scalars[f"{benchmark}/average"] = entry["average"]
        scalars.update({f"{benchmark}/{task}": t["accuracy"] for task, t in entry["tasks"].items()})
    return scalars


def make_eval_fn(config: DecoderConfig, tokenizer, examples: list[Example], out_dir: str, **predict_kwargs):
    """The trainer's periodic hook: `eval_fn(params, step) -> scalars`, writing each evaluation's
    predictions and summaries to `out_dir/step_<step>/`. `predict_kwargs` as for `evaluate`."""

    def eval_fn(params, step: int) -> dict[str, float]:
        summary = evaluate(config, params, tokenizer, examples, out_dir=os.path.join(out_dir, f"step_{step}"),
                           **predict_kwargs)
        return summary_scalars(summary)

    return eval_fn


def rescore(predictions_path: str, out_dir: str | None = None) -> dict:
    """Scores someone's predictions file with the same rules; rewrites it scored into `out_dir`."""
    return _finish([score_record(r) for r in read_predictions(predictions_path)], out_dir)
