"""llm.evaluate writes its pass@k curve as a PNG figure beside eval.json, atomically
(collapse_lab.runs.atomic_write): a failure while drawing leaves the previous figure whole."""

import json

import matplotlib.figure
import matplotlib.image
import pytest

from llm import evaluate as E

ARGS = ["--model.name", "tiny", "--model.hidden_size", "64", "--task.difficulty", "2", "--task.num_prompts", "16",
        "--rollout.max_new_tokens", "4", "--eval.n", "4", "--eval.max_prompts", "3", "--run.threads", "1"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_figure_beside_the_json(tmp_path, capsys):
    out = tmp_path / "ev"
    result = E.main(ARGS + ["--run.out_dir", str(out), "--eval.ks", "[1, 3]"])
    saved = json.loads((out / "eval.json").read_text())
    assert saved["pass_at_k"] == result["pass_at_k"] and list(saved["pass_at_k"]) == ["1", "3"]
    png = (out / "eval.png").read_bytes()
    assert png.startswith(PNG)
    img = matplotlib.image.imread(out / "eval.png")
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0  # a drawn figure, not a blank
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "eval.json", "eval.png"]  # no temp files
    assert json.loads(capsys.readouterr().out)["pass_at_k"] == result["pass_at_k"]


def test_failed_drawing_keeps_the_previous_figure(tmp_path, monkeypatch):
    path = tmp_path / "eval.png"
    result = {"pass_at_k": {"1": 0.25, "2": 0.5, "4": 0.75}, "distinct_correct": 1.5}
    E.plot(result, path)
    before = path.read_bytes()
    assert before.startswith(PNG)

    def broken(self, fname, **kw):
        fname.write(PNG + b"half a figure")
        raise OSError("disk full")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        E.plot(result, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["eval.png"]


def test_bad_ks_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"^eval.ks = \[8\] is invalid; allowed: a list of integers in 1..eval.n = 4"):
        E.main(ARGS + ["--run.out_dir", str(tmp_path), "--eval.ks", "[8]"])
