"""collapse-lab's RLVR trainer for real language models, driven by `collapse_lab.objective`.

Commands: `python -m llm.sft` (diverse base model for a synthetic task), `python -m llm.train` (RL
with any recipe of docs/methods.md §5; `torchrun` for DDP), `python -m llm.evaluate` (pass@k curve and
outcome diversity), `python -m llm.bench` (rollout / update throughput). Each takes `--config FILE`
(TOML) and `--section.field value` flags; `--help` lists every field with its documentation and the
command's default. Bad input exits with status 2 and one line `error: <field> = <value> is invalid;
allowed: ...` (`--debug` or COLLAPSE_LAB_DEBUG=1 for the traceback).
"""
