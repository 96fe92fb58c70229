"""Progress display that suits both a terminal and a log file.

On a terminal (the stream is a TTY) a tqdm bar is redrawn in place. Anywhere else (a SLURM or CI log,
where every redraw would become a line) one plain line is printed at the first and last steps, every
step that is a multiple of `every`, and whenever `interval_s` seconds have passed since the previous line.
"""

from __future__ import annotations

import sys
import time

KEYS = ("reward", "pass@1", "distinct_correct", "loss")  # the metrics shown, when present


def _duration(s: float) -> str:
    """'1h02m', '3m05s' or '12s'."""
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def summary_line(desc: str, step: int, total: int, rate_s: float, metrics: dict, keys=KEYS) -> str:
    """One plain progress line: 'desc: step 10/100 (10%) | 1.23 s/step | eta 1m51s | reward 0.5 ...'."""
    shown = " ".join(f"{k} {metrics[k]:.3g}" for k in keys if isinstance(metrics.get(k), (int, float)))
    pct = 100.0 * step / max(total, 1)
    return (f"{desc}: step {step}/{total} ({pct:.0f}%) | {rate_s:.3g} s/step | "
            f"eta {_duration(rate_s * max(total - step, 0))}" + (f" | {shown}" if shown else ""))


class Progress:
    """A tqdm bar on a TTY, else plain summary lines (see the module docstring); disabled: silent."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True, every: int = 10,
                 interval_s: float = 60.0, stream=None, clock=time.monotonic, keys=KEYS):
        self.total, self.initial, self.desc, self.every, self.interval_s = total, initial, desc, every, interval_s
        self.stream, self.clock, self.keys = stream or sys.stderr, clock, keys
        self.enabled, self.bar = enabled, None
        isatty = getattr(self.stream, "isatty", None)
        if enabled and callable(isatty) and isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream)
        self.t0 = self.t_last = clock()

    def update(self, step: int, metrics: dict) -> None:
        """Record that training step `step` (1-based count of steps done) finished with `metrics`."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{metrics[k]:.3g}" for k in self.keys if k in metrics})
            return
        now = self.clock()
        due = (step == self.initial + 1 or step >= self.total or step % self.every == 0
               or now - self.t_last >= self.interval_s)
        if due:
            rate = (now - self.t0) / max(step - self.initial, 1)
            print(summary_line(self.desc, step, self.total, rate, metrics, self.keys), file=self.stream, flush=True)
            self.t_last = now

    def close(self) -> None:
        """Close the bar (plain mode has nothing to close)."""
        if self.bar is not None:
            self.bar.close()
