"""lm-evaluation-harness backend: an lm-eval model class for orca-jax models.

`OrcaJaxLM` answers lm-eval's three request types on the project's decoder:
`loglikelihood` (teacher-forced, batched, right-padded; lm-eval's own context/continuation
split from `TemplateLM`), `loglikelihood_rolling` (lm-eval's disjoint rolling windows over
the model's context) and `generate_until` (the KV-cache decoder, greedy unless the task
samples, cut at the task's stop strings). Tokenization follows lm-eval's Hugging Face
backend (`HFLM`): the model's own BOS rule, BOS (else EOS) as the prefix of an empty
context, inputs left-truncated to the context length, so both backends see the same tokens.

lm-eval discovers models only through its registry, which this module fills when imported
(`--model orca-jax` in a script that imports it); `orca-jax eval --harness` builds the model
itself. Needs the `harness` extra (`pip install -e .[harness]`).
"""

from __future__ import annotations

import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from orca_jax.decoding import generate
from orca_jax.errors import UserError
from orca_jax.model.scoring import next_token_scores

PAD_MULTIPLE = 64  # padded lengths are multiples of this, so few shapes compile


@register_model("orca-jax", "orca_jax")
class OrcaJaxLM(TemplateLM):
    def __init__(self, pretrained: str | None = None, model=None, batch_size: int | str = 8, max_gen_toks: int = 256,
                 dtype: str | None = None, **_ignored):
        """`pretrained`: any path `orca-jax eval --model` takes; `model`, when given, is that
        path already loaded (`orca_jax.model.loading.LoadedModel`). lm-eval's `device` /
        `max_batch_size` are ignored (JAX places the computation)."""
        super().__init__()
        if model is None:
            if not pretrained:
                raise UserError("orca-jax lm-eval model: give pretrained=PATH")
            from orca_jax.model.loading import load_model

            model = load_model(pretrained, dtype=dtype)
        if str(batch_size).startswith("auto"):
            batch_size = 8
        self.config, self.params, self.tokenizer = model.config, model.params, model.tokenizer
        self.path = pretrained or "orca-jax-model"
        self.batch_size, self.max_gen_toks = int(batch_size), int(max_gen_toks)

    # --- tokenization, as lm-eval's HF backend does it ---

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self.config.max_position_embeddings

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        if add_special_tokens is None and string.startswith(self.tokenizer.decode([self.prefix_token_id],
                                                                                   skip_special_tokens=False)):
            add_special_tokens = False  # the string carries its BOS already
        return self.tokenizer.encode(string, add_bos=add_special_tokens)

    @property
    def tokenizer_name(self) -> str:
        return self.path.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    # --- scoring ---

    def _score_batches(self, sequences: list[list[int]], disable_tqdm: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sequence: log p(token t+1 | tokens <= t) and whether token t+1 was the argmax, t < len-1."""
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        out: list = [None] * len(sequences)
        for start in tqdm(range(0, len(order), self.batch_size), desc="orca-jax scoring", disable=disable_tqdm):
            rows = order[start:start + self.batch_size]
            length = -(-max(len(sequences[i]) for i in rows) // PAD_MULTIPLE) * PAD_MULTIPLE
            tokens = np.zeros((self.batch_size, length), np.int32)
            segments = np.zeros_like(tokens)
            for r, i in enumerate(rows):  # rows past the batch stay padding (segment 0)
                tokens[r, :len(sequences[i])] = sequences[i]
                segments[r, :len(sequences[i])] = 1
            positions = np.arange(length, dtype=np.int32)[None] * segments
            chosen, top_ids, _ = next_token_scores(self.config, self.params, tokens, positions, segments, k=1)
            chosen, top_ids = np.asarray(chosen), np.asarray(top_ids)[..., 0]
            for r, i in enumerate(rows):
                n = len(sequences[i]) - 1
                out[i] = (chosen[r, :n], top_ids[r, :n] == tokens[r, 1:n + 1])
        return out

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of the continuation's log-probs, whether greedy decoding would produce it) per
        request; the input is left-truncated to the context as HFLM truncates it."""
        sequences, spans = [], []
        for _, context_enc, continuation_enc in requests:
            if not continuation_enc:
                raise UserError("lm-eval request with an empty continuation")
            whole = (context_enc + continuation_enc)[-(self.max_length + 1):]
            sequences.append(whole)
            spans.append(len(continuation_enc))
        results = []
        for (logprobs, greedy), n in zip(self._score_batches(sequences, disable_tqdm), spans):
            results.append((float(logprobs[-n:].sum()), bool(greedy[-n:].all())))
        for request, result in zip(requests, results):
            if request[0] is not None:
                self.cache_hook.add_partial("loglikelihood", request[0], result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for index, (string,) in enumerate(req.args for req in requests):
            for window in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, *window))
                owner.append(index)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[index] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    # --- generation ---

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        eos = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        results: list = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):  # one generate call per distinct set of generation settings
            groups.setdefault(repr(sorted(req.args[1].items(), key=str)), []).append(i)
        for indices in tqdm(groups.values(), desc="orca-jax generating", disable=disable_tqdm):
            kwargs = normalize_gen_kwargs(dict(requests[indices[0]].args[1]), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            budget = kwargs.pop("max_gen_toks")
            if budget >= self.max_length:
                raise UserError(f"max_gen_toks {budget} leaves no context in the model's {self.max_length} tokens")
            temperature = kwargs.get("temperature", 0.0) if kwargs.get("do_sample") else 0.0
            for start in range(0, len(indices), self.batch_size):
                rows = indices[start:start + self.batch_size]
                prompts = [self.tok_encode(requests[i].args[0])[-(self.max_length - budget):] for i in rows]
                outputs = generate(self.config, self.params, prompts, budget, temperature=temperature,
                                   eos_ids=self.tokenizer.stop_ids)
                for i, ids in zip(rows, outputs):
                    text = self.tokenizer.decode([t for t in ids if t not in self.tokenizer.stop_ids])
                    results[i] = postprocess_generated_text(text, until, None)
                    self.cache_hook.add_partial("generate_until", requests[i].args, results[i])
        return results


def task_manager(tasks: list[str], include_path: str | None = None):
    """lm-eval's TaskManager (with `include_path`'s YAMLs), once every task name is known to it.
    Tasks all found under `include_path` skip indexing lm-eval's own ~15k task files (seconds)."""
    from lm_eval.tasks import TaskManager

    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if set(tasks) <= set(local.all_tasks):
            return local
    manager = TaskManager(include_path=include_path)
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise UserError(f"lm-eval knows no task '{unknown[0]}'" + (f" (nor does --harness_include {include_path})"
                                                                    if include_path else ""))
    return manager


def run_tasks(model, model_path: str, tasks: list[str], manager, *, limit: int | None = None,
              num_fewshot: int | None = None, batch_size: int = 8, apply_chat_template: bool = False,
              system: str | None = None) -> dict:
    """lm-eval's `simple_evaluate` on a loaded model; the summary's `lm_eval` entry:
    {"tasks": {task: {"metrics": {name: value}, "n": int}}, "lm_eval_version": str}."""
    import lm_eval

    lm = OrcaJaxLM(pretrained=model_path, model=model, batch_size=batch_size)
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                                      log_samples=False, apply_chat_template=apply_chat_template,
                                      system_instruction=system or None)
    table = {}
    for task, metrics in results["results"].items():
        values = {name.split(",")[0]: value for name, value in metrics.items()
                  if isinstance(value, (int, float)) and name.split(",")[0] not in ("alias", "sample_len")}
        table[task] = {"metrics": values, "n": results.get("n-samples", {}).get(task, {}).get("effective")}
    return {"tasks": table, "lm_eval_version": lm_eval.__version__}
