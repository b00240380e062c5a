"""Answer extraction from free-form (explanation-style) model outputs, per benchmark.

Each rule re-implements the benchmark's official post-processing so that scores are
comparable with published numbers:

- BIG-Bench Hard: the text after the last "the answer is" (case-insensitive; else the
  whole stripped output), minus the sentence's final period, compared exactly with the
  target. BBH's chain-of-thought exemplars all end "So the answer is X." -- the period
  belongs to the sentence, not to the answer.
- BIG-Bench Hard, lenient (`bbh_lenient`, ours, for explanation-style answers the papers
  parsed by hand or with a model, see `orca_jax.evaluation.protocols`): the option a reply
  names counts, however it is written: "(A)", "A", "**(A)**", "(A) Yes", the option's
  text, and a word target ("valid", "Yes") case-insensitively. A reply naming two options
  names none.
- AGIEval multiple choice, two rules from ruixiangcui/AGIEval `src/post_process.py`:
  the official zero-shot rule (`post_process` with a zero-shot setting calls
  `find_first_capital_letter`): the first of A-F anywhere in the output, so "Among A
  through E, the answer is B" reads "A" (`first_capital_letter`); and the few-shot-CoT
  rule (`parse_few_shot_qa_single_answer`): on the last non-empty line search
  `answer is .*?([A-G])` (first match, case-sensitive), else the first of A-F anywhere
  (`extract_choice`).
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


# Where an explanation states its answer; the last one counts, else the reply's last line.
_LENIENT_TRIGGER = re.compile(r"answer is|answer:", re.IGNORECASE)
_MARKUP = re.compile(r"[*_`]")
_OPTION_LINE = re.compile(r"^\(([A-Z])\)\s*(.+?)\s*$", re.MULTILINE)
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_BARE_LETTER = re.compile(r"([A-Z])(?:[).:]|$)")  # "A", "A.", "A)", "A:"; not the article in "A dog"
_LETTER_LABEL = re.compile(r"^\(?[A-Z]\)\s*")  # "(A) " before an option's text
_WORD_TARGET = re.compile(r"[A-Za-z]+")  # Yes/No, True/False, valid/invalid


def bbh_options(question: str) -> dict[str, str]:
    """Letter -> option text of a BBH question's "(A) ..." lines ({} when it has none)."""
    return {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(question)}


def _normalized(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation or quotes."""
    return " ".join(text.lower().split()).strip(" .,;:!?\"'")


def _answer_span(text: str) -> str:
    matches = list(_LENIENT_TRIGGER.finditer(text))
    span = text[matches[-1].end():] if matches else _last_nonempty_line(text)
    return _MARKUP.sub("", span).strip()


def bbh_lenient(text: str, target: str, options: dict[str, str] | None = None) -> tuple[str, bool]:
    """(what the reply names, whether that is the target) under the lenient BBH rule.

    A multiple-choice target ("(B)", or an option's text, as a few BBH targets are) is
    matched by the one option letter the answer names or by the option's text; a word or
    other free-form target by its normalized text, a word also as the answer's first word."""
    options = options or {}
    span, wanted = _answer_span(text), _normalized(target)
    target_letter = target.strip()[1] if re.fullmatch(r"\([A-Z]\)", target.strip()) else next(
        (letter for letter, option in options.items() if _normalized(option) == wanted), None)
    if target_letter is not None:
        letters = set(_PAREN_LETTER.findall(span))
        bare = _BARE_LETTER.match(span)
        if not letters and bare:
            letters = {bare.group(1)}
        if len(letters) > 1:
            return span, False  # names several options
        if letters:
            letter = letters.pop()
            return f"({letter})", letter == target_letter
        said = _normalized(span)
        named = next((letter for letter, option in options.items() if _normalized(option) == said), None)
        return span, named == target_letter or said == wanted
    said = _normalized(_LETTER_LABEL.sub("", span))
    if _WORD_TARGET.fullmatch(target.strip()):
        first = said.split(" ")[0].strip(".,;:!?\"'") if said else ""
        return first, first == wanted
    return said, said == wanted


def _last_nonempty_line(text: str) -> str:
    for line in reversed(text.split("\n")):
        if line.strip():
            return line
    return text


def first_capital_letter(text: str, letters: str = "ABCDEF") -> tuple[str, bool]:
    """AGIEval's official zero-shot rule: the first of `letters` anywhere in the output.
    format_ok: that letter opens the reply as a letter on its own (after "(" or markup, not
    the "A" of "Among"), where AGIEval's zero-shot prompt, ending "the answer is", asks for
    it; elsewhere the rule may have read a stray capital."""
    index = next((i for i, c in enumerate(text) if c in letters), None)
    if index is None:
        return "", False
    alone = not text[index + 1:index + 2].isalnum()
    return text[index], alone and not text[:index].strip(" \n\t(*_`")


def extract_choice(text: str, pattern_letters: str = "ABCDEFG", fallback_letters: str = "ABCDEF") -> tuple[str, bool]:
    """AGIEval's few-shot-CoT single-answer rule; `*_letters` default to AGIEval's own sets."""
    match = re.search(f"answer is .*?([{pattern_letters}])", _last_nonempty_line(text))
    if match:
        return match.group(1), True
    return first_capital_letter(text, fallback_letters)[0], False


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
