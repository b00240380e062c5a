"""Equivalence of MATH-style answers, as AGIEval scores its `math` subset.

AGIEval uses Hendrycks et al.'s MATH normalisation (`is_equiv`): both strings are
normalised (LaTeX spacing, \\left/\\right, degrees, units, percent, dollar signs,
leading zero, `k = ` prefixes, \\sqrt and \\frac shorthand, a/b -> \\frac{a}{b}) and then
compared exactly. This module re-implements those steps.
"""


def _brace_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}."""
    head, *parts = s.split("\\frac")
    out = head
    for part in parts:
        out += "\\frac"
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:
            return s
        numerator, rest = part[0], part[1:]
        if rest.startswith("{"):
            out += "{" + numerator + "}" + rest
        else:
            out += "{" + numerator + "}{" + rest[0] + "}" + rest[1:]
    return out


def _slash_to_frac(s: str) -> str:
    pieces = s.split("/")
    if len(pieces) != 2:
        return s
    try:
        a, b = int(pieces[0]), int(pieces[1])
    except ValueError:
        return s
    if s != f"{a}/{b}":
        return s
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _brace_sqrt(s: str) -> str:
    head, *parts = s.split("\\sqrt")
    return head + "".join("\\sqrt" + (p if p.startswith("{") else "{" + p[:1] + "}" + p[1:]) for p in parts)


def normalize(s: str) -> str:
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    if "\\text{ " in s:  # "\text{ " introduces units on the right in MATH answers
        units = s.split("\\text{ ")
        if len(units) != 2:
            raise ValueError("ambiguous units")
        s = units[0]
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _brace_sqrt(s)
    s = s.replace(" ", "")
    s = _brace_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash_to_frac(s)


def is_equiv(prediction: str | None, target: str | None) -> bool:
    if prediction is None or target is None:
        return prediction is None and target is None
    try:
        return normalize(prediction) == normalize(target)
    except (ValueError, IndexError):
        return prediction == target
