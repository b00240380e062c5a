"""The papers' evaluation protocols as named presets: `orca-jax eval --protocol NAME`.

A protocol fixes the benchmark subsets, the system message, the prompt variant
(`orca_jax.evaluation.prompts`) and which summary column a paper's number compares with.
What the papers state, and what we had to infer (README "Evaluate" says the same):

- Orca 1 (Mukherjee et al. 2023, arXiv:2306.02707; abstract): BBH and AGIEval "in zero-shot
  settings without CoT". Its result tables (recalled, not re-read: the copies we could
  search hold the abstract only) report BBH's multiple-choice questions and AGIEval's
  English multiple-choice tasks (aqua-rat, logiqa-en, lsat-ar/lr/rc, sat-math, sat-en,
  sat-en-without-passage).
- Orca 2 (Mitra et al. 2023, arXiv:2311.11045; §5 Experimental Setup, §6.1 Reasoning,
  Appendix A "AGIEval Subtask Metrics", Appendix B "BigBench-Hard Subtask Metrics",
  Appendix E "Prompts used in Evaluation"): zero-shot; rows with the empty system message
  (the headline) and with the cautious one ("w/ cautious sm"); AGIEval's English
  multiple-choice tasks scored by "exact match accuracy, adhering to the methodology
  laid out in" AGIEval (so: AGIEval's official zero-shot rule); BBH reported task by task
  on "each BBH MCQ reasoning task" (Tables 7-10); GSM8K among the reasoning benchmarks.

Inferred, not stated: (0) Orca 1's evaluation system message: empty (its system message 1).
(1) The BBH subset. "Multiple choice" is read as every task whose
answer is one of a fixed set (lettered options, Yes/No, True/False, valid/invalid): all
27 BBH files but the four free-form ones (dyck_languages, multistep_arithmetic_two,
object_counting, word_sorting), 23 files. Orca 2's Tables 7-10 number 24 rows, which we
could not match to a task list. (2) The answer parsing. The papers parse free-form
explanations without giving a rule; the lenient BBH rule (`extraction.bbh_lenient`) is
our deterministic stand-in, reported beside BBH's official rule, and GSM8K's flexible
rule (last number) beside its strict one. (3) The prompt: the bare question, since the
papers say zero-shot without CoT and give no answer-format instruction for BBH or GSM8K.
"""

from dataclasses import dataclass

from orca_jax.evaluation.benchmarks import AGIEVAL_ENGLISH_MC

BBH_FREE_FORM = ("dyck_languages", "multistep_arithmetic_two", "object_counting", "word_sorting")
BBH_MULTIPLE_CHOICE = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "formal_fallacies",
    "geometric_shapes", "hyperbaton", "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "navigate", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
)


@dataclass(frozen=True)
class Protocol:
    name: str
    source: str  # the paper and sections it follows
    benchmarks: tuple[str, ...]  # `benchmarks.load_examples` specs
    system: str  # as `--system` takes it
    variant: str  # prompt variant
    compare: dict[str, str]  # benchmark -> the summary field the paper's number compares with

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "system": self.system, "variant": self.variant,
                "compare": self.compare}


def _tasks(benchmark: str, tasks: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{benchmark}:{task}" for task in tasks)


PROTOCOLS = {
    "official": Protocol(
        "official", "each benchmark's own scoring: BBH exact match after 'the answer is' (Suzgun et al. 2022), "
        "AGIEval's zero-shot post_process (Zhong et al. 2023), GSM8K's '#### N' (Cobbe et al. 2021); "
        "zero-shot with the answer format asked for",
        ("bbh", "agieval", "gsm8k"), "empty", "zero_shot",
        {"bbh": "average", "agieval": "average", "gsm8k": "average"}),
    "orca1": Protocol(
        "orca1", "Orca 1 (Mukherjee et al. 2023, arXiv:2306.02707), reasoning evaluation: zero-shot without CoT, "
        "BBH multiple-choice tasks, AGIEval English multiple-choice tasks, empty system message",
        _tasks("bbh", BBH_MULTIPLE_CHOICE) + _tasks("agieval", AGIEVAL_ENGLISH_MC), "empty", "plain",
        {"bbh": "average_lenient", "agieval": "average"}),
    "orca2": Protocol(
        "orca2", "Orca 2 (Mitra et al. 2023, arXiv:2311.11045) section 5, section 6.1, appendices A, B and E: "
        "zero-shot, BBH MCQ tasks, AGIEval English multiple-choice tasks by AGIEval's methodology, GSM8K; "
        "empty system message (--system cautious for the 'w/ cautious sm' rows)",
        _tasks("bbh", BBH_MULTIPLE_CHOICE) + _tasks("agieval", AGIEVAL_ENGLISH_MC) + ("gsm8k",), "empty", "plain",
        {"bbh": "average_lenient", "agieval": "average", "gsm8k": "average_flexible"}),
}
