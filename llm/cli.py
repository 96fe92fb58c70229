"""Command-line and TOML plumbing of the `llm` configs (llm/config.py holds the section dataclasses).

`parse(cls, argv)` resolves a top-level config from `--section.field value` flags (they win), a TOML
file given with `--config`, and the field defaults; `validate` checks every section once (a ValueError
names the field); `save` writes the resolved config as TOML, atomically; `run_cli` turns bad input
into one line on stderr and exit status 2. llm/config.py re-exports every name, so `C.parse`,
`C.run_cli`, `C.save` keep working.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import os
import re
import sys
import textwrap
import typing
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

def field_docs(cls) -> dict[str, str]:
    """Attribute docstrings of a dataclass: {field: text}, read from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body, docs = tree.body[0].body, {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs


def _sections(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _has_nan(v) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return isinstance(v, (list, tuple)) and any(_has_nan(x) for x in v)


def _coerce(value, typ, name: str):
    """Convert a flag string or TOML value to the field type, naming the field on failure.
    Floats must be finite (inf / nan are rejected for every float field)."""
    if isinstance(value, str) and typ is not str:
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            if typ is bool and value.lower() in ("true", "false"):
                value = value.lower() == "true"
        except RecursionError:
            _check(False, name, value[:40] + "...", "a TOML value nested less deeply")
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    _check(ok, name, value, f"a value of type {typ.__name__}")
    _check(typ is not float or math.isfinite(value), name, value, "a finite number")
    return value


def from_dict(cls, data: dict):
    """Build the top-level config `cls` from a nested dict (TOML layout), rejecting unknown keys."""
    secs, kwargs = _sections(cls), {}
    for key, sub in data.items():
        _check(key in secs, key, "...", ", ".join(secs))
        scls = secs[key]
        shints = typing.get_type_hints(scls)
        _check(isinstance(sub, dict), key, sub, f"a [{key}] table with fields {', '.join(shints)}")
        for k in sub:
            _check(k in shints, f"{key}.{k}", sub[k], ", ".join(shints))
        kwargs[key] = scls(**{k: _coerce(v, shints[k], f"{key}.{k}") for k, v in sub.items()})
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def validate(cfg) -> None:
    """Validate every section; the error names the field (`section.field`). Every float field must
    be finite, however the config was built."""
    for f in dataclasses.fields(cfg):
        sec = getattr(cfg, f.name)
        for g in dataclasses.fields(sec):
            v = getattr(sec, g.name)
            _check(not isinstance(v, float) or math.isfinite(v), f"{f.name}.{g.name}", v, "a finite number")
        sec.validate(f.name)


def read_toml(path, name: str = "config") -> dict:
    """Parse the TOML file `path`; a missing, unreadable, non-UTF-8 or malformed file is a
    ValueError naming `name` and the file."""
    allowed = "a readable UTF-8 TOML file"
    p = Path(path)
    _check(p.is_file(), name, str(path), allowed + (" (this is a directory)" if p.is_dir() else
                                                    " (no such file)"))
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} (byte {e.start} is "
                         "not UTF-8)") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} ({e})") from None
    except RecursionError:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} (nested too deeply)") from None
    except OSError as e:
        raise ValueError(f"{name} = {str(path)!r} is invalid; allowed: {allowed} ({e.strerror})") from None


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error raised as one ValueError line instead of usage text + exit."""

    argv: list | None = None

    def error(self, message):
        argv = sys.argv[1:] if self.argv is None else self.argv
        raise ValueError(f"command line = {' '.join(argv)!r} is invalid; allowed: the flags of --help "
                         f"({message})")


def _choices_text(section, name: str) -> str:
    """' Choices: a (what a does); b; ...' from the section's `choices(field)` registry hook, or ''."""
    hook = getattr(section, "choices", None)
    items = hook(name) if callable(hook) else {}
    if not items:
        return ""
    return " Choices: " + " | ".join(f"{k}: {v.rstrip('.')}" if v else k for k, v in items.items()) + "."


def build_parser(cls, description: str = "") -> argparse.ArgumentParser:
    """The argparse parser of command config `cls`; each flag's help ends with the default that
    the command uses (`cls()`'s value, which may differ from the section class default)."""
    ap = _Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="TOML file with [section] tables")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    ap.add_argument("--debug", action="store_true",
                    help="show the full traceback of an error (also: COLLAPSE_LAB_DEBUG=1)")
    defaults = cls()
    for sec in _sections(cls):
        sdef = getattr(defaults, sec)
        docs = field_docs(type(sdef))
        g = ap.add_argument_group(sec)
        for f in dataclasses.fields(sdef):
            text = f"{docs.get(f.name, '')}{_choices_text(sdef, f.name)} (default: {getattr(sdef, f.name)!r})"
            g.add_argument(f"--{sec}.{f.name}", dest=f"{sec}.{f.name}", default=None,
                           help=text.replace("%", "%%"))  # argparse %-formats help strings
    return ap


def parse(cls, argv=None, description: str = ""):
    """Resolve `cls` from `--config FILE` and `--section.field value` flags (flags win); validate."""
    ap = build_parser(cls, description)
    ap.argv = None if argv is None else list(argv)
    args = vars(ap.parse_args(argv))
    args.pop("debug")
    data: dict = {}
    config_path = args.pop("config")
    if config_path:
        data = read_toml(config_path)
    if args.pop("resume"):
        run = data.setdefault("run", {})
        _check(isinstance(run, dict), "run", run, "a [run] table")
        run["resume"] = True
    for key, value in args.items():
        if value is not None:
            sec, name = key.split(".", 1)
            sub = data.setdefault(sec, {})
            _check(isinstance(sub, dict), sec, sub, f"a [{sec}] table")
            sub[name] = value
    cfg = from_dict(cls, data)
    validate(cfg)
    return cfg


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_str(s: str) -> str:
    """A TOML basic string; control characters escaped; a lone surrogate cannot be written."""
    out = []
    for ch in s:
        o = ord(ch)
        _check(not 0xD800 <= o <= 0xDFFF, "string", s, "text without lone surrogates")
        out.append("\\\\" if ch == "\\" else '\\"' if ch == '"' else
                   f"\\u{o:04x}" if o < 0x20 or o == 0x7F else ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    """TOML text of v; `tomllib.loads(f"x = {_toml_value(v)}")["x"] == v` for every bool, int,
    finite or non-finite float (inf, nan), str, list and dict (TOML has no null: None is an error)."""
    if isinstance(v, dict):
        keys = [k if _BARE_KEY.fullmatch(str(k)) else _toml_str(str(k)) for k in v]
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in zip(keys, v.values())) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return _toml_str(v)
    raise ValueError(f"config value = {v!r} is invalid; allowed: bool, int, float, str, list, table")


def to_toml(cfg) -> str:
    """The resolved config as TOML text (one [section] table per section)."""
    lines = []
    for sec, values in to_dict(cfg).items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def write_atomic(path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (collapse_lab.runs.atomic_write: temp file, fsync,
    os.replace)."""
    from collapse_lab.runs import atomic_write

    atomic_write(path, text.encode("utf-8"))


def save(cfg, out_dir) -> Path:
    """Write the resolved config as `out_dir/config.toml` (loadable with --config), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.toml"
    write_atomic(path, to_toml(cfg))
    return path


def refuse_unused(cfg, fields: tuple[str, ...], tool: str) -> None:
    """ValueError naming the first of `fields` ('section.field') that `cfg` sets away from its command's
    default: the shared sections carry fields that only some commands use (llm.train's LoRA, autocast,
    evaluation, wandb, ...), and a value a command would ignore must not pass silently."""
    default = type(cfg)()
    for name in fields:
        sec, key = name.split(".")
        now, dflt = getattr(getattr(cfg, sec), key), getattr(getattr(default, sec), key)
        _check(now == dflt, name, now, f"{dflt!r}: {tool} does not use it (llm.train does)")


def debug_requested(argv) -> bool:
    """True with `--debug` among the arguments or COLLAPSE_LAB_DEBUG set to anything but '' / '0'."""
    return "--debug" in argv or os.environ.get("COLLAPSE_LAB_DEBUG", "") not in ("", "0")


def run_cli(main, argv=None):
    """Run a command's `main(argv)` for `if __name__ == "__main__"`: bad input (a ValueError, e.g. a
    failed validation, or an OSError such as an unreadable file) prints one line
    `error: <field> = <value> is invalid; allowed: ...` to stderr and exits with status 2; with
    `--debug` or COLLAPSE_LAB_DEBUG=1 the exception propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except (ValueError, OSError) as e:
        if debug_requested(argv):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


# At the bottom: llm.config imports this module's names at its own end, so either module may be
# imported first (the functions above look _check up when called).
from .config import _check  # noqa: E402
