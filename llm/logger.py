"""Run logging: JSONL metrics (the simulator's diagnostic names), optional TensorBoard.

Lines are appended; the only rewrites (a fresh run's empty log, dropping lines after a resumed
checkpoint) go through a temporary file and os.replace, so a crash never erases the log."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .checkpoint import atomic_write_text


class MetricsLogger:
    """Append one JSON object per step to `out_dir/metrics.jsonl` (main process only)."""

    def __init__(self, out_dir, enabled: bool = True, tensorboard: bool = False, resume: bool = False):
        self.enabled, self.tb = enabled, None
        self.path = Path(out_dir, "metrics.jsonl")
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic_write_text(self.path, "")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("run.tensorboard = true needs the tensorboard package") from e
            self.tb = SummaryWriter(str(Path(out_dir, "tb")))

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **clean}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint's step (they will be redone); the log is
        rewritten atomically (temporary file + os.replace)."""
        if not self.enabled or not self.path.exists():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln and _step_of(ln) <= step]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in lines))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _step_of(line: str) -> float:
    """The step of a log line; a line cut short by a crash mid-append counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def read_metrics(out_dir) -> list[dict]:
    path = Path(out_dir, "metrics.jsonl")
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln]
