"""Every `llm` command the READMEs show parses and validates as written: a renamed or misspelt flag, or a
value outside its allowed set, fails here instead of on a user's GPU. (The commands are not run: they
need GPUs, downloads or earlier runs' outputs.)"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", ROOT / "llm" / "README.md"]


def commands() -> list[tuple[str, str, list[str]]]:
    """(readme, tool, argv) for each `python -m llm.<tool>` / `torchrun ... -m llm.<tool>` line of a
    ```bash block, continuation lines joined."""
    out = []
    for path in READMES:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if "-m" in words and words[words.index("-m") + 1].startswith("llm."):
                    i = words.index("-m")
                    out.append((path.name, words[i + 1].split(".", 1)[1], words[i + 2:]))
    return out


def config_class(tool: str):
    from llm.bench import BenchConfig
    from llm.evaluate import EvalConfig
    from llm.sft import SFTConfig
    from llm.train import TrainConfig
    return {"train": TrainConfig, "sft": SFTConfig, "evaluate": EvalConfig, "bench": BenchConfig}.get(tool)


def portable(argv: list[str]) -> list[str]:
    """argv without `--config FILE` (an earlier run's file) and with a model that is an earlier run's
    output directory replaced by the tiny preset (the path exists only after that run)."""
    out, skip = [], False
    for i, w in enumerate(argv):
        if skip:
            skip = False
            continue
        if w == "--config":
            skip = True
            continue
        out.append("tiny" if i and argv[i - 1] == "--model.name" and w.startswith("runs/") else w)
    return out


CASES = commands()


def test_the_readmes_show_llm_commands():
    tools = {tool for _, tool, _ in CASES}
    assert {"train", "sft", "evaluate", "gpu_check"} <= tools
    assert any("fsdp2" in argv for _, _, argv in CASES)  # the GPU commands are among them


@pytest.mark.parametrize("readme,tool,argv", CASES, ids=[f"{r}:{t}:{i}" for i, (r, t, _) in enumerate(CASES)])
def test_readme_command_parses(readme, tool, argv):
    if tool == "gpu_check":
        from llm.gpu_check import parse
        parse(argv)
        return
    cls = config_class(tool)
    assert cls is not None, f"{readme}: unknown llm tool {tool!r}"
    from llm import config as C
    C.parse(cls, portable(argv))  # validates: a bad flag or value raises / exits
