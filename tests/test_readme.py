"""The README's Python examples run as written (in order, in one namespace, as a reader pastes them)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    """The ```python blocks of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    import collapse_lab.runs

    monkeypatch.setattr(collapse_lab.runs, "CACHE_DIR", tmp_path)  # the sweep example caches its runs
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    for i, code in enumerate(blocks):
        if "simulate(" in code:  # the simulator tour runs 200 steps x 8 replicates: shrink it
            code = code.replace("steps=200", "steps=5").replace("replicates=8", "replicates=2")
        exec(compile(code, f"README.md python block {i}", "exec"), namespace)
