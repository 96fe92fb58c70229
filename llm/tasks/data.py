"""Rows of a math data set: local JSONL / parquet or a Hugging Face `datasets` source, validated.

`read_rows(path, prompt_column, answer_column, answer_format)` returns rows {"problem", "answer"}:
`problem` is the prompt column's string, or (a conversational row) its list of {role, content}
messages; `answer` the reference answer string, taken from the answer column by `answer_format`:

- plain: the value itself (a number is written as str(number));
- gsm8k: the text after the last `####`, commas removed ("#### 1,234" -> "1234");
- boxed: the content of the last \\boxed{...} (a MATH-style worked solution).

`path` is a local file, or `hf:NAME[:CONFIG][@SPLIT]` (split "train" when omitted): NAME a directory
written by `datasets`' `save_to_disk` (read with `load_from_disk`) or a Hub data set id (read with
`load_dataset`; `datasets` is imported only then, a one-line error when it is missing). Every bad row
is a ValueError naming the field (task.path / task.eval_path), the file and the row.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

ANSWER_FORMATS = ("plain", "gsm8k", "boxed")
HF_PREFIX = "hf:"
MAX_NESTING = 64  # JSON nesting of a data row


def _depth(text: str) -> int:
    """Deepest bracket nesting of `text` ({, (, [ count alike)."""
    depth = top = 0
    for ch in text:
        depth += 1 if ch in "{([" else -1 if ch in "})]" else 0
        top = max(top, depth)
    return top


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, braces balanced; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def extract_answer(value, answer_format: str) -> tuple[str | None, str]:
    """(reference answer, why it is missing) of an answer-column value under `answer_format`."""
    if answer_format == "gsm8k":
        if not isinstance(value, str) or "####" not in value:
            return None, "has no '####' (task.answer_format = 'gsm8k')"
        text = "".join(value.rsplit("####", 1)[1].replace(",", "").split())
        return (text, "") if text else (None, "is empty after '####' (task.answer_format = 'gsm8k')")
    if answer_format == "boxed":
        text = last_boxed(str(value)) or ""
        return (text, "") if text else (None, "has no non-empty \\boxed{...} (task.answer_format = 'boxed')")
    if answer_format != "plain":
        raise ValueError(f"task.answer_format = {answer_format!r} is invalid; allowed: {', '.join(ANSWER_FORMATS)}")
    return str(value), ""


def parse_hf(spec: str, field: str = "task.path") -> tuple[str, str | None, str | None]:
    """(name, config, split) of 'hf:NAME[:CONFIG][@SPLIT]' (config / split None when absent)."""
    body, _, split = spec[len(HF_PREFIX):].partition("@")
    head, sep, config = body.rpartition(":") if ":" in body.rsplit("/", 1)[-1] else ("", "", "")
    name = head if sep else body
    if not name or (sep and not config) or ("@" in spec and not split):
        raise ValueError(f"{field} = {spec!r} is invalid; allowed: a JSONL/parquet file or "
                         "hf:NAME[:CONFIG][@SPLIT] (a Hub id or a save_to_disk directory)")
    return name, config or None, split or None


def _hf_rows(spec: str, field: str) -> list:
    """The rows of 'hf:...' as dicts (load_from_disk for a local directory, else load_dataset)."""
    name, config, split = parse_hf(spec, field)
    try:
        import datasets
    except ImportError:
        raise ValueError(f"{field} = {spec!r} is invalid; allowed: a local JSONL/parquet file, or "
                         "hf:... with the optional package datasets installed (pip install datasets)") from None
    try:
        if Path(name).expanduser().is_dir():
            ds = datasets.load_from_disk(str(Path(name).expanduser()))
            if isinstance(ds, datasets.DatasetDict):
                if (split or "train") not in ds:
                    raise ValueError(f"no split {split or 'train'!r}; splits: {', '.join(ds)}")
                ds = ds[split or "train"]
            elif split:
                raise ValueError(f"a saved Dataset has no splits; drop '@{split}'")
        else:
            ds = datasets.load_dataset(name, config, split=split or "train")
    except Exception as e:  # noqa: BLE001 -- any loading failure is one line naming the field
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{field} = {spec!r} is invalid; allowed: a loadable data set ({first})") from None
    return list(ds)


def _row_error(path, field, cols, where, i, what: str) -> ValueError:
    p, a = cols
    return ValueError(f"{field} = {str(path)!r} is invalid; allowed: rows with a non-empty string {p!r} "
                      f"(or a list of role/content messages) and a non-empty string or finite number "
                      f"{a!r} ({where} {i}: {what})")


def _json_row(raise_, i: int, raw: bytes):
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise raise_(i, f"byte {e.start} is not UTF-8") from None
    if not line.strip():
        return None
    if _depth(re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)) > MAX_NESTING:
        raise raise_(i, f"JSON nested deeper than {MAX_NESTING}")
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise raise_(i, f"malformed JSON: {msg}") from None


def _field_problem(r, key: str, is_prompt: bool) -> str | None:
    """Why field `key` of row `r` is unusable (a prompt may be a list of messages), or None."""
    from ..chat import message_problem
    if not isinstance(r, dict):
        return "not a JSON object"
    v = r.get(key)
    if key not in r:
        return f"field {key!r} missing or null (row has {', '.join(map(repr, r)) or 'no fields'})"
    if v is None:
        return f"field {key!r} missing or null"
    if isinstance(v, bool):
        return f"field {key!r} is a boolean"
    if is_prompt and isinstance(v, (list, tuple)):
        why = message_problem(v)
        return f"field {key!r} is a list but not role/content messages ({why})" if why else None
    if is_prompt and not isinstance(v, str):
        return f"field {key!r} is not a string"
    if not isinstance(v, (str, int, float)):
        return f"field {key!r} is a {type(v).__name__}, not a string or number"
    if isinstance(v, float) and not math.isfinite(v):
        return f"field {key!r} is not finite ({v!r})"
    if isinstance(v, str) and not v.strip():
        return f"field {key!r} is empty"
    return None


def _raw_rows(path, field: str, raise_) -> tuple[list, str]:
    """([(row number, row)], 'line' or 'row') of a JSONL / parquet file or an hf: source."""
    if str(path).startswith(HF_PREFIX):
        return list(enumerate(_hf_rows(str(path), field), 1)), "row"
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{field} = {str(path)!r} is invalid; allowed: an existing JSONL/parquet file "
                         f"or hf:NAME[:CONFIG][@SPLIT] ({'a directory' if path.is_dir() else 'no such file'})")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("reading parquet needs pyarrow (pip install pyarrow)") from e
        return list(enumerate(pq.read_table(path).to_pylist(), 1)), "row"
    rows = []
    for i, raw in enumerate(path.read_bytes().splitlines(), 1):
        r = _json_row(lambda j, what: raise_("line", j, what), i, raw)
        if r is not None:
            rows.append((i, r))
    return rows, "line"


def prompt_key(problem) -> str:
    """A hashable key of a row's prompt (a string, or a list of messages as canonical JSON)."""
    return problem if isinstance(problem, str) else json.dumps(problem, sort_keys=True)


def read_rows(path, prompt_column: str = "problem", answer_column: str = "answer",
              answer_format: str = "plain", field: str = "task.path", messages_ok: bool = True) -> list[dict]:
    """Rows {problem, answer} of a JSONL / parquet file or hf: source (module docstring). A missing /
    unreadable file, a non-UTF-8, malformed or absurdly nested line, a row whose prompt is neither a
    non-empty string nor a list of messages, or whose answer is null, boolean, non-finite, empty, not
    a string / number or lacks what `answer_format` extracts raises ValueError naming `field`, the
    file and the row; so does a messages prompt when not `messages_ok` (naming task.chat_template).
    Exact duplicate rows are dropped with a warning giving their count; the same prompt with two
    different answers is an error naming both rows."""
    cols = (prompt_column, answer_column)

    def raise_(where, i, what):
        return _row_error(path, field, cols, where, i, what)

    rows, where = _raw_rows(path, field, raise_)
    out, seen, dups = [], {}, []
    for i, r in rows:
        for key, is_prompt in ((prompt_column, True), (answer_column, False)):
            why = _field_problem(r, key, is_prompt)
            if why:
                raise raise_(where, i, why)
        problem = r[prompt_column]
        if not isinstance(problem, str) and not messages_ok:
            raise ValueError(f"task.chat_template = False is invalid; allowed: true when {field} gives "
                             f"prompts as role/content messages ({str(path)!r} {where} {i})")
        answer, why = extract_answer(r[answer_column], answer_format)
        if answer is None:
            raise raise_(where, i, f"field {answer_column!r} {why}")
        row = {"problem": problem if isinstance(problem, str) else [dict(m) for m in problem], "answer": answer}
        key = prompt_key(problem)
        if key in seen:
            j, prev = seen[key]
            if prev != answer:
                raise raise_(where, i, f"same problem as {where} {j} with another answer")
            dups.append(i)
            continue
        seen[key] = (i, answer)
        out.append(row)
    if dups:
        warnings.warn(f"{field} = {str(path)!r}: dropped {len(dups)} duplicate row(s) ({where}s "
                      f"{', '.join(map(str, dups[:10]))}{', ...' if len(dups) > 10 else ''}); "
                      f"{len(out)} distinct rows kept", stacklevel=2)
    return out
