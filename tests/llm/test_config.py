"""Config: TOML + flags, precedence, validation naming the field, saved config reloads."""

import pytest

from llm import config as C
from llm.train import TrainConfig


def test_flags_and_toml(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[rollout]\ngroup_size = 6\ntemperature = 0.7\n[recipe]\nname = "ips_grpo"\n'
                    'overrides = {ips_eps = 0.02}\n[run]\nsteps = 5\n')
    cfg = C.parse(TrainConfig, ["--config", str(toml), "--rollout.group_size", "3", "--optim.lr=0.01",
                                "--run.progress", "false"])
    assert cfg.rollout.group_size == 3  # the flag wins over the file
    assert cfg.rollout.temperature == 0.7 and cfg.run.steps == 5 and cfg.optim.lr == 0.01
    assert cfg.recipe.overrides == {"ips_eps": 0.02} and cfg.run.progress is False
    assert cfg.recipe.build().shapers[0].eps == 0.02
    saved = C.save(cfg, tmp_path / "out")
    again = C.parse(TrainConfig, ["--config", str(saved)])
    assert again == cfg


@pytest.mark.parametrize("argv, field", [
    (["--rollout.group_size", "0"], "rollout.group_size"),
    (["--rollout.top_p", "1.5"], "rollout.top_p"),
    (["--recipe.name", "nope"], "recipe.name"),
    (["--recipe.overrides", "{nonsense = 1}"], "recipe.overrides"),
    (["--optim.optimizer", "lion"], "optim.optimizer"),
    (["--task.name", "math"], "task.path"),
    (["--optim.lr", "abc"], "optim.lr"),
    (["--model.dtype", "int8"], "model.dtype"),
])
def test_invalid_values_name_the_field(argv, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        C.parse(TrainConfig, argv)


def test_unknown_keys(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("[rollout]\ngroupsize = 4\n")
    with pytest.raises(ValueError, match=r"rollout\.groupsize"):
        C.parse(TrainConfig, ["--config", str(toml)])


def test_every_field_is_documented():
    for sec in (C.ModelConfig, C.TaskConfig, C.RolloutConfig, C.RecipeConfig, C.OptimConfig, C.RunConfig):
        docs = C.field_docs(sec)
        missing = [f for f in sec.__dataclass_fields__ if not docs.get(f)]
        assert not missing, f"{sec.__name__} fields without a docstring: {missing}"


# ------------------------------------------------------------- TOML round trip, finite floats -------
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

SCALARS = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(st.characters(exclude_categories=("Cs",)), max_size=30))
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=4)),
                      max_leaves=12)


def same(a, b) -> bool:
    """Equality with nan == nan."""
    if isinstance(a, float) and isinstance(b, float) and a != a:
        return b != b
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(deadline=None, max_examples=200)
@given(v=VALUES)
@example(v={"0\n": False})  # a key that a `$`-anchored bare-key regex took for bare
@example(v={"a b": [1.5, float("inf"), float("nan")], "ü": "q\"\\\x7f\x00", "": -2**63})
def test_toml_value_round_trips_anything(v):
    """Any bool / int / float (inf and nan included) / str / list / table: written as TOML (never the
    JSON tokens Infinity or NaN), read back identical."""
    text = f"x = {C._toml_value(v)}"
    assert same(tomllib.loads(text)["x"], v), text


@settings(deadline=None, max_examples=15)
@given(out_dir=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40),
       lr=st.floats(1e-300, 1e300), temperature=st.floats(1e-2, 1e2), seed=st.integers(0, 2**62))
def test_saved_config_round_trips(tmp_path_factory, out_dir, lr, temperature, seed):
    cfg = TrainConfig()
    cfg.run.out_dir, cfg.optim.lr, cfg.rollout.temperature, cfg.run.seed = out_dir, lr, temperature, seed
    path = C.save(cfg, tmp_path_factory.mktemp("cfg"))
    assert C.parse(TrainConfig, ["--config", str(path)]) == cfg


def test_lone_surrogate_cannot_be_saved_silently():
    with pytest.raises(ValueError, match="string"):
        C._toml_value("a\ud800b")


@pytest.mark.parametrize("section, field, value", [
    ("optim", "lr", float("inf")), ("optim", "lr", float("nan")), ("rollout", "temperature", float("inf")),
    ("task", "timeout_s", float("inf")), ("task", "test_fraction", float("nan")), ("optim", "grad_clip", float("inf")),
])
def test_non_finite_floats_are_rejected_however_the_config_is_built(section, field, value):
    with pytest.raises(ValueError, match=rf"^{section}\.{field} = {value!r} is invalid; allowed: a finite number"):
        C.from_dict(TrainConfig, {section: {field: value}})
    cfg = TrainConfig()
    setattr(getattr(cfg, section), field, value)  # built in code, not parsed: validate() still catches it
    with pytest.raises(ValueError, match=rf"^{section}\.{field} = {value!r} is invalid; allowed: a finite number"):
        C.validate(cfg)


def test_section_that_is_not_a_table(tmp_path):
    for text, name, flags in [("run = 5\n", "run", ["--resume"]), ("run = 5\n", "run", ["--run.steps", "3"]),
                              ("run = 5\n", "run", []), ('optim = "adamw"\n', "optim", []),
                              ("[run]\nresume = 3\n", "run.resume", [])]:
        (tmp_path / "c.toml").write_text(text)
        with pytest.raises(ValueError, match=rf"^{name} = .* is invalid; allowed: "):
            C.parse(TrainConfig, ["--config", str(tmp_path / "c.toml")] + flags)


def test_absurdly_nested_config_and_flag(tmp_path):
    (tmp_path / "deep.toml").write_text("[recipe]\noverrides = {x = " + "[" * 50_000 + "]" * 50_000 + "}\n")
    with pytest.raises(ValueError, match=r"^config = .* is invalid; allowed: .*\(nested too deeply\)"):
        C.parse(TrainConfig, ["--config", str(tmp_path / "deep.toml")])
    with pytest.raises(ValueError, match=r"^recipe\.overrides = .* is invalid; allowed: a TOML value nested less"):
        C.parse(TrainConfig, ["--recipe.overrides", "{x = " + "[" * 50_000 + "]" * 50_000 + "}"])


def test_model_name_and_memory_preset(tmp_path):
    for name in ("tiny", "small", "bandit", "Qwen/Qwen2.5-0.5B-Instruct", str(tmp_path)):
        C.check_model_name(name)  # presets, a Hub id (not contacted here), an existing directory
    for name in ("tinyy", "./model", "~/model", "runs/sft/model", str(tmp_path / "missing"), "a b/c"):
        with pytest.raises(ValueError, match=r"^model\.name = .* is invalid; allowed: tiny, small, bandit"):
            C.check_model_name(name)
    (tmp_path / "f.bin").write_text("x")
    with pytest.raises(ValueError, match=r"this is a file, not a directory"):
        C.check_model_name(str(tmp_path / "f.bin"))
    with pytest.raises(ValueError, match=r"^model\.memory_preset = 'huge' is invalid; allowed: tiny, small$"):
        C.parse(TrainConfig, ["--model.memory_preset", "huge"])


def test_memory_preset_error_names_its_field():
    import torch

    from llm.memory import build_memory
    from llm.models import CharTokenizer
    policy = torch.nn.Linear(2, 2)  # any non-bandit policy gets a Llama preset as its memory
    with pytest.raises(ValueError, match=r"^model\.memory_preset = 'huge' is invalid"):
        build_memory(policy, CharTokenizer(), "huge")
