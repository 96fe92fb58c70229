"""llm/cli.py holds the parsing half of the configs; llm.config re-exports it, either may be imported
first."""

import subprocess
import sys

from llm import cli
from llm import config as C


def test_config_reexports_the_parsing_functions():
    for name in ("parse", "run_cli", "save", "from_dict", "to_dict", "validate", "read_toml", "field_docs",
                 "write_atomic", "to_toml", "build_parser", "_coerce", "_toml_value", "_has_nan"):
        assert getattr(C, name) is getattr(cli, name)
    assert cli._check is C._check


def test_cli_imports_first():
    """llm.config is imported by llm.cli's last line; the names it re-exports already exist then."""
    r = subprocess.run([sys.executable, "-c", "import llm.cli; from llm import config as C; "
                        "print(C.parse is llm.cli.parse, C._check is llm.cli._check, C.OptimConfig().lr)"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "1e-06"]
