"""Math data: column mapping, answer formats (GSM8K '####', boxed), an eval file, the num_prompts
cap, and Hugging Face `datasets` sources (a local save_to_disk directory; never the network)."""

import json
import sys
from pathlib import Path

import pytest

from llm import config as C
from llm.tasks import MathTask, make_task, read_rows
from llm.tasks.data import extract_answer, parse_hf

DATA = Path(__file__).resolve().parents[1] / "data"
GSM = str(DATA / "gsm8k_tiny.jsonl")
GSM_TEST = str(DATA / "gsm8k_tiny_test.jsonl")
GSM_COLS = dict(prompt_column="question", answer_format="gsm8k")


def write(path, rows) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def task_config(**kw) -> C.TaskConfig:
    tcfg = C.TaskConfig(name="math", **kw)
    tcfg.validate()
    return tcfg


def test_gsm8k_sample_reads_with_column_mapping():
    rows = read_rows(GSM, **GSM_COLS)
    assert [r["answer"] for r in rows] == ["16", "432", "1250", "14", "35", "40", "68", "28"]
    assert rows[0]["problem"].startswith("Mia has 12 apples.")
    task = MathTask(GSM, **GSM_COLS)
    p = task.prompts("all")[2]
    assert p.text.startswith("A train travels 250 km") and p.text.endswith("within \\boxed{}.\n")
    assert task.check(p, "so \\boxed{1250}").reward == 1.0
    assert task.check(p, "so \\boxed{1,250}").reward == 1.0  # math-verify reads the comma form too
    assert task.check(p, "so \\boxed{125}").status == "wrong"


@pytest.mark.parametrize("value, fmt, want", [
    ("steps\n#### 1,234", "gsm8k", "1234"), ("#### -7 ", "gsm8k", "-7"), ("a #### 1 #### 2", "gsm8k", "2"),
    ("so $\\boxed{\\frac{1}{2}}$.", "boxed", "\\frac{1}{2}"), ("\\boxed{1} then \\boxed{x^{2}}", "boxed", "x^{2}"),
    (3.5, "plain", "3.5"), ("#### 5", "plain", "#### 5"),
])
def test_answer_formats(value, fmt, want):
    assert extract_answer(value, fmt) == (want, "")


@pytest.mark.parametrize("answer, fmt, why", [
    ("no marker 42", "gsm8k", "field 'answer' has no '####' (task.answer_format = 'gsm8k')"),
    (42, "gsm8k", "field 'answer' has no '####'"),
    ("steps #### , ", "gsm8k", "field 'answer' is empty after '####'"),
    ("the answer is 4", "boxed", "field 'answer' has no non-empty \\boxed{...}"),
    ("\\boxed{ }", "boxed", "field 'answer' has no non-empty \\boxed{...}"),
])
def test_answer_format_failures_name_file_and_row(tmp_path, answer, fmt, why):
    path = write(tmp_path / "d.jsonl", [{"problem": "a", "answer": "#### 1 \\boxed{1}"},
                                        {"problem": "b", "answer": answer}])
    with pytest.raises(ValueError) as e:
        read_rows(path, answer_format=fmt)
    assert str(e.value).startswith(f"task.path = {path!r} is invalid; allowed: ")
    assert f"(line 2: {why}" in str(e.value) and "\n" not in str(e.value)


def test_unmapped_columns_say_which_fields_the_row_has():
    with pytest.raises(ValueError, match=r"\(line 1: field 'problem' missing or null \(row has 'question', "
                                         r"'answer'\)\)$"):
        MathTask(GSM)
    with pytest.raises(ValueError, match=r"rows with a non-empty string 'question' .* finite number 'sol' "
                                         r"\(line 1: field 'sol' missing"):
        MathTask(GSM, prompt_column="question", answer_column="sol")


def test_parquet_with_mapped_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"q": ["x?", "y?"], "solution": ["so \\boxed{3}", "hence \\boxed{\\pi}"]}), path)
    assert read_rows(path, "q", "solution", "boxed") == [{"problem": "x?", "answer": "3"},
                                                         {"problem": "y?", "answer": "\\pi"}]


def test_eval_file_is_the_test_split(tmp_path):
    lines = Path(GSM_TEST).read_text().splitlines()[:2] + Path(GSM).read_text().splitlines()[:1]
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + "\n")  # its third row is in the training file
    with pytest.warns(UserWarning, match=r"1 of its 3 problems are also in task.path"):
        task = MathTask(GSM, eval_path=str(tmp_path / "eval.jsonl"), **GSM_COLS)
    train, test = task.prompts("train"), task.prompts("test")
    assert [p.id for p in train] == list(range(8)) and [p.id for p in test] == [8, 9, 10]
    assert [p.answer for p in test] == ["315", "7", "16"]
    assert task.prompts("all") == train + test


def test_without_eval_file_the_fraction_split_is_kept():
    task = make_task(task_config(path=GSM, test_fraction=0.25, **GSM_COLS))
    train, test = task.prompts("train"), task.prompts("test")
    assert len(train) == 6 and len(test) == 2 and not {p.id for p in train} & {p.id for p in test}


def test_num_prompts_caps_training_prompts_only():
    """task.num_prompts is honoured for math (it was ignored): at most n training prompts, chosen
    by a seeded permutation (a larger cap keeps the smaller cap's choice), the eval split untouched."""
    def split(n, seed=0):
        task = make_task(task_config(path=GSM, eval_path=GSM_TEST, num_prompts=n, seed=seed, **GSM_COLS))
        return [p.id for p in task.prompts("train")], [p.id for p in task.prompts("test")]
    full, test = split(0)
    assert full == list(range(8)) and test == [8, 9, 10]
    three, four = split(3), split(4)
    assert len(three[0]) == 3 and three[1] == test and set(three[0]) < set(four[0]) <= set(full)
    assert split(3) == three  # deterministic
    assert split(3, seed=1) != three or split(3, seed=2) != three  # the seed chooses
    assert split(100)[0] == full


def test_config_checks_the_new_fields():
    for kw, field in [(dict(answer_format="csv"), "task.answer_format"),
                      (dict(system_prompt="Be brief."), "task.system_prompt"),
                      (dict(answer_column="problem"), "task.answer_column"),
                      (dict(prompt_column=" "), "task.prompt_column"),
                      (dict(num_prompts=1), "task.num_prompts"),
                      (dict(eval_path="missing.jsonl"), "task.eval_path"),
                      (dict(path="hf:"), "task.path"), (dict(path="hf:org/name@"), "task.path")]:
        with pytest.raises(ValueError, match=rf"^{field} = .* is invalid; allowed: "):
            task_config(**({"path": GSM} | kw))
    with pytest.raises(ValueError, match=r"^task.eval_path = .* allowed: empty unless task.name = 'math'"):
        C.TaskConfig(name="countdown", eval_path=GSM_TEST).validate()
    task_config(path="hf:openai/gsm8k:main@train", eval_path="hf:openai/gsm8k:main@test")  # no download
    assert C.TaskConfig().num_prompts == 0 and len(make_task(C.TaskConfig()).prompts("all")) == 64


@pytest.mark.parametrize("spec, want", [
    ("hf:openai/gsm8k", ("openai/gsm8k", None, None)),
    ("hf:openai/gsm8k:main@test", ("openai/gsm8k", "main", "test")),
    ("hf:gsm8k@train", ("gsm8k", None, "train")),
    ("hf:/tmp/saved/ds@test", ("/tmp/saved/ds", None, "test")),
])
def test_parse_hf(spec, want):
    assert parse_hf(spec) == want


@pytest.fixture
def saved_dataset(tmp_path):
    """A DatasetDict (train 8 rows, test 3 rows) written with save_to_disk, and a plain Dataset."""
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in Path(GSM).read_text().splitlines()]
    test = [json.loads(line) for line in Path(GSM_TEST).read_text().splitlines()]
    datasets.disable_progress_bars()
    dd = datasets.DatasetDict(train=datasets.Dataset.from_list(rows), test=datasets.Dataset.from_list(test))
    dd.save_to_disk(str(tmp_path / "dd"))
    bad = datasets.Dataset.from_list(rows[:2] + [{"question": "q", "answer": None}])
    bad.save_to_disk(str(tmp_path / "bad"))
    return tmp_path


def test_hf_saved_dataset_loads_like_the_file(saved_dataset):
    d = saved_dataset / "dd"
    task = make_task(task_config(path=f"hf:{d}", eval_path=f"hf:{d}@test", **GSM_COLS))
    ref = MathTask(GSM, eval_path=GSM_TEST, **GSM_COLS)
    assert task.prompts("all") == ref.prompts("all")
    assert [p.answer for p in task.prompts("all")] == [p.answer for p in ref.prompts("all")]


def test_hf_errors_are_one_line(saved_dataset, monkeypatch):
    d = saved_dataset / "dd"
    with pytest.raises(ValueError, match=r"^task.eval_path = .* allowed: a loadable data set \(no split "
                                         r"'valid'; splits: train, test\)$"):
        MathTask(f"hf:{d}", eval_path=f"hf:{d}@valid", **GSM_COLS)
    with pytest.raises(ValueError, match=r"^task.path = .*bad' is invalid; allowed: .*\(row 3: field "
                                         r"'answer' missing or null\)$"):
        MathTask(f"hf:{saved_dataset / 'bad'}", **GSM_COLS)
    with pytest.raises(ValueError, match=r"a saved Dataset has no splits; drop '@train'"):
        MathTask(f"hf:{saved_dataset / 'bad'}@train", **GSM_COLS)
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with pytest.raises(ValueError) as e:
        MathTask(f"hf:{d}", **GSM_COLS)
    assert str(e.value) == (f"task.path = 'hf:{d}' is invalid; allowed: a local JSONL/parquet file, or hf:... "
                            "with the optional package datasets installed (pip install datasets)")


def test_hub_ids_go_to_load_dataset(monkeypatch):
    """A Hub id is passed to datasets.load_dataset(name, config, split=...) (replaced here: no network)."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list([{"question": f"{split} {i}?", "answer": f"#### {i}"} for i in range(4)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = make_task(task_config(path="hf:openai/gsm8k:main", eval_path="hf:openai/gsm8k:main@test",
                                 num_prompts=2, **GSM_COLS))
    assert calls == [("openai/gsm8k", "main", "train"), ("openai/gsm8k", "main", "test")]
    assert len(task.prompts("train")) == 2 and [p.answer for p in task.prompts("test")] == ["0", "1", "2", "3"]
