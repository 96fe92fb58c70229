"""Math data files: every bad row is an error naming the file and row; duplicates are counted."""

import json

import pytest

from llm.tasks import MathTask, read_rows

GOOD = [{"problem": "1 + 1?", "answer": "2"}, {"problem": "2 + 2?", "answer": 4}]


def write(path, rows) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


@pytest.mark.parametrize("row, why", [
    ({"problem": "p", "answer": None}, "field 'answer' missing or null"),
    ({"problem": "p"}, "field 'answer' missing or null"),
    ({"problem": "p", "answer": True}, "field 'answer' is a boolean"),
    ({"problem": "p", "answer": False}, "field 'answer' is a boolean"),
    ('{"problem": "p", "answer": NaN}', "field 'answer' is not finite"),
    ('{"problem": "p", "answer": Infinity}', "field 'answer' is not finite"),
    ('{"problem": "p", "answer": -Infinity}', "field 'answer' is not finite"),
    ({"problem": "p", "answer": ""}, "field 'answer' is empty"),
    ({"problem": "p", "answer": [1, 2]}, "field 'answer' is a list"),
    ({"problem": 5, "answer": "1"}, "field 'problem' is not a string"),
    ({"problem": True, "answer": "1"}, "field 'problem' is a boolean"),
    ([1, 2], "not a JSON object"),
    ("{not json", "malformed JSON"),
    ("[" * 100_000 + "]" * 100_000, "JSON nested deeper than 64"),
    ('{"problem": "p", "answer": ' + "[" * 5000 + "]" * 5000 + "}", "JSON nested deeper than 64"),
    ({"problem": "1 + 1?", "answer": "3"}, "same problem as line 1 with another answer"),
])
def test_bad_row_names_file_and_row(tmp_path, row, why):
    path = write(tmp_path / "data.jsonl", GOOD + [row])
    with pytest.raises(ValueError) as e:
        MathTask(path)
    msg = str(e.value)
    assert msg.startswith(f"task.path = {path!r} is invalid; allowed: ")
    assert f"(line 3: {why}" in msg and "\n" not in msg


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    path = write(tmp_path / "d.jsonl", GOOD + [{"problem": "[" * 200 + "{", "answer": "]" * 100}])
    assert read_rows(path)[2]["problem"] == "[" * 200 + "{"


def test_non_utf8_and_directory(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD[0]).encode() + b'\n{"problem": "caf\xe9", "answer": "1"}\n')
    with pytest.raises(ValueError, match=r"latin1\.jsonl' is invalid.*\(line 2: byte 16 is not UTF-8\)"):
        MathTask(path)
    with pytest.raises(ValueError, match=r"task\.path = .* is invalid; allowed: an existing .*\(a directory\)"):
        MathTask(tmp_path)
    with pytest.raises(ValueError, match=r"task\.path = .* is invalid; allowed: .*\(no such file\)"):
        MathTask(tmp_path / "missing.jsonl")


def test_duplicates_are_dropped_and_counted(tmp_path):
    path = write(tmp_path / "dup.jsonl", GOOD + [GOOD[0], GOOD[1], GOOD[0], {"problem": "3?", "answer": 3.5}])
    with pytest.warns(UserWarning, match=r"dropped 3 duplicate row\(s\) \(lines 3, 4, 5\); 3 distinct rows kept"):
        rows = read_rows(path)
    assert rows == [{"problem": "1 + 1?", "answer": "2"}, {"problem": "2 + 2?", "answer": "4"},
                    {"problem": "3?", "answer": "3.5"}]


def test_numbers_and_unicode_are_kept(tmp_path):
    path = write(tmp_path / "ok.jsonl", [{"problem": "π ≈ ?", "answer": 3.14}, {"problem": "x", "answer": -7}, ""])
    assert read_rows(path) == [{"problem": "π ≈ ?", "answer": "3.14"}, {"problem": "x", "answer": "-7"}]


def test_parquet_rows_are_checked_too(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": [1.0, float("nan")]}), path)
    with pytest.raises(ValueError, match=r"m\.parquet' is invalid.*\(row 2: field 'answer' is not finite"):
        MathTask(path)
