"""runs.py: the cache recomputes exactly when the config or code changes; writes are atomic."""

import json

import numpy as np

from collapse_lab import runs


def test_cache_hit_and_miss(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "CACHE_DIR", tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(3.0)}

    a = runs.cached("demo", {"n": 3}, compute)
    b = runs.cached("demo", {"n": 3}, compute)
    assert len(calls) == 1 and np.array_equal(a["x"], b["x"])
    runs.cached("demo", {"n": 4}, compute)  # another config: recompute
    assert len(calls) == 2
    script = tmp_path / "study.py"
    script.write_text("A = 1\n")
    runs.cached("demo", {"n": 3}, compute, script)
    script.write_text("A = 2\n")  # the study changed: recompute
    runs.cached("demo", {"n": 3}, compute, script)
    assert len(calls) == 4
    runs.cached("demo", {"n": 3}, compute, refresh=True)
    assert len(calls) == 5
    assert not list(tmp_path.glob("*.tmp*"))


def test_provenance_and_json(tmp_path):
    prov = runs.provenance(seed=3, config={"a": np.float64(1.5), "b": np.arange(2)})
    assert prov["seed"] == 3 and prov["config"] == {"a": 1.5, "b": [0, 1]}
    assert {"git_commit", "packages", "code_version", "created"} <= set(prov)
    runs.write_json(tmp_path / "x.json", {"prov": prov, "nan": float("nan"), "inf": np.float64("-inf")})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text)["prov"]["seed"] == 3
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: not computable -> null
    assert json.loads(text)["nan"] is None and json.loads(text)["inf"] is None
