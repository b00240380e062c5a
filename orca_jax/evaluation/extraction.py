"""Answer extraction from free-form (explanation-style) model outputs, per benchmark.

Each rule re-implements the benchmark's official post-processing so that scores are
comparable with published numbers:

- BIG-Bench Hard: the text after the last "the answer is" (case-insensitive; else the
  whole stripped output), minus the sentence's final period, compared exactly with the
  target. BBH's chain-of-thought exemplars all end "So the answer is X." -- the period
  belongs to the sentence, not to the answer.
- AGIEval multiple choice (ruixiangcui/AGIEval `post_process.py`): on the last non-empty
  line search `answer is .*?([A-G])` (first match, case-sensitive); if that fails, the first
  of A-F anywhere in the output. For an output without an "answer is" line this is exactly
  AGIEval's zero-shot rule (first capital A-F), so one rule serves both settings.
- AGIEval math (cloze): AGIEval's `parse_math_answer` (last `\\boxed{}`, else the last
  `$...$`, else what follows the last "=", else the last number), compared with
  `math_equivalence.is_equiv`.
- GSM8K strict: the dataset's own `extract_answer` (openai/grade-school-math): the first
  `#### N`, commas removed, compared as strings. Flexible: the last number in the output,
  compared as a number.

Every extractor returns `(answer, format_ok)`: `format_ok` says whether the output used
the answer format the rule looks for (rather than a fallback), reported beside accuracy.
"""

import re
from decimal import Decimal, InvalidOperation

_BBH_TRIGGER = re.compile(r"the answer is", re.IGNORECASE)


def extract_bbh(text: str) -> tuple[str, bool]:
    matches = list(_BBH_TRIGGER.finditer(text))
    if not matches:
        return text.strip(), False
    answer = text[matches[-1].end():].strip()
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    return answer, True


def _last_nonempty_line(text: str) -> str:
    for line in reversed(text.split("\n")):
        if line.strip():
            return line
    return text


def extract_choice(text: str, pattern_letters: str = "ABCDEFG", fallback_letters: str = "ABCDEF") -> tuple[str, bool]:
    """AGIEval's single-answer rule; `*_letters` default to AGIEval's own sets."""
    match = re.search(f"answer is .*?([{pattern_letters}])", _last_nonempty_line(text))
    if match:
        return match.group(1), True
    return next((c for c in text if c in fallback_letters), ""), False


def extract_math(text: str) -> tuple[str | None, bool]:
    """AGIEval's zero-shot `parse_math_answer`; format_ok when the answer is boxed."""
    for prefix in ("The answer is therefore", "答案是"):
        index = text.rfind(prefix)
        if index >= 0:
            text = text[index + len(prefix):].strip()
    if "\\boxed" in text:
        return _unbox(_last_boxed(text)), True
    dollar = re.findall(r"\$(.*)\$", text)
    if dollar and _after_equals(dollar[-1]):
        return _after_equals(dollar[-1]), False
    if "=" in text:
        answer = text.split("=")[-1].lstrip(" ").rstrip(".")
        # AGIEval splits on a literal backslash-n (escaped newline in model text).
        return answer.split("\\n")[0], False
    numbers = re.findall(r"(?:\$)?\d+(?:\.\d+)?(?![\w\d])", text)
    return (numbers[-1] if numbers else None), False


def _after_equals(answer: str) -> str:
    return answer.split("=")[-1].lstrip(" ") if "=" in answer else answer


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return None


def _unbox(boxed: str | None) -> str | None:
    left = "\\boxed{"
    if boxed is None or not boxed.startswith(left) or not boxed.endswith("}"):
        return None
    return _after_equals(boxed[len(left):-1])


_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
# A minus sign counts only when it is not a subtraction between two numbers ("16-3").
_NUMBER = re.compile(r"(?:(?<!\d)-)?\d[\d,]*(?:\.\d+)?")


def extract_gsm8k_strict(text: str) -> tuple[str, bool]:
    match = _GSM8K_STRICT.search(text)
    if not match:
        return "[invalid]", False
    return match.group(1).strip().replace(",", ""), True


def extract_gsm8k_flexible(text: str) -> tuple[str, bool]:
    numbers = _NUMBER.findall(text)
    if not numbers:
        return "", False
    return numbers[-1].replace(",", ""), True


def same_number(a: str, b: str) -> bool:
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False
