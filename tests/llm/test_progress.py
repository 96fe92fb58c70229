"""The progress display: a tqdm bar on a terminal; elsewhere (SLURM, CI) plain lines at the first and
last steps, every N steps and every M seconds, never a redrawn line per step."""

import io

from llm.progress import Progress, summary_line
from llm.train import train


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, total=100, every=10, interval_s=1e9, dt=1.0, clock=None):
    clock = clock or Clock()
    bar = Progress(total, 0, "rl grpo", every=every, interval_s=interval_s, stream=stream, clock=clock)
    for step in range(1, total + 1):
        clock.t += dt
        bar.update(step, {"reward": 0.5, "loss": 0.25, "other": 1.0})
    bar.close()
    return stream.getvalue()


def test_log_file_gets_a_line_every_n_steps_not_one_per_step():
    lines = _run(io.StringIO()).splitlines()
    assert [ln.split(" ")[3] for ln in lines] == ["1/100"] + [f"{s}/100" for s in range(10, 101, 10)]
    assert "\r" not in "".join(lines)
    assert lines[4] == "rl grpo: step 40/100 (40%) | 1 s/step | eta 1m00s | reward 0.5 loss 0.25"


def test_log_file_gets_a_line_every_m_seconds():
    lines = _run(io.StringIO(), total=50, every=1000, interval_s=30.0, dt=7.0).splitlines()
    # 7 s per step: steps 1 (first), then each step at least 30 s after the previous line, then 50 (last)
    assert [int(ln.split(" ")[3].split("/")[0]) for ln in lines] == [1, 6, 11, 16, 21, 26, 31, 36, 41, 46, 50]


def test_terminal_gets_a_tqdm_bar():
    out = _run(TTY(), total=20)
    assert "\r" in out and "20/20" in out and "rl grpo" in out and "step 10/20" not in out


def test_disabled_is_silent():
    s = io.StringIO()
    bar = Progress(5, 0, "x", enabled=False, stream=s)
    bar.update(1, {"reward": 1.0})
    bar.close()
    assert s.getvalue() == ""


def test_summary_line_formats_eta_and_skips_missing_keys():
    line = summary_line("rl", 10, 4000, 2.0, {"reward": 0.123456})
    assert line == "rl: step 10/4000 (0%) | 2 s/step | eta 2h13m | reward 0.123"


def test_training_log_in_a_pipe_gets_plain_lines(bandit_config, tmp_path, capsys):
    train(bandit_config(tmp_path, steps=5, run={"progress": True, "progress_every": 2}))
    err = capsys.readouterr().err
    steps = [ln.split(" ")[3] for ln in err.splitlines() if ln.startswith("rl grpo: step ")]
    assert steps == ["1/5", "2/5", "4/5", "5/5"] and "\r" not in err


def test_sft_log_in_a_pipe_gets_plain_lines(tmp_path, capsys):
    from llm import config as C
    from llm.sft import SFTConfig, sft
    cfg = C.from_dict(SFTConfig, {"model": {"name": "tiny", "hidden_size": 32}, "task": {"difficulty": 2},
                                  "sft": {"batch_size": 4},
                                  "run": {"out_dir": str(tmp_path), "steps": 4, "progress_every": 3, "threads": 1}})
    sft(cfg)
    err = capsys.readouterr().err
    assert [ln.split(" ")[2] for ln in err.splitlines() if ln.startswith("sft: step ")] == ["1/4", "3/4", "4/4"]
    assert "sft_loss" in err and "\r" not in err
