"""Zero-shot prompts for evaluation: benchmark question -> chat messages.

As in the Orca papers: no exemplars, any system message (empty by default; Orca 2 used
its cautious message), the model's own chat template. Three variants:

- `zero_shot`: the question plus the answer format the benchmark's extraction rule
  reads (AGIEval keeps its official zero-shot context, which ends "the answer is").
- `step_by_step`: the same with "Let's think step by step." (Kojima et al.), and for
  AGIEval its zero-shot-CoT context with AGIEval's second-stage answer sentence asked for
  at the end, so one pass replaces AGIEval's two.
- `plain`: the benchmark's question as it stands, no answer-format instruction (BBH and
  GSM8K); AGIEval's official zero-shot context. The papers' protocols
  (`orca_jax.evaluation.protocols`) ask this way: zero-shot, without CoT, and parse the
  free-form answer leniently.

Generation is never stopped on a text sequence (lm-eval's "\\n\\n" stop would cut an
explanation short): only the model's end-of-turn token ends an answer.
"""

from orca_jax.evaluation.benchmarks import Example

VARIANTS = ("zero_shot", "step_by_step", "plain")
STEP_BY_STEP = "Let's think step by step."


def _question(example: Example) -> str:
    # AGIEval's context: passage, then "Q: question" (a newline where AGIEval glues them).
    return (example.passage + "\n" if example.passage else "") + "Q: " + example.question


def _choice_block(example: Example) -> str:
    return _question(example) + " Answer Choices: " + " ".join(example.options)


def user_message(example: Example, variant: str = "zero_shot") -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown prompt variant {variant!r} (known: {', '.join(VARIANTS)})")
    cot = variant == "step_by_step"
    if example.options:  # AGIEval multiple choice and generic mc
        last = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(example.options) - 1]
        if not cot:  # zero_shot and plain: AGIEval's own zero-shot context
            return _choice_block(example) + f"\nA: Among A through {last}, the answer is"
        # A placeholder such as "(X)" gets copied verbatim by small models; name the letters.
        return (_choice_block(example) + f"\n{STEP_BY_STEP} End your response with \"Therefore, among A "
                f"through {last}, the answer is\" followed by the letter of your choice.")
    if example.benchmark == "agieval":  # math (cloze)
        if not cot:  # zero_shot and plain
            return _question(example) + "\nA: The answer is"
        return _question(example) + f"\nA: {STEP_BY_STEP} Put the final answer in \\boxed{{}}."
    if variant == "plain":
        return example.question
    if example.benchmark == "gsm8k":
        hint = 'End your response with the final answer on its own line as "#### <number>".'
    else:  # bbh
        hint = 'End your response with "So the answer is <answer>."'
    return example.question + "\n\n" + (STEP_BY_STEP + " " if cot else "") + hint


def chat_messages(example: Example, system: str | None = "", variant: str = "zero_shot") -> list[dict]:
    """`system=None` leaves the system turn out (the template's default applies);
    a string, even empty, is sent as the system message (Orca 1's message 1 is empty)."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    return messages + [{"role": "user", "content": user_message(example, variant)}]
