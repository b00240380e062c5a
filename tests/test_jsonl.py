import pytest

from orca_jax.data.jsonl import BadRecord, read_jsonl
from orca_jax.errors import UserError


@pytest.mark.parametrize("raw, problem", [
    (b'{"a": 1', "(line): broken JSON: Expecting ',' delimiter at column 8"),
    (b'[1, 2]', "(line): expected a JSON object, got list"),
    (b'{"a": "\xff"}', "(line): invalid UTF-8 at byte 7"),
])
def test_first_bad_line_raises_with_file_and_line(tmp_path, raw, problem):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 0}\n\n' + raw + b'\n{"a": 3}\n')
    rows = read_jsonl(str(path))
    assert next(rows) == (1, {"a": 0})  # rows stream: the good line comes before the bad one is read
    with pytest.raises(BadRecord) as err:
        next(rows)
    assert str(err.value) == f"{path}:3: {problem}"


def test_blank_lines_skipped_and_crlf_read(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\r\n  \r\n{"a": 2}')
    assert list(read_jsonl(str(path))) == [(1, {"a": 1}), (3, {"a": 2})]


def test_unreadable_file_names_the_flag_or_propagates(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match=f"^--prompts {missing}: No such file or directory$"):
        list(read_jsonl(missing, "--prompts"))
    with pytest.raises(FileNotFoundError):
        list(read_jsonl(missing))
