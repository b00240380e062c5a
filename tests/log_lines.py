"""Test helper: the lines of a captured stderr logged at WARNING level or above."""

import re

# Python logging's "WARNING:absl:...", absl/TF native "W0000 ..."/"E0000 ...", a bare "WARNING: ..."
WARNING_OR_ERROR = re.compile(r"^(WARNING|ERROR|CRITICAL)\b|^[WEF]\d{4} |\b(WARNING|ERROR):")


def loud_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if WARNING_OR_ERROR.search(line)]
